import type { Client } from 'pg';

import type { DatabaseConnector } from './connect';
import type { WithInstance } from './instance';

/** Which instance an activity works on (absent: the worker's configured database). */
export interface InstanceInput {
  instanceId?: string;
}

/** Runs `fn` on the named instance, or on the configured primary when none is named. */
export type OnInstance = <T>(
  instanceId: string | undefined,
  fn: (client: Client) => Promise<T>,
) => Promise<T>;

/** Named instances are found through the ControlPlane; credentials and TLS come from the connector. */
export function primaryOrInstance(connector: DatabaseConnector, withInstance: WithInstance): OnInstance {
  return (instanceId, fn) =>
    instanceId === undefined ? connector.withPrimary(fn) : withInstance(instanceId, fn);
}
