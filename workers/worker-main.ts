/** `npm run worker`: the worker alone, against the Temporal server and database in the environment. */
import { loadConfig } from './config';
import { installMetricsRuntime } from './metrics';
import { activityDepsFromConfig, createWorker } from './worker';

async function main(): Promise<void> {
  const config = loadConfig();
  installMetricsRuntime(config.operations.metricsPort);
  const { worker, close } = await createWorker(config.temporal, activityDepsFromConfig(config), {
    rpoHeartbeatSeconds: config.operations.rpoHeartbeatSeconds,
  });
  console.log(`dbops worker polling task queue ${config.temporal.taskQueue} on ${config.temporal.address}`);
  console.log(`metrics on http://localhost:${config.operations.metricsPort}/metrics`);
  try {
    await worker.run(); // until SIGINT / SIGTERM
  } finally {
    await close();
  }
}

main().catch((error: Error) => {
  console.error(`dbops worker failed: ${error.message}`);
  process.exitCode = 1;
});
