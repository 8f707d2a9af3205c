/**
 * The DR test through Temporal vs the same steps called directly on the provider, on the same
 * data, in one run. Through Temporal: the `drTest` workflow on a dev server and a worker. Direct:
 * newest snapshot, restore, poll until available, the DR checks, delete, poll until gone, write
 * the report. Both poll every second: the Temporal server fires timers with a resolution of about
 * one second, so a shorter interval would compare a 1 s wait with a shorter one. Rounds alternate;
 * the medians and their ratio are printed (goal <= 1.15).
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { Worker } from '@temporalio/worker';

import { createActivities } from '../activities';
import { LocalControlPlane } from '../activities/control-plane/local';
import { createDatabaseConnector } from '../activities/postgres/connect';
import { runDrChecks } from '../activities/postgres/dr-checks';
import { directoryReportStore, LOCAL_EXPORT_BUCKET } from '../activities/recovery/reports';
import { DEMO_DATA } from '../workers/demo';
import { seedDemoData } from '../workers/seed';
import { backup, drTest } from '../workflows';
import { createDevServerEnv, workflowBundle } from '../test/helpers/temporal';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const POLL_MS = 1000;
const SOURCE = 'bench-dr-src';

async function main(): Promise<void> {
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'dbops-bench-dr-'));
  await chmod(stateDir, 0o755);
  const plane = new LocalControlPlane({ stateDir });
  const env = await createDevServerEnv();
  try {
    const endpoint = await plane.ensureRunning(SOURCE);
    await seedDemoData(endpoint, DEMO_DATA);
    const connector = createDatabaseConnector({ primary: endpoint });
    const reports = directoryReportStore(path.join(stateDir, 'reports'));
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'bench-dr',
      workflowBundle: await workflowBundle(),
      activities: createActivities({
        database: endpoint,
        controlPlane: plane,
        connector,
        storage: { reports, exportBucket: LOCAL_EXPORT_BUCKET },
      }),
    });
    const timeouts = { pollInterval: `${POLL_MS} ms` };
    await worker.runUntil(async () => {
      await env.client.workflow.execute(backup, {
        taskQueue: 'bench-dr',
        workflowId: 'bench-backup',
        args: [{ instanceId: SOURCE, timeouts }],
      });
      const temporal: number[] = [];
      const direct: number[] = [];
      for (let round = 1; round <= ROUNDS; round++) {
        let started = Date.now();
        const report = await env.client.workflow.execute(drTest, {
          taskQueue: 'bench-dr',
          workflowId: `bench-dr-test-${round}`,
          args: [{ instanceId: SOURCE, timeouts }],
        });
        if (!report.ok) throw new Error(`the DR test failed: ${JSON.stringify(report.checks)}`);
        temporal.push(Date.now() - started);

        started = Date.now();
        await directDrTest(plane, connector, reports, `${SOURCE}-direct-${round}`);
        direct.push(Date.now() - started);
        console.log(`round ${round}: temporal ${temporal.at(-1)} ms, direct ${direct.at(-1)} ms`);
      }
      const t = median(temporal);
      const d = median(direct);
      console.log(
        `DR test wall time, median of ${ROUNDS}: through Temporal ${t} ms, direct ${d} ms, ratio ${(t / d).toFixed(2)} (goal <= 1.15)`,
      );
    });
  } finally {
    for (const instance of await plane.listInstances().catch(() => [])) {
      await plane.deleteInstance(instance.instanceId, { skipFinalSnapshot: true }).catch(() => undefined);
    }
    await env.teardown();
    await rm(stateDir, { recursive: true, force: true });
  }
}

async function directDrTest(
  plane: LocalControlPlane,
  connector: ReturnType<typeof createDatabaseConnector>,
  reports: ReturnType<typeof directoryReportStore>,
  target: string,
): Promise<void> {
  const snapshot = (await plane.listSnapshots(SOURCE)).find((s) => s.status === 'available')!;
  await plane.restoreFromSnapshot(snapshot.snapshotId, target);
  let restored = await plane.describeInstance(target);
  while (restored.status !== 'available') {
    await sleep(POLL_MS);
    restored = await plane.describeInstance(target);
  }
  const result = await runDrChecks(connector, {
    endpoint: restored.endpoint!,
    expectedRowCounts: snapshot.tableRowCounts ?? null,
    sampleQueries: 20,
    minRecall: 0.9,
    efSearch: 100,
  });
  if (result.checks.some((check) => check.status === 'failed')) throw new Error('a direct check failed');
  await plane.deleteInstance(target, { skipFinalSnapshot: true, deleteAutomatedBackups: true });
  while ((await plane.listInstances()).some((i) => i.instanceId === target)) await sleep(POLL_MS);
  await reports.write([
    { name: `${target}.json`, body: JSON.stringify(result), contentType: 'application/json' },
  ]);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

main().catch((error: Error) => {
  console.error(error);
  process.exitCode = 1;
});
