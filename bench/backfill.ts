/**
 * The backfill workflow vs the other ways to fill a column, and what a backfill and a deploy cost
 * the application's queries, in one run on one local instance.
 *
 * Data: the runbook's `conversations` with BENCH_ROWS rows (1M) and the column the declared change
 * user-id-bigint adds at expand, `_new_user_id`, NULL. The same change, _new_user_id = user_id, is
 * made three ways, each on a fresh copy of the same rows and without other load:
 *  - one single UPDATE of the whole table;
 *  - the backfill workflow (the change's backfill `user-id-bigint`, keyset batches) through Temporal;
 *  - the runbook's loop: UPDATE ... WHERE id IN (SELECT id ... WHERE _new_user_id IS NULL LIMIT n).
 * Printed: rows/s of each, backfill / single UPDATE (goal >= 0.7), backfill / runbook loop (goal
 * >= 3). Then a read/write load (short transactions on a few connections, in a thread of its own)
 * runs alone, during a backfill paced as docs/change-workflows.md advises for a busy database
 * (BENCH_LOAD_BATCH rows, BENCH_LOAD_DELAY ms between batches) and during a deploy that adds a
 * column and builds an index concurrently: its p99 transaction latency against the load alone
 * (goal <= 2x) and its failed transactions (goal 0).
 */
import { once } from 'node:events';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker as Thread } from 'node:worker_threads';

import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { Client } from 'pg';

import { createActivities } from '../activities';
import type { Endpoint } from '../activities/control-plane/control-plane';
import { projectRoot } from '../activities/config-types';
import { backfill, deployMigration } from '../workflows';
import { startLocalInstance } from '../test/helpers/local-instance';
import type { LoadResult, LoadSettings } from './lib/load-thread';
import { createDevServerEnv, workflowBundle } from '../test/helpers/temporal';

const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
/** The runbook's batch size; the backfill uses the same for the throughput comparison. */
const BATCH = Number(process.env.BENCH_BATCH ?? 10_000);
/** Under load, the default batch size (shorter row locks) and a pause that leaves the database room. */
const LOAD_BATCH = Number(process.env.BENCH_LOAD_BATCH ?? 1_000);
const LOAD_DELAY = Number(process.env.BENCH_LOAD_DELAY ?? 20);
const LOAD_CONNECTIONS = 3;
const LOAD_ALONE_MS = 10_000;

async function connect(endpoint: Endpoint): Promise<Client> {
  const client = new Client({ ...endpoint });
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
  await client.query('CHECKPOINT');
}

async function filledRows(client: Client): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM conversations WHERE _new_user_id = user_id',
  );
  return rows[0]!.n;
}

async function timed(what: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await what();
  return (performance.now() - started) / 1000;
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

const line = (label: string, seconds: number) =>
  console.log(
    `${label.padEnd(40)} ${seconds.toFixed(1).padStart(7)} s ${Math.round(ROWS / seconds)
      .toString()
      .padStart(9)} rows/s`,
  );

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const migrations = await benchMigrations();
  const [env, instance] = await Promise.all([createDevServerEnv(), startLocalInstance('bench-backfill')]);
  const admin = await connect(instance.endpoint);
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue: 'bench',
    workflowBundle: await workflowBundle(),
    activities: createActivities({ ...instance.deps, migrationsDir: migrations }),
  });
  const running = worker.run();
  let id = 0;
  const run = <T>(workflow: (input: T) => Promise<unknown>, input: T) =>
    env.client.workflow.execute(workflow, { taskQueue: 'bench', workflowId: `bench-${++id}`, args: [input] });
  try {
    await run(deployMigration, {
      instanceId: instance.instanceId,
      target: '0004_conversation_chunks_ivfflat_index',
    });
    // The column the change's expand adds (its sync trigger aside: nothing else writes here).
    await admin.query('ALTER TABLE conversations ADD COLUMN _new_user_id bigint');
    console.log(`[bench] ${ROWS} conversations, batches of ${BATCH} rows ...`);
    await admin.query(
      `CREATE TABLE bench_seed AS
         SELECT g::bigint AS id, (g % 100000)::int AS user_id, 'conversation ' || g AS title,
                now() - g * interval '1 second' AS created_at, now() AS updated_at
           FROM generate_series(1, $1) g`,
      [ROWS],
    );
    const backfillInput = { instanceId: instance.instanceId, name: 'user-id-bigint', batchSize: BATCH };
    const check = async (label: string) => {
      const filled = await filledRows(admin);
      if (filled !== ROWS) throw new Error(`${label} filled ${filled} of ${ROWS} rows`);
    };

    await resetRows(admin);
    const single = await timed(() =>
      admin.query('UPDATE conversations SET _new_user_id = user_id WHERE _new_user_id IS NULL'),
    );
    await check('single UPDATE');
    await resetRows(admin);
    const batched = await timed(() => run(backfill, backfillInput));
    await check('backfill');
    await resetRows(admin);
    const loop = await timed(async () => {
      for (;;) {
        const result = await admin.query(
          `UPDATE conversations SET _new_user_id = user_id
            WHERE id IN (SELECT id FROM conversations WHERE _new_user_id IS NULL LIMIT ${BATCH})`,
        );
        if (result.rowCount === 0) return;
      }
    });
    await check('runbook loop');

    await resetRows(admin);
    const alone = await underLoad(instance.endpoint, () => sleep(LOAD_ALONE_MS));
    let underLoadSeconds = 0;
    const duringBackfill = await underLoad(instance.endpoint, async () => {
      underLoadSeconds = await timed(() =>
        run(backfill, { ...backfillInput, batchSize: LOAD_BATCH, delayMs: LOAD_DELAY }),
      );
    });
    const duringDeploy = await underLoad(instance.endpoint, () =>
      run(deployMigration, { instanceId: instance.instanceId }),
    );

    console.log('');
    line('single UPDATE of the whole table', single);
    line('backfill workflow (keyset batches)', batched);
    line('runbook loop (IN (SELECT ... LIMIT n))', loop);
    console.log(`backfill / single UPDATE throughput: ${(single / batched).toFixed(2)} (goal >= 0.7)`);
    console.log(`backfill vs runbook loop: ${(loop / batched).toFixed(1)}x faster (goal >= 3x)`);
    console.log('');
    const load = (label: string, result: LoadResult) =>
      console.log(
        `${label.padEnd(40)} p99 ${result.p99Ms.toFixed(1).padStart(7)} ms (${(result.p99Ms / alone.p99Ms).toFixed(2)}x)  ${result.transactions} transactions, ${result.failed} failed${result.firstError === undefined ? '' : ` (${result.firstError})`}`,
      );
    load('load alone', alone);
    load(`load during the backfill (${LOAD_BATCH}, ${LOAD_DELAY} ms)`, duringBackfill);
    load('load during the deploy (column + index)', duringDeploy);
    console.log('goal: p99 <= 2x the load alone, 0 failed');
    line(`backfill under the load (${LOAD_BATCH}, ${LOAD_DELAY} ms)`, underLoadSeconds);
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
