/**
 * dbops on the topology a team runs for real: the Temporal server itself (not the dev server) on
 * PostgreSQL persistence and SQL visibility (workers/cluster.ts, as `npm run start:cluster` runs
 * it), two workers as processes of their own on one task queue, a real local instance. One server
 * for the suite. Faults are placed by what the run shows (its progress, its pending activities,
 * the worker's own line after a committed batch), never by a delay.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { ScheduleOverlapPolicy, type WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { Client } from 'pg';

import type { Endpoint } from '../../activities/control-plane/control-plane';
import { LocalControlPlane } from '../../activities/control-plane/local';
import { projectRoot } from '../../activities/config-types';
import { seedDemoData } from '../../workers/seed';
import { backfill, backup, drTest, ping } from '../../workflows';
import type { BackfillProgress } from '../../workflows/backfill';
import { progressQuery } from '../../workflows/lib/recovery';
import { searchAttributeKeys } from '../../workflows/lib/search-attributes';
import {
  startTestCluster,
  startWorkerProcess,
  type TestCluster,
  type WorkerProcess,
} from '../helpers/cluster';

const SOURCE = 'cluster-src';
const TASK_QUEUE = 'cluster-queue';
const ROWS = 10_000;
const BATCH = 100;
const fast = { pollInterval: '1 second' };

/** Polls `probe` every 100 ms until it returns a value; fails naming `what` after `timeoutMs`. */
async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await sleep(100);
  }
  return assert.fail(`timed out waiting for ${what}`);
}

/** The promise's value, or a failure naming `what` once `timeoutMs` has passed. */
async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not happen within ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
  });
  // Abandoned after a timeout, it may still fail (e.g. once the suite closes its connection).
  promise.catch(() => undefined);
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe('the real Temporal server on PostgreSQL: two worker processes, SIGKILL, a server restart, a Schedule', function () {
  this.timeout(300_000);
  let cluster: TestCluster;
  let stateDir: string;
  let plane: LocalControlPlane;
  let endpoint: Endpoint;
  let sql: Client;
  const workers: WorkerProcess[] = [];
  /** The workers alive now, in start order. */
  let alive: WorkerProcess[] = [];

  function startWorker(extra: Record<string, string> = {}): WorkerProcess {
    const worker = startWorkerProcess({
      address: cluster.server.address,
      taskQueue: TASK_QUEUE,
      stateDir,
      endpoint,
      extra,
    });
    workers.push(worker);
    alive.push(worker);
    return worker;
  }

  /** Two workers on the queue, whatever an earlier test killed. */
  async function twoWorkers(): Promise<void> {
    const starting: Promise<void>[] = [];
    while (alive.length < 2) starting.push(startWorker().printed('worker ready'));
    await Promise.all(starting);
  }

  async function kill(worker: WorkerProcess): Promise<void> {
    await worker.kill();
    alive = alive.filter((w) => w !== worker);
  }

  before(async () => {
    stateDir = await mkdtemp(path.join(os.tmpdir(), 'dbops-cluster-state-'));
    await chmod(stateDir, 0o755); // the postgres user must reach the clusters inside
    plane = new LocalControlPlane({ stateDir });
    [cluster, endpoint] = await Promise.all([startTestCluster(), plane.ensureRunning(SOURCE)]);
    await Promise.all([
      seedDemoData(endpoint, { conversations: 200, chunksPerConversation: 2 }),
      twoWorkers(),
    ]);
    sql = new Client({ ...endpoint });
    sql.on('error', () => undefined);
    await sql.connect();
    // The snapshot the DR test restores.
    await cluster.client.workflow.execute(backup, {
      taskQueue: TASK_QUEUE,
      workflowId: 'cluster-backup',
      args: [{ instanceId: SOURCE, timeouts: fast }],
    });
  });
  after(async () => {
    await Promise.all(workers.map((worker) => worker.kill()));
    await sql?.end().catch(() => undefined);
    try {
      await cluster?.teardown();
    } finally {
      // Also after a failed test: a DR copy it left behind is stopped and deleted.
      for (const instance of await plane.listInstances().catch(() => [])) {
        await plane.deleteInstance(instance.instanceId, { skipFinalSnapshot: true }).catch(() => undefined);
      }
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('a Schedule with a short interval fires on the server and a worker runs what it starts', async () => {
    const schedule = await cluster.client.schedule.create({
      scheduleId: 'cluster-ping',
      spec: { intervals: [{ every: '2 seconds' }] },
      action: { type: 'startWorkflow', workflowType: ping, taskQueue: TASK_QUEUE },
      policies: { overlap: ScheduleOverlapPolicy.SKIP },
    });
    try {
      const workflowId = await until('the schedule to start a run', async () => {
        const [first] = (await schedule.describe()).info.recentActions;
        return first?.action.workflow.workflowId;
      });
      const result = await within(
        cluster.client.workflow.getHandle<typeof ping>(workflowId).result(),
        60_000,
        'the scheduled ping',
      );
      assert.match(result.serverVersion, /^15\./);
    } finally {
      await schedule.delete();
    }
  });

  it('a worker SIGKILLed while it holds a DR test (waiting for the restored copy): the other worker takes the run over from its history, checks the copy and deletes it', async () => {
    await twoWorkers();
    const handle = await cluster.client.workflow.start(drTest, {
      taskQueue: TASK_QUEUE,
      workflowId: 'cluster-dr-test',
      args: [{ instanceId: SOURCE, timeouts: fast }],
    });
    // The copy is being restored and no activity runs: the run lives in its holder's cache only.
    const holder = await until('the DR test to wait for its copy', async () => {
      const progress = await handle.query(progressQuery).catch(() => undefined);
      if (progress === undefined || !/^instance \S+ creating$/.test(progress.step)) return undefined;
      if (((await handle.describe()).raw.pendingActivities ?? []).length > 0) return undefined;
      const identity = (await workflowTaskWorkers(handle)).at(-1);
      return alive.find((worker) => worker.identity === identity);
    });
    await kill(holder);
    const [survivor] = alive;
    // Nothing the killed worker did can reach the server any more.
    const heldTasks = (await workflowTaskWorkers(handle)).length;

    const report = await within(handle.result(), 120_000, 'the DR test after the kill');
    assert.equal(report.ok, true, JSON.stringify(report.checks, null, 2));
    assert.equal(report.temporaryInstanceDeleted, true);
    assert.deepEqual(report.checks.at(-1)?.status, 'passed');
    assert.deepEqual(
      (await plane.listInstances()).map((instance) => instance.instanceId),
      [SOURCE],
      'the copy is gone',
    );
    // Every workflow task after the kill ran on the other worker.
    const after = (await workflowTaskWorkers(handle)).slice(heldTasks);
    assert.ok(after.length > 0);
    assert.deepEqual([...new Set(after)], [survivor!.identity]);
    // The run is found by our search attributes on the server's SQL visibility.
    await until('the DR test in the visibility store', async () => {
      const query = `WorkflowType = 'drTest' AND DbopsInstance = '${SOURCE}' AND ExecutionStatus = 'Completed'`;
      for await (const run of cluster.client.workflow.list({ query })) {
        if (run.workflowId === 'cluster-dr-test') return true;
      }
      return undefined;
    });
  });

  it('a worker SIGKILLed in the middle of a backfill chunk (batches committed the run has not heard of): the other worker resumes the chunk from its checkpoint; every row is done once', async () => {
    await resetTable();
    await twoWorkers();
    const handle = await startBackfill('cluster-backfill-kill');
    // A chunk started under 3 s ago (it runs 5 s) has committed batches the run has not heard of
    // yet (more rows are done than its progress says): its worker is killed.
    const running = await until('a backfill chunk to commit batches', async () => {
      const [chunk] = (await handle.describe()).raw.pendingActivities ?? [];
      const startedMs = Number(chunk?.lastStartedTime?.seconds ?? 0) * 1000;
      if (chunk?.lastWorkerIdentity == null || Date.now() - startedMs > 3000) return undefined;
      const known = await handle.query<BackfillProgress>('progress');
      if ((await doneRows()) <= known.rowsDone) return undefined;
      return alive.find((worker) => worker.identity === chunk.lastWorkerIdentity);
    });
    await kill(running);
    const [survivor] = alive;
    const committed = await doneRows();
    const known = await handle.query<BackfillProgress>('progress');
    assert.ok(
      committed > known.rowsDone,
      `batches committed the run has not heard of: ${committed} rows done, ${known.rowsDone} reported`,
    );

    // The lost chunk is retried on the other worker once its heartbeat times out (30 s).
    const final = await within(handle.result(), 120_000, 'the backfill after the kill');
    assert.deepEqual(
      [final.state, final.rowsDone, final.rowsScanned],
      ['completed', ROWS, ROWS],
      'resumed after the last committed batch: every row scanned and changed once over the run',
    );
    assert.deepEqual(await compare(), { different: 0, notOnce: 0 });
    const retried = (await handle.fetchHistory()).events?.find(
      (event) => (event.activityTaskStartedEventAttributes?.attempt ?? 1) > 1,
    )?.activityTaskStartedEventAttributes;
    assert.equal(retried?.identity, survivor!.identity, 'the chunk was retried on the other worker');
    assert.equal(
      retried?.lastFailure?.timeoutFailureInfo?.timeoutType,
      temporal.api.enums.v1.TimeoutType.TIMEOUT_TYPE_HEARTBEAT,
    );
  });

  it('the Temporal server killed (SIGKILL) and started again in the middle of a backfill: the run completes with every row done once, and `dbops status` reads it from the server', async () => {
    await resetTable();
    const handle = await startBackfill('cluster-backfill-restart');
    const before = await until('the backfill to commit its first rows', async () => {
      const progress = await handle.query<BackfillProgress>('progress').catch(() => undefined);
      return progress !== undefined && progress.rowsDone > 0 ? progress : undefined;
    });
    assert.ok(before.rowsDone < ROWS, 'the restart lands in the middle of the run');
    await cluster.server.restartServer();

    const final = await within(handle.result(), 120_000, 'the backfill after the server restart');
    assert.deepEqual([final.state, final.rowsDone], ['completed', ROWS]);
    assert.deepEqual(await compare(), { different: 0, notOnce: 0 });
    const status = JSON.parse((await dbops('status', 'cluster-backfill-restart', '--json')).stdout) as {
      status: string;
      progress: BackfillProgress;
    };
    assert.deepEqual([status.status, status.progress.rowsDone], ['COMPLETED', ROWS]);
  });

  it('stopped and started again on the same directory: the schema tool finds nothing to do, the namespace, search attributes and earlier runs are kept', async () => {
    await cluster.startAgain();
    const log = await readFile(path.join(cluster.dir, 'schema.log'), 'utf8');
    for (const database of ['temporal', 'temporal_visibility']) {
      assert.match(log, new RegExp(`--db ${database} update-schema [^\\n]*\\n[^$]*found zero updates`));
    }
    const { customAttributes } = await cluster.client.connection.operatorService.listSearchAttributes({
      namespace: 'default',
    });
    for (const key of searchAttributeKeys) {
      assert.equal(
        customAttributes?.[key.name],
        temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        key.name,
      );
    }
    const earlier = await cluster.client.workflow.getHandle('cluster-backup').describe();
    assert.equal(earlier.status.name, 'COMPLETED');
    // A run starts and completes on the restarted cluster.
    const result = await within(
      cluster.client.workflow.execute(ping, { taskQueue: TASK_QUEUE, workflowId: 'cluster-ping-again' }),
      60_000,
      'a ping after the restart',
    );
    assert.match(result.serverVersion, /^15\./);
  });

  function startBackfill(workflowId: string): Promise<WorkflowHandle<typeof backfill>> {
    return cluster.client.workflow.start(backfill, {
      taskQueue: TASK_QUEUE,
      workflowId,
      // 100 ms between batches of 100 (a fixed size): a 5-second chunk does under 5,000 of the
      // 10,000 rows, so the run has several chunks and lasts long enough for a fault in its middle.
      args: [{ instanceId: SOURCE, name: 'counter', params: { factor: 3 }, batchSize: BATCH, delayMs: 100 }],
    });
  }

  /** counter_rows with ROWS rows, and the result of one single UPDATE to compare with. */
  async function resetTable(): Promise<void> {
    await sql.query(`DROP TABLE IF EXISTS counter_rows, counter_expected`);
    await sql.query(
      `CREATE TABLE counter_rows (id bigint PRIMARY KEY, value int NOT NULL, applied int NOT NULL DEFAULT 0, done boolean NOT NULL DEFAULT false)`,
    );
    await sql.query(
      `INSERT INTO counter_rows (id, value) SELECT g * 3, g % 97 FROM generate_series(1, $1) g`,
      [ROWS],
    );
    await sql.query(`CREATE TABLE counter_expected AS SELECT * FROM counter_rows`);
    await sql.query(`UPDATE counter_expected SET value = value * 3, applied = 1, done = true`);
  }

  /** Rows whose final state differs from the single UPDATE, and rows touched other than once. */
  async function compare(): Promise<{ different: number; notOnce: number }> {
    const { rows } = await sql.query<{ different: number; not_once: number }>(
      `SELECT (SELECT count(*) FROM counter_rows r FULL JOIN counter_expected e USING (id)
                WHERE r.value IS DISTINCT FROM e.value OR r.done IS DISTINCT FROM e.done)::int AS different,
              (SELECT count(*) FROM counter_rows WHERE applied <> 1)::int AS not_once`,
    );
    return { different: rows[0]!.different, notOnce: rows[0]!.not_once };
  }

  async function doneRows(): Promise<number> {
    const { rows } = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM counter_rows WHERE done`);
    return rows[0]!.n;
  }

  /** `bin/dbops ...args` as a user runs it, with the usual address setting aimed at the cluster. */
  function dbops(...args: string[]): Promise<{ stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      execFile(
        path.join(projectRoot, 'bin', 'dbops'),
        args,
        { env: { ...process.env, TEMPORAL_ADDRESS: cluster.server.address, DBOPS_TASK_QUEUE: TASK_QUEUE } },
        (error, stdout, stderr) =>
          error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve({ stdout, stderr }),
      );
    });
  }
});

/** The identity of the worker that completed each workflow task of the run, in order. */
async function workflowTaskWorkers(handle: WorkflowHandle): Promise<string[]> {
  const events = (await handle.fetchHistory()).events ?? [];
  return events.flatMap((event) => event.workflowTaskCompletedEventAttributes?.identity ?? []);
}
