/**
 * The backfill workflow vs the other ways to fill a column, and what a backfill and a deploy cost
 * the application's queries, in one run on one local instance.
 *
 * Data: the runbook's `conversations` with BENCH_ROWS rows (1M) and the column the declared change
 * user-id-bigint adds at expand, `_new_user_id`, NULL. The same change, _new_user_id = user_id, is
 * made four ways, each on a fresh copy of the same rows, with the WAL drained (checkpoint, archive
 * caught up) and without other load:
 *  - one single UPDATE of the whole table;
 *  - the backfill workflow (the change's backfill `user-id-bigint`, keyset batches) through
 *    Temporal, self-tuned (its default: batches aim at 200 ms, two side by side while the database
 *    is otherwise quiet) and at a fixed BENCH_BATCH (10,000, one batch at a time: a fixed size is
 *    how many rows are locked at once);
 *  - the runbook's loop: UPDATE ... WHERE id IN (SELECT id ... WHERE _new_user_id IS NULL LIMIT n),
 *    at BENCH_BATCH.
 * Then a read/write load (short transactions on a few connections, in a thread of its own) runs
 * alone, during a self-tuned backfill with no delay set (while the load's sessions are busy its
 * batches aim at the shorter contended target and each is followed by a pause three times its
 * length), and during a deploy that adds a column and builds an index concurrently (undone between
 * rounds). Each part: a warm-up, then BENCH_ROUNDS (>= 5) rounds in alternating order
 * (bench/lib/rounds.ts). Printed: the median and spread of backfill /
 * single UPDATE throughput (goal >= 0.9 for the default), of backfill vs runbook loop (goal >= 4x
 * for the default), of the load's p99 transaction latency during the backfill (goal <= 1.5x) and a
 * deploy (goal <= 2x) against the load alone, the batch sizes the tuning chose, and the failed
 * transactions (goal 0). The deploy's p99 is also split in two: the transactions started while
 * its migrations ran (from its history) and the others, while its snapshot and checks ran; and
 * its time under the load is printed (its snapshot's fingerprints pause while the load is busy).
 */
import { once } from 'node:events';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker as Thread } from 'node:worker_threads';

import type { WorkflowHandle } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { Client } from 'pg';

import { createActivities } from '../activities';
import type { Endpoint } from '../activities/control-plane/control-plane';
import { ADMIN_USER } from '../activities/control-plane/local-jobs';
import { projectRoot } from '../activities/config-types';
import { MIGRATIONS_TABLE } from '../activities/postgres/migrations';
import { backfill, deployMigration } from '../workflows';
import type { BackfillProgress } from '../workflows/backfill';
import { startLocalInstance } from '../test/helpers/local-instance';
import { p99 as percentile99, type LoadResult, type LoadSettings } from './lib/load-thread';
import { alternate, drainWal, median, printRatios, ratio, record, ROUNDS, timed } from './lib/rounds';
import { createDevServerEnv, workflowBundle } from '../test/helpers/temporal';

const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
/** The runbook's batch size: the runbook loop's, and the backfill's tuned one. */
const BATCH = Number(process.env.BENCH_BATCH ?? 10_000);
const LOAD_CONNECTIONS = 3;
/**
 * About as long as a backfill under the load takes: both windows start right after a reset of the
 * table and hold as many of the load's slow moments (writeback, autovacuum), so the p99 alone is a
 * fair yardstick for the p99 during.
 */
const LOAD_ALONE_MS = 30_000;

/**
 * The bench's own session (resets, checkpoints), named like the worker's: a backfill counts other
 * sessions that ran a statement within the last second as the application being busy, and the
 * reset just before a timed run is not the application.
 */
async function connect(endpoint: Endpoint): Promise<Client> {
  const client = new Client({ ...endpoint, application_name: 'dbops-bench' });
  client.on('error', () => undefined); // a dropped connection fails the next query, not the benchmark
  await client.connect();
  return client;
}

/** `conversations` back to the seeded rows, _new_user_id NULL, vacuumed and analyzed. */
async function resetRows(client: Client): Promise<void> {
  await client.query('TRUNCATE conversations CASCADE');
  await client.query(
    `INSERT INTO conversations (id, user_id, title, created_at, updated_at)
       OVERRIDING SYSTEM VALUE SELECT id, user_id, title, created_at, updated_at FROM bench_seed`,
  );
  await client.query(`SELECT setval(pg_get_serial_sequence('conversations', 'id'), $1)`, [ROWS]);
  await client.query('VACUUM ANALYZE conversations');
  await drainWal(client);
}

async function filledRows(client: Client): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM conversations WHERE _new_user_id = user_id',
  );
  return rows[0]!.n;
}

/** Starts the load in its own thread; resolves once its connections are open. */
async function startLoad(endpoint: Endpoint): Promise<{ stop(): Promise<LoadResult> }> {
  const settings: LoadSettings = { endpoint: { ...endpoint }, connections: LOAD_CONNECTIONS, rows: ROWS };
  // A thread does not inherit tsx's loader: it registers it, then loads the TypeScript file.
  const code = `require(${JSON.stringify(require.resolve('tsx/cjs'))});
require(${JSON.stringify(path.join(__dirname, 'lib', 'load-thread.ts'))});`;
  const thread = new Thread(code, { eval: true, workerData: settings });
  // `once` rejects when the thread fails, e.g. cannot connect.
  await once(thread, 'message'); // started
  return {
    async stop() {
      thread.postMessage('stop');
      const [result] = (await once(thread, 'message')) as [LoadResult];
      await thread.terminate();
      return result;
    },
  };
}

async function underLoad(endpoint: Endpoint, what: () => Promise<unknown>): Promise<LoadResult> {
  const load = await startLoad(endpoint);
  try {
    await what();
  } catch (error) {
    await load.stop();
    throw error;
  }
  return load.stop();
}

/** The repository's schema migrations, then a column and a concurrently built index. */
async function benchMigrations(): Promise<string> {
  const dir = path.join(await mkdtemp(path.join(os.tmpdir(), 'dbops-bench-migrations-')), 'migrations');
  await cp(path.join(projectRoot, 'migrations'), dir, { recursive: true });
  await writeFile(
    path.join(dir, '0100_bench_note.sql'),
    '-- Up Migration\nALTER TABLE conversations ADD COLUMN note text;\n-- Down Migration\n-- squawk-ignore ban-drop-column\nALTER TABLE conversations DROP COLUMN note;\n',
  );
  await writeFile(
    path.join(dir, '0101_bench_title_index.sql'),
    '-- dbops:no-transaction\n-- Up Migration\nCREATE INDEX CONCURRENTLY IF NOT EXISTS conversations_title_idx ON conversations (title);\n-- Down Migration\nDROP INDEX CONCURRENTLY IF EXISTS conversations_title_idx;\n',
  );
  return dir;
}

/** Back to before the bench's two migrations, so the next deploy applies them again. */
async function undoBenchMigrations(client: Client): Promise<void> {
  await client.query('DROP INDEX CONCURRENTLY IF EXISTS conversations_title_idx');
  await client.query('ALTER TABLE conversations DROP COLUMN IF EXISTS note');
  await client.query(
    `DELETE FROM ${MIGRATIONS_TABLE} WHERE name IN ('0100_bench_note', '0101_bench_title_index')`,
  );
}

/**
 * When a deploy's migrations ran (its runMigrationStep activity, scheduled to completed), in epoch
 * ms, from its history: the load's transactions that started then are the migrations' share of
 * the deploy's p99, the others the snapshot's and the checks'.
 */
async function migrationWindow(handle: WorkflowHandle): Promise<[number, number]> {
  const events = (await handle.fetchHistory()).events ?? [];
  const ms = (event: temporal.api.history.v1.IHistoryEvent) =>
    Number(event.eventTime?.seconds ?? 0) * 1000 + Math.floor((event.eventTime?.nanos ?? 0) / 1e6);
  const scheduled = events.find(
    (event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'runMigrationStep',
  );
  const completed = events.find(
    (event) =>
      scheduled !== undefined &&
      Number(event.activityTaskCompletedEventAttributes?.scheduledEventId) === Number(scheduled.eventId),
  );
  if (scheduled === undefined || completed === undefined) {
    throw new Error(`deploy ${handle.workflowId} ran no migration step`);
  }
  return [ms(scheduled), ms(completed)];
}

const line = (label: string, seconds: number[]) => {
  record(label, seconds, { unit: 's' });
  console.log(
    `${label.padEnd(44)} median ${median(seconds).toFixed(1).padStart(7)} s ${Math.round(
      ROWS / median(seconds),
    )
      .toString()
      .padStart(9)} rows/s`,
  );
};

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const migrations = await benchMigrations();
  const [env, instance] = await Promise.all([createDevServerEnv(), startLocalInstance('bench-backfill')]);
  // The superuser: resets, checkpoints and WAL switches are not the worker's to do.
  const admin = await connect({ ...instance.endpoint, user: ADMIN_USER });
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue: 'bench',
    workflowBundle: await workflowBundle(),
    activities: createActivities({ ...instance.deps, migrationsDir: migrations }),
  });
  const running = worker.run();
  let id = 0;
  const backfillInput = { instanceId: instance.instanceId, name: 'user-id-bigint' };
  const run = <T, R>(workflow: (input: T) => Promise<R>, input: T): Promise<R> =>
    env.client.workflow.execute(workflow, { taskQueue: 'bench', workflowId: `bench-${++id}`, args: [input] });
  /** The batch size each self-tuned backfill ended with, and the target its batches then aimed at. */
  const tunedSizes: number[] = [];
  const aimedMs: number[] = [];
  const tunedBackfill = async () => {
    const final: BackfillProgress = await run(backfill, backfillInput);
    tunedSizes.push(final.batchSize);
    aimedMs.push(final.aimedBatchMs ?? final.targetBatchMs ?? NaN);
  };
  try {
    await run(deployMigration, {
      instanceId: instance.instanceId,
      target: '0004_conversation_chunks_ivfflat_index',
    });
    // The column the change's expand adds (its sync trigger aside: nothing else writes here).
    await admin.query('ALTER TABLE conversations ADD COLUMN _new_user_id bigint');
    console.log(`[bench] ${ROWS} conversations, ${ROUNDS} rounds after a warm-up ...`);
    await admin.query(
      `CREATE TABLE bench_seed AS
         SELECT g::bigint AS id, (g % 100000)::int AS user_id, 'conversation ' || g AS title,
                now() - g * interval '1 second' AS created_at, now() AS updated_at
           FROM generate_series(1, $1) g`,
      [ROWS],
    );
    /** Fresh rows and drained WAL, then the timed fill, then its check. */
    const fill = (label: string, how: () => Promise<unknown>) => async () => {
      await resetRows(admin);
      const seconds = await timed(how);
      const filled = await filledRows(admin);
      if (filled !== ROWS) throw new Error(`${label} filled ${filled} of ${ROWS} rows`);
      return seconds;
    };
    const fills = await alternate(
      {
        single: fill('single UPDATE', () =>
          admin.query('UPDATE conversations SET _new_user_id = user_id WHERE _new_user_id IS NULL'),
        ),
        backfillDefault: fill('backfill', tunedBackfill),
        backfillTuned: fill('backfill', () => run(backfill, { ...backfillInput, batchSize: BATCH })),
        loop: fill('runbook loop', async () => {
          for (;;) {
            const result = await admin.query(
              `UPDATE conversations SET _new_user_id = user_id
                WHERE id IN (SELECT id FROM conversations WHERE _new_user_id IS NULL LIMIT ${BATCH})`,
            );
            if (result.rowCount === 0) return;
          }
        }),
      },
      (round, s) =>
        console.log(
          `[bench] round ${round}: single ${s.single.toFixed(1)} s, backfill ${s.backfillDefault.toFixed(1)} s (self-tuned, ended at ${tunedSizes.at(-1)}) ${s.backfillTuned.toFixed(1)} s (${BATCH}), loop ${s.loop.toFixed(1)} s`,
        ),
    );

    const fillSizes = tunedSizes.splice(0).slice(1); // the warm-up is not counted
    const fillAimed = aimedMs.splice(0).slice(1);
    // The load alone, during a self-tuned backfill (no delay), during a deploy; between rounds the deploy is undone.
    const loads: Record<'alone' | 'backfill' | 'deploy', LoadResult[]> = {
      alone: [],
      backfill: [],
      deploy: [],
    };
    const underLoadSeconds: number[] = [];
    /** How long each deploy under the load took: its snapshot waits while the load is busy. */
    const deploySeconds: number[] = [];
    const deployWindows: [number, number][] = [];
    /** Per counted deploy: the p99 of the transactions started while its migrations ran, and of the others. */
    const deployParts: { migrations: number[]; rest: number[] } = { migrations: [], rest: [] };
    const loaded = (side: keyof typeof loads, what: () => Promise<unknown>) => async () => {
      await resetRows(admin);
      if (side === 'deploy') await undoBenchMigrations(admin);
      await drainWal(admin);
      const result = await underLoad(instance.endpoint, what);
      loads[side].push(result);
      return result.p99Ms;
    };
    const p99 = await alternate({
      alone: loaded('alone', () => sleep(LOAD_ALONE_MS)),
      backfill: loaded('backfill', async () => {
        underLoadSeconds.push(await timed(tunedBackfill));
      }),
      deploy: loaded('deploy', async () => {
        deploySeconds.push(await timed(() => run(deployMigration, { instanceId: instance.instanceId })));
        deployWindows.push(await migrationWindow(env.client.workflow.getHandle(`bench-${id}`)));
      }),
    });
    // The warm-up is not counted.
    for (const [i, [from, to]] of deployWindows.slice(1).entries()) {
      const timeline = loads.deploy[i + 1]!.timeline;
      const during = (start: number) => start >= from && start <= to;
      deployParts.migrations.push(
        percentile99(timeline.filter(([start]) => during(start)).map(([, ms]) => ms)),
      );
      deployParts.rest.push(percentile99(timeline.filter(([start]) => !during(start)).map(([, ms]) => ms)));
    }

    console.log('');
    line('single UPDATE of the whole table', fills.single);
    line('backfill workflow, self-tuned (default)', fills.backfillDefault);
    line(`backfill workflow, batch ${BATCH}`, fills.backfillTuned);
    line(`runbook loop (IN (SELECT ... LIMIT ${BATCH}))`, fills.loop);
    line('backfill under the load, self-tuned', underLoadSeconds.slice(1));
    record('deploy under the load', deploySeconds.slice(1), { unit: 's' });
    console.log(
      `${'deploy under the load (snapshot, migrations)'.padEnd(44)} median ${median(deploySeconds.slice(1))
        .toFixed(1)
        .padStart(7)} s`,
    );
    const sizes = (values: number[]) =>
      `median ${median(values)}, ${Math.min(...values)} to ${Math.max(...values)}`;
    console.log(
      `self-tuned batch size at the end: alone ${sizes(fillSizes)}; under the load ${sizes(tunedSizes.slice(1))}`,
    );
    console.log(
      `target the batches aimed at, ms: alone ${sizes(fillAimed)}; under the load ${sizes(aimedMs.slice(1))}`,
    );
    record('self-tuned batch size at the end, alone', fillSizes, { unit: 'rows' });
    record('self-tuned batch size at the end, under the load', tunedSizes.slice(1), { unit: 'rows' });
    console.log('');
    printRatios([
      ratio(
        'backfill (self-tuned) / single UPDATE throughput',
        fills.single,
        fills.backfillDefault,
        '>= 0.9',
      ),
      ratio(`backfill (${BATCH}) / single UPDATE throughput`, fills.single, fills.backfillTuned),
      ratio('backfill (self-tuned) vs runbook loop, times faster', fills.loop, fills.backfillDefault, '>= 4'),
      ratio(`backfill (${BATCH}) vs runbook loop, times faster`, fills.loop, fills.backfillTuned),
      ratio('p99 during the backfill (self-tuned, no delay) / alone', p99.backfill, p99.alone, '<= 1.5'),
      ratio('p99 during the deploy (column + index) / alone', p99.deploy, p99.alone, '<= 2'),
      ratio('  of it: while its migrations ran / alone', deployParts.migrations, p99.alone),
      ratio('  of it: the rest (snapshot, checks) / alone', deployParts.rest, p99.alone),
    ]);
    const counted = (results: LoadResult[]) => results.slice(1); // the warm-up is not counted
    for (const side of ['alone', 'backfill', 'deploy'] as const) {
      const results = counted(loads[side]);
      const failed = results.reduce((sum, r) => sum + r.failed, 0);
      const firstError = results.find((r) => r.firstError !== undefined)?.firstError;
      record(`load p99, ${side}`, p99[side], { unit: 'ms' });
      record(
        `load failed transactions, ${side}`,
        results.map((r) => r.failed),
        { goal: '= 0' },
      );
      console.log(
        `load ${side.padEnd(8)} p99 median ${median(p99[side]).toFixed(1).padStart(7)} ms, ${results.reduce((sum, r) => sum + r.transactions, 0)} transactions, ${failed} failed (goal 0)${firstError === undefined ? '' : ` (${firstError})`}`,
      );
    }
  } finally {
    worker.shutdown();
    await running.catch(() => undefined);
    await admin.end().catch(() => undefined);
    await Promise.allSettled([env.teardown(), instance.stop()]);
    await rm(path.dirname(migrations), { recursive: true, force: true });
  }
}

main().catch((error: Error) => {
  console.error(error);
  process.exitCode = 1;
});
