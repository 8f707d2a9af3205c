/**
 * The RPO heartbeat writer: while the worker runs, every managed instance gets the server's time
 * written into `dbops.rpo_heartbeat` every few seconds (activities/postgres/rpo-heartbeat.ts), so
 * a point-in-time DR test can measure how close to its target a restored copy's data reaches.
 * Managed instances are the provider's available instances that dbops did not create as a copy
 * (a DR copy or restore target carries the `dbops:purpose` tag, and a heartbeat written into it
 * would falsify the measurement). Each instance keeps one session, so the writer costs one
 * connection per instance. Nothing here may end the worker: a dropped connection, an instance
 * that is gone or unreachable, a provider that cannot be listed are logged (once, until they
 * change or recover) and tried again at the next tick. `stop` ends every session and returns
 * when they are closed.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import type { ControlPlane, Endpoint, InstanceDescription } from '../activities/control-plane/control-plane';
import type { DatabaseConnector } from '../activities/postgres/connect';
import { prepareHeartbeatSession, writeHeartbeat } from '../activities/postgres/rpo-heartbeat';
import { OWNER_TAGS } from '../workflows/lib/owner-tags';

export interface RpoHeartbeatOptions {
  controlPlane: ControlPlane;
  connector: DatabaseConnector;
  /** Seconds between two heartbeats of an instance (and between two looks at the instance list). */
  intervalSeconds: number;
  logger: { info(message: string): void; warn(message: string): void };
}

export interface RpoHeartbeatWriter {
  /** Ends every session; resolves once they are closed. */
  stop(): Promise<void>;
}

/** An instance the worker keeps a heartbeat in: available, reachable, and not a copy dbops made. */
function isManaged(instance: InstanceDescription): boolean {
  return (
    instance.status === 'available' &&
    instance.endpoint !== undefined &&
    instance.tags[OWNER_TAGS.purpose] === undefined
  );
}

export function startRpoHeartbeat(options: RpoHeartbeatOptions): RpoHeartbeatWriter {
  const { controlPlane, connector, logger } = options;
  const stopping = new AbortController();
  const intervalMs = options.intervalSeconds * 1000;
  const pause = () => sleep(intervalMs, undefined, { signal: stopping.signal }).catch(() => undefined);
  let managed = new Map<string, Endpoint>();
  const sessions = new Map<string, Promise<void>>();

  // The last problem logged per instance ('' for the listing): a problem that lasts is logged once.
  const problems = new Map<string, string>();
  const failed = (key: string, what: string, error: unknown) => {
    const message = `RPO heartbeat: ${what}: ${error instanceof Error ? error.message : String(error)}; trying again in ${options.intervalSeconds} s`;
    if (problems.get(key) === message) return;
    problems.set(key, message);
    logger.warn(message);
  };
  const recovered = (key: string, what: string) => {
    if (problems.delete(key)) logger.info(`RPO heartbeat: ${what} again`);
  };

  const wanted = (instanceId: string) => !stopping.signal.aborted && managed.has(instanceId);

  async function keepWriting(instanceId: string): Promise<void> {
    while (wanted(instanceId)) {
      try {
        await connector.withEndpoint(managed.get(instanceId)!, async (client) => {
          await prepareHeartbeatSession(client);
          while (wanted(instanceId)) {
            await writeHeartbeat(client);
            recovered(instanceId, `writing into instance ${instanceId}`);
            await pause();
          }
        });
      } catch (error) {
        failed(instanceId, `instance ${instanceId}`, error);
        await pause();
      }
    }
    sessions.delete(instanceId);
  }

  async function supervise(): Promise<void> {
    while (!stopping.signal.aborted) {
      try {
        const instances = (await controlPlane.listInstances()).filter(isManaged);
        managed = new Map(instances.map((instance) => [instance.instanceId, instance.endpoint!]));
        recovered('', 'listing the instances');
        for (const instanceId of managed.keys()) {
          if (!sessions.has(instanceId)) sessions.set(instanceId, keepWriting(instanceId));
        }
      } catch (error) {
        failed('', 'the instances cannot be listed', error);
      }
      await pause();
    }
  }

  const supervising = supervise();
  return {
    async stop() {
      stopping.abort();
      await supervising;
      await Promise.all(sessions.values());
    },
  };
}
