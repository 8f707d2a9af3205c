/**
 * What expandContract running the declared change user-id-bigint (conversations.user_id integer
 * -> bigint) costs the application, in one run on one local instance with BENCH_ROWS rows (1M).
 *
 * Old code (writing `user_id` as always) runs alone first: its p99 statement latency is the
 * baseline. Then the whole change runs (plan, expand, backfill, tighten, contract; codeDeployed is
 * given at the start) while old code keeps writing and new code (through the change's schema)
 * writes from expand on, in a thread of their own. Printed: the p99 of each version during the
 * change against the baseline (goal <= 2x), their failed statements (goal 0), and the change's
 * duration against its backfill alone (the same batches on the same rows, nothing else running).
 */
import { once } from 'node:events';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker as Thread } from 'node:worker_threads';

import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { Client } from 'pg';

import { createActivities } from '../activities';
import type { Endpoint } from '../activities/control-plane/control-plane';
import { adminEndpoint } from '../activities/control-plane/local-jobs';
import { ensureMigrationTables } from '../activities/postgres/migrations';
import { backfill, expandContract } from '../workflows';
import type { ExpandContractProgress } from '../workflows/expand-contract';
import { startLocalInstance } from '../test/helpers/local-instance';
import { createDevServerEnv, workflowBundle } from '../test/helpers/temporal';
import { record } from './lib/rounds';
import type { VersionResult, WritersCommand, WritersResult, WritersSettings } from './lib/writers-thread';

const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const BATCH = Number(process.env.BENCH_BATCH ?? 1_000);
const CONNECTIONS = 2;
const ALONE_MS = 10_000;
const CHANGE = 'user-id-bigint';
const VERSION_SCHEMA = 'change_user_id_bigint';

async function connect(endpoint: Endpoint): Promise<Client> {
  const client = new Client({ ...endpoint });
  client.on('error', () => undefined); // a dropped connection fails the next query, not the benchmark
  await client.connect();
  return client;
}

/** `conversations` as before the change (migration 0001's shape) with the seeded rows. */
async function resetTable(client: Client, superuser: Client): Promise<void> {
  await client.query(`DROP SCHEMA IF EXISTS ${VERSION_SCHEMA} CASCADE`);
  await client.query('DROP TABLE IF EXISTS conversations CASCADE');
  await client.query('DROP FUNCTION IF EXISTS dbops_sync_user_id_bigint()');
  await ensureMigrationTables(client);
  await client.query(`DELETE FROM dbops_migration_owners WHERE name LIKE 'change:%'`);
  await client.query(`DELETE FROM pgmigrations WHERE name LIKE 'change:%'`);
  await client.query(`CREATE TABLE conversations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id integer NOT NULL,
    title text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now())`);
  await client.query(
    `INSERT INTO conversations (id, user_id, title, created_at, updated_at)
       OVERRIDING SYSTEM VALUE SELECT id, user_id, title, created_at, updated_at FROM bench_seed`,
  );
  await client.query(`SELECT setval(pg_get_serial_sequence('conversations', 'id'), $1)`, [ROWS]);
  await client.query('VACUUM ANALYZE conversations');
  // The worker's role may not checkpoint: the instance's superuser does.
  await superuser.query('CHECKPOINT');
}

/** Starts both versions' writers in their own thread (new code waits for `start-new`). */
async function startWriters(endpoint: Endpoint) {
  const settings: WritersSettings = {
    endpoint: { ...endpoint },
    connections: CONNECTIONS,
    rows: ROWS,
    versionSchema: VERSION_SCHEMA,
  };
  // A thread does not inherit tsx's loader: it registers it, then loads the TypeScript file.
  const code = `require(${JSON.stringify(require.resolve('tsx/cjs'))});
require(${JSON.stringify(path.join(__dirname, 'lib', 'writers-thread.ts'))});`;
  const thread = new Thread(code, { eval: true, workerData: settings });
  await once(thread, 'message'); // started
  const send = (command: WritersCommand) => thread.postMessage(command);
  return {
    startNewCode: () => send('start-new'),
    async stop(): Promise<WritersResult> {
      send('stop');
      const [result] = (await once(thread, 'message')) as [WritersResult];
      await thread.terminate();
      return result;
    },
  };
}

async function timed(what: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await what();
  return (performance.now() - started) / 1000;
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const [env, instance] = await Promise.all([createDevServerEnv(), startLocalInstance('bench-change')]);
  const admin = await connect(instance.endpoint);
  const superuser = await connect(adminEndpoint(instance.endpoint.port, instance.endpoint.database));
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue: 'bench',
    workflowBundle: await workflowBundle(),
    activities: createActivities(instance.deps),
  });
  const running = worker.run();
  const { instanceId } = instance;
  try {
    console.log(`[bench] ${ROWS} conversations, batches of ${BATCH} rows ...`);
    await admin.query(
      `CREATE TABLE bench_seed AS
         SELECT g::bigint AS id, (g % 100000)::int AS user_id, 'conversation ' || g AS title,
                now() - g * interval '1 second' AS created_at, now() AS updated_at
           FROM generate_series(1, $1) g`,
      [ROWS],
    );

    // The change's backfill alone: its new column, no trigger, no load.
    await resetTable(admin, superuser);
    await admin.query('ALTER TABLE conversations ADD COLUMN _new_user_id bigint');
    const backfillAlone = await timed(() =>
      env.client.workflow.execute(backfill, {
        taskQueue: 'bench',
        workflowId: 'bench-backfill-alone',
        args: [{ instanceId, name: CHANGE, batchSize: BATCH }],
      }),
    );

    await resetTable(admin, superuser);
    const idle = await startWriters(instance.endpoint);
    await sleep(ALONE_MS);
    const alone = (await idle.stop()).old;

    await resetTable(admin, superuser);
    const writers = await startWriters(instance.endpoint);
    let change = 0;
    let result: WritersResult;
    try {
      change = await timed(async () => {
        const handle = await env.client.workflow.signalWithStart(expandContract, {
          taskQueue: 'bench',
          workflowId: 'bench-change',
          args: [{ instanceId, change: CHANGE, batchSize: BATCH }],
          signal: 'codeDeployed',
          signalArgs: [{ by: 'bench' }],
        });
        for (;;) {
          const progress = await handle.query<ExpandContractProgress>('progress').catch(() => undefined);
          if (progress?.applied.includes('expand')) break;
          if ((await handle.describe()).status.name !== 'RUNNING') break;
          await sleep(50);
        }
        writers.startNewCode();
        const outcome = await handle.result();
        if (outcome.outcome !== 'completed') throw new Error(`the change ended ${outcome.outcome}`);
      });
    } finally {
      result = await writers.stop();
    }
    const { rows } = await admin.query<{ type: string }>(
      `SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute
        WHERE attrelid = 'conversations'::regclass AND attname = 'user_id'`,
    );
    if (rows[0]?.type !== 'bigint') throw new Error(`user_id is ${rows[0]?.type} after the change`);

    const version = (label: string, r: VersionResult) =>
      console.log(
        `${label.padEnd(34)} p99 ${r.p99Ms.toFixed(1).padStart(7)} ms (${(r.p99Ms / alone.p99Ms).toFixed(2)}x)  ${r.statements} statements, ${r.failed} failed${r.firstError === undefined ? '' : ` (${r.firstError})`}`,
      );
    console.log('');
    version('old code alone', alone);
    version('old code during the change', result.old);
    version('new code during the change', result.new);
    console.log('goal: p99 <= 2x old code alone, 0 failed');
    // One run, not rounds: each figure is recorded as measured once.
    for (const [label, r] of [
      ['old code', result.old],
      ['new code', result.new],
    ] as const) {
      record(`${label} p99 during the change / old code alone`, [r.p99Ms / alone.p99Ms], { goal: '<= 2' });
      record(`${label} failed statements during the change`, [r.failed], { goal: '= 0' });
    }
    console.log('');
    console.log(`backfill alone                     ${backfillAlone.toFixed(1).padStart(7)} s`);
    console.log(`the whole change, under the writers ${change.toFixed(1).padStart(6)} s`);
    console.log(`change / backfill alone: ${(change / backfillAlone).toFixed(2)}`);
    record('the whole change / its backfill alone (time)', [change / backfillAlone]);
  } finally {
    worker.shutdown();
    await running.catch(() => undefined);
    await admin.end().catch(() => undefined);
    await superuser.end().catch(() => undefined);
    await Promise.allSettled([env.teardown(), instance.stop()]);
  }
}

main().catch((error: Error) => {
  console.error(error);
  process.exitCode = 1;
});
