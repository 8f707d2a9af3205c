import type { Client } from 'pg';

import type { ControlPlane } from '../control-plane/control-plane';
import { InvalidStateError } from '../../workflows/lib/errors';
import type { DatabaseConnector } from './connect';

export type WithInstance = <T>(instanceId: string, fn: (client: Client) => Promise<T>) => Promise<T>;

/** Connects to an instance by id: its endpoint from the ControlPlane, credentials from the connector. */
export function instanceConnection(controlPlane: ControlPlane, connector: DatabaseConnector): WithInstance {
  return async (instanceId, fn) => {
    const instance = await controlPlane.describeInstance(instanceId);
    if (instance.endpoint === undefined) {
      throw new InvalidStateError(`instance ${instanceId} has no endpoint yet (status ${instance.status})`);
    }
    return connector.withEndpoint(instance.endpoint, fn);
  };
}
