import { Runtime, Worker } from '@temporalio/worker';

import { createActivities, type ActivityDeps } from '../activities';
import { HEARTBEAT_THROTTLE } from '../activities/heartbeat';
import type { DatabaseConfig } from '../activities/config-types';
import { createControlPlane } from '../activities/control-plane';
import { connectorFromConfig } from '../activities/postgres/connect';
import { recoveryStorageFromConfig } from '../activities/recovery/reports';
import type { Config, TemporalConfig } from './config';
import { startRpoHeartbeat } from './rpo-heartbeat';
import { connectWorker, dataConverter } from './temporal-connection';

export interface RunningWorker {
  worker: Worker;
  /** Stops the RPO heartbeat and closes the connection; call after `worker.run()` has returned. */
  close: () => Promise<void>;
}

/**
 * The dbops worker: every workflow in `workflows/`, every activity built from `deps`; with
 * `rpoHeartbeatSeconds`, the RPO heartbeat into every managed instance (workers/rpo-heartbeat.ts).
 */
export async function createWorker(
  temporal: TemporalConfig,
  deps: ActivityDeps,
  options: { rpoHeartbeatSeconds?: number | undefined } = {},
): Promise<RunningWorker> {
  const connection = await connectWorker(temporal);
  const worker = await Worker.create({
    connection,
    namespace: temporal.namespace,
    taskQueue: temporal.taskQueue,
    workflowsPath: require.resolve('../workflows'),
    activities: createActivities(deps),
    dataConverter: dataConverter(temporal),
    // On SIGTERM (a redeploy) running activities get this long to finish; then they are
    // cancelled, stop their SQL and release their locks, and are retried on another worker.
    shutdownGraceTime: temporal.shutdownGraceTime,
    // Heartbeats reach the server at least this often, and with their answer a cancellation.
    maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
  });
  const heartbeat =
    options.rpoHeartbeatSeconds === undefined
      ? undefined
      : startRpoHeartbeat({
          controlPlane: deps.controlPlane,
          connector: deps.connector,
          intervalSeconds: options.rpoHeartbeatSeconds,
          logger: Runtime.instance().logger,
        });
  return {
    worker,
    close: async () => {
      await heartbeat?.stop();
      await connection.close();
    },
  };
}

/** The activities' dependencies for the configured provider (`database`: another primary, e.g. npm start's). */
export function activityDepsFromConfig(
  config: Config,
  database: DatabaseConfig = config.database,
): ActivityDeps {
  return {
    database,
    controlPlane: createControlPlane(config),
    connector: connectorFromConfig({ ...config, database }),
    storage: recoveryStorageFromConfig(config),
    maintenanceWindow: config.operations.maintenanceWindow,
    rolloutHooks: config.rolloutHooks,
    vectorIndexes: config.vectorIndexes,
  };
}
