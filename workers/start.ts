/**
 * `npm start`: the embedded stack. Starts a Temporal dev server with its Web UI (with `--cluster`,
 * as `npm run start:cluster` does: the real Temporal server on a PostgreSQL of its own, see
 * cluster.ts), the local database, and the worker; upserts the schedules; runs one ping so the UI
 * shows a real run; on Ctrl-C stops the worker, then everything it started, in reverse order.
 */
import path from 'node:path';

import { LocalControlPlane } from '../activities/control-plane/local';
import { ping } from '../workflows';
import { utcStamp } from '../workflows/lib/recovery';
import { loadConfig, stateDirProblem, type Config, type TemporalConfig } from './config';
import { prepareDemoData, runDemoDrTest, stopLocalInstances } from './demo';
import { startTemporalCluster } from './cluster';
import { startDevServer } from './dev-server';
import { fileLogger } from './log-file';
import { installMetricsRuntime } from './metrics';
import { explainFailure } from './cli/common';
import { applySchedules } from './schedules';
import { connectClient } from './temporal-connection';
import { activityDepsFromConfig, createWorker } from './worker';

async function main(): Promise<void> {
  const config = loadConfig();
  // Before anything is created: the postgres user runs the clusters inside the state directory.
  const unreachable = stateDirProblem(config.stateDir);
  if (unreachable !== undefined) throw new Error(unreachable);
  const workerLog = path.join(config.stateDir, 'worker.log');
  const temporalPort = Number(config.temporal.address.split(':').pop());
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch((error: Error) => console.error(error.message));
  };

  try {
    const cluster = process.argv.includes('--cluster');
    console.log(cluster ? '[start] Temporal server on PostgreSQL ...' : '[start] Temporal dev server ...');
    const server = await (cluster ? startTemporalCluster : startDevServer)({
      port: temporalPort,
      uiPort: config.temporal.uiPort,
      namespace: config.temporal.namespace,
      dir: path.join(config.stateDir, cluster ? 'temporal-cluster' : 'temporal'),
    });
    stops.push(server.stop);

    // The embedded stack always runs the local provider, whatever DBOPS_PROVIDER says.
    console.log(`[start] local database ${config.instanceId} ...`);
    const localDatabases = new LocalControlPlane({
      stateDir: config.stateDir,
      backupMaxRate: config.localBackup?.maxRate,
      backupCheckpoint: config.localBackup?.checkpoint,
    });
    const database = await localDatabases.ensureRunning(config.instanceId);
    stops.push(() => stopLocalInstances(localDatabases));
    await prepareDemoData(database);

    const local = { ...config, provider: 'local' as const, aws: undefined };
    // Before the worker's connection; the worker's own lines go to the log file, not the console.
    installMetricsRuntime(config.operations.metricsPort, undefined, undefined, fileLogger(workerLog));
    const { worker, close } = await createWorker(config.temporal, activityDepsFromConfig(local, database), {
      rpoHeartbeatSeconds: config.operations.rpoHeartbeatSeconds,
    });
    stops.push(close);

    console.log(`
dbops is running
  Temporal Web UI: http://localhost:${config.temporal.uiPort}
  Temporal:        ${config.temporal.address} (namespace ${config.temporal.namespace})
  Task queue:      ${config.temporal.taskQueue}
  Database:        postgres://${database.user}@${database.host}:${database.port}/${database.database}
  Worker metrics:  http://localhost:${config.operations.metricsPort}/metrics
  Worker log:      ${workerLog}
  State:           ${config.stateDir}
Press Ctrl-C to stop everything.
`);
    // The worker's runtime turns SIGINT / SIGTERM into a graceful shutdown: run() then resolves.
    const running = worker.run();
    await upsertSchedules(config).catch((error: Error) =>
      console.error(`[start] schedules not applied: ${error.message}`),
    );
    // A failed workflow is said by its root cause, in one line (the detail is in the worker log).
    await explainFailure(firstPing(config.temporal)).catch((error: Error) =>
      console.error(`[start] ping failed: ${error.message}`),
    );
    // The demo DR test runs beside the worker: Ctrl-C stops the worker and abandons the wait.
    const demo = explainFailure(runDemoDrTest(config, running)).catch((error: Error) =>
      console.error(`[start] DR test could not run: ${error.message}`),
    );
    await running;
    await demo;
  } finally {
    console.log('[start] stopping ...');
    await stopAll();
    console.log('[start] stopped');
  }
}

async function upsertSchedules(config: Config): Promise<void> {
  const { connection, client } = await connectClient(config.temporal);
  try {
    const applied = await applySchedules(client, {
      taskQueue: config.temporal.taskQueue,
      instanceId: config.instanceId,
      ...config.operations,
    });
    for (const schedule of applied)
      console.log(`[start] schedule ${schedule.scheduleId}: ${schedule.outcome}`);
  } finally {
    await connection.close();
  }
}

/** One ping so the first look at the Web UI shows a completed run. */
async function firstPing(temporal: TemporalConfig): Promise<void> {
  const { connection, client } = await connectClient(temporal);
  try {
    const result = await client.workflow.execute(ping, {
      taskQueue: temporal.taskQueue,
      workflowId: `ping-${utcStamp(new Date())}`,
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
    console.log(
      `[start] ping: PostgreSQL ${result.serverVersion}, pgvector ${result.pgvectorVersion ?? 'not installed'}, ${result.roundTripMs} ms`,
    );
  } finally {
    await connection.close();
  }
}

main().catch((error: Error) => {
  console.error(`dbops start failed: ${error.message}`);
  process.exitCode = 1;
});
