import type { Client } from 'pg';

import type { DatabaseConnector, ReadSession } from './connect';
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

/**
 * Read-only work: on the named instance, or for the configured database on its read replica when
 * one is configured and within its lag bound, else on the primary. The session says which.
 */
export type OnReadOnly = <T>(
  instanceId: string | undefined,
  fn: (session: ReadSession) => Promise<T>,
) => Promise<T>;

/** Named instances are found through the ControlPlane; credentials and TLS come from the connector. */
export function primaryOrInstance(connector: DatabaseConnector, withInstance: WithInstance): OnInstance {
  return (instanceId, fn) =>
    instanceId === undefined ? connector.withPrimary(fn) : withInstance(instanceId, fn);
}

/** As primaryOrInstance, with the configured database's reads going to its replica when it can. */
export function replicaOrInstance(connector: DatabaseConnector, withInstance: WithInstance): OnReadOnly {
  return (instanceId, fn) => {
    if (instanceId === undefined) return connector.withReadOnly(fn);
    return withInstance(instanceId, (client) =>
      fn({
        client,
        route: { server: 'primary', reason: `instance ${instanceId} was named`, replicaLagSeconds: null },
        sameServer: (other) => withInstance(instanceId, other),
      }),
    );
  };
}
