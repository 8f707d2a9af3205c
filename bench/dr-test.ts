/**
 * The DR test through Temporal vs the same steps called directly on the provider, on the same
 * data, in one run. Through Temporal: the `drTest` workflow on a dev server and a worker. Direct:
 * its steps one after the other (directDrTest): the same restore of a copy tagged as a DR copy,
 * the same checks, the same report files. Both poll every second: a workflow looks at most once a
 * second (workflows/lib/polling.ts), so a shorter interval would compare a 1 s wait with a shorter
 * one. The worker is set up as the dbops worker is (workers/worker.ts). A warm-up of each, then
 * BENCH_ROUNDS (>= 5) rounds in alternating order, the source's WAL drained before each
 * (bench/lib/rounds.ts); printed: the median and spread of the ratio (goal <= 1.05).
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { Worker } from '@temporalio/worker';
import { Client } from 'pg';

import { createActivities } from '../activities';
import { HEARTBEAT_THROTTLE } from '../activities/heartbeat';
import { LocalControlPlane } from '../activities/control-plane/local';
import { ADMIN_USER } from '../activities/control-plane/local-jobs';
import { createDatabaseConnector } from '../activities/postgres/connect';
import { runDrChecks } from '../activities/postgres/dr-checks';
import {
  directoryReportStore,
  LOCAL_EXPORT_BUCKET,
  writeDrReportFiles,
} from '../activities/recovery/reports';
import { DEMO_DATA } from '../workers/demo';
import { seedDemoData } from '../workers/seed';
import { backup, drTest } from '../workflows';
import { NotFoundError } from '../workflows/lib/errors';
import { DR_PURPOSE, OWNER_TAGS } from '../workflows/lib/owner-tags';
import { createDevServerEnv, workflowBundle } from '../test/helpers/temporal';
import { alternate, drainWal, median, printRatios, ratio, record, ROUNDS } from './lib/rounds';

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
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    });
    const timeouts = { pollInterval: `${POLL_MS} ms` };
    await worker.runUntil(async () => {
      await env.client.workflow.execute(backup, {
        taskQueue: 'bench-dr',
        workflowId: 'bench-backup',
        args: [{ instanceId: SOURCE, timeouts }],
      });
      const admin = new Client({ ...endpoint, user: ADMIN_USER });
      await admin.connect();
      let copy = 0;
      try {
        const samples = await alternate(
          {
            temporal: async () => {
              await drainWal(admin);
              const started = Date.now();
              const report = await env.client.workflow.execute(drTest, {
                taskQueue: 'bench-dr',
                workflowId: `bench-dr-test-${++copy}`,
                args: [{ instanceId: SOURCE, timeouts }],
              });
              if (!report.ok) throw new Error(`the DR test failed: ${JSON.stringify(report.checks)}`);
              return Date.now() - started;
            },
            direct: async () => {
              await drainWal(admin);
              const started = Date.now();
              await directDrTest(plane, connector, reports, `${SOURCE}-direct-${++copy}`);
              return Date.now() - started;
            },
          },
          (round, ms) => console.log(`round ${round}: temporal ${ms.temporal} ms, direct ${ms.direct} ms`),
        );
        console.log(
          `DR test wall time, median of ${ROUNDS}: through Temporal ${median(samples.temporal)} ms, direct ${median(samples.direct)} ms`,
        );
        record(
          'DR test through Temporal',
          samples.temporal.map((ms) => ms / 1000),
          { unit: 's' },
        );
        record(
          'DR test, the same steps called directly',
          samples.direct.map((ms) => ms / 1000),
          { unit: 's' },
        );
        printRatios([
          ratio('DR test through Temporal / direct', samples.temporal, samples.direct, '<= 1.05'),
        ]);
      } finally {
        await admin.end();
      }
    });
  } finally {
    for (const instance of await plane.listInstances().catch(() => [])) {
      await plane.deleteInstance(instance.instanceId, { skipFinalSnapshot: true }).catch(() => undefined);
    }
    await env.teardown();
    await rm(stateDir, { recursive: true, force: true });
  }
}

/**
 * The drTest workflow's steps, one after the other on the provider: the orphan search (a listing),
 * the look for a copy of the same name, the newest snapshot, the restore of a copy tagged as the
 * workflow tags it (a DR copy: no automated backup), the wait, the checks with the snapshot's row
 * counts and content hashes, the delete and its wait, the report files (JSON, Markdown, trend).
 */
async function directDrTest(
  plane: LocalControlPlane,
  connector: ReturnType<typeof createDatabaseConnector>,
  reports: ReturnType<typeof directoryReportStore>,
  target: string,
): Promise<void> {
  const startedAt = new Date().toISOString();
  await plane.listInstances();
  await plane.describeInstance(target).then(
    () => {
      throw new Error(`${target} already exists`);
    },
    (error: Error) => {
      if (!(error instanceof NotFoundError)) throw error;
    },
  );
  const snapshot = (await plane.listSnapshots(SOURCE)).find((s) => s.status === 'available')!;
  const requestedAt = Date.now();
  await plane.restoreFromSnapshot(snapshot.snapshotId, target, {
    [OWNER_TAGS.workflowId]: target,
    [OWNER_TAGS.runId]: 'direct',
    [OWNER_TAGS.purpose]: DR_PURPOSE,
    [OWNER_TAGS.source]: SOURCE,
  });
  let restored = await plane.describeInstance(target);
  while (restored.status !== 'available') {
    await sleep(POLL_MS);
    restored = await plane.describeInstance(target);
  }
  const rtoSeconds = (Date.now() - requestedAt) / 1000;
  const result = await runDrChecks(connector, {
    endpoint: restored.endpoint!,
    expectedRowCounts: snapshot.tableRowCounts ?? null,
    expectedContentHashes: snapshot.tableContentHashes ?? null,
    sampleQueries: 20,
    minRecall: 0.9,
    efSearch: 100,
  });
  if (result.checks.some((check) => check.status === 'failed')) throw new Error('a direct check failed');
  await plane.deleteInstance(target, { skipFinalSnapshot: true, deleteAutomatedBackups: true });
  while (
    await plane.describeInstance(target).then(
      () => true,
      (error: Error) => {
        if (error instanceof NotFoundError) return false;
        throw error;
      },
    )
  ) {
    await sleep(POLL_MS);
  }
  await writeDrReportFiles(reports, {
    instanceId: SOURCE,
    workflowId: target,
    ok: true,
    startedAt,
    finishedAt: new Date().toISOString(),
    snapshot: {
      snapshotId: snapshot.snapshotId,
      type: snapshot.type,
      createdAt: snapshot.createdAt,
      sizeBytes: snapshot.sizeBytes,
    },
    rpoSeconds: (Date.parse(startedAt) - Date.parse(snapshot.createdAt!)) / 1000,
    rtoSeconds,
    temporaryInstanceId: target,
    temporaryInstanceDeleted: true,
    orphansRemoved: [],
    checks: result.checks,
    error: null,
    reportLocations: [],
  });
}

main().catch((error: Error) => {
  console.error(error);
  process.exitCode = 1;
});
