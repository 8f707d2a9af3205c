/**
 * How a backfill's time grows with the table, so a user can predict a production run from a small
 * one: the self-tuned backfill workflow (the change user-id-bigint's backfill through Temporal) on
 * `conversations` of BENCH_GROWTH_ROWS rows (default 250k, 1M, 4M), each size on fresh rows with
 * the WAL drained (bench/lib/rounds.ts: a warm-up, then >= 5 rounds in alternating order).
 * Printed: each size's median time, spread and rows/s, and for each next size its growth factor
 * against the one before, per round: the time's and the time per row's (goal: within 10% of
 * linear, a time per row factor of 0.9 to 1.1); then each step's seconds per further million rows
 * (the time without the run's fixed part), whether that cost stays the same from step to step
 * (0.9 to 1.1), and the line that predicts a backfill of any size from the largest step.
 */
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { Client } from 'pg';

import { createActivities } from '../activities';
import type { Endpoint } from '../activities/control-plane/control-plane';
import { ADMIN_USER } from '../activities/control-plane/local-jobs';
import { backfill, deployMigration } from '../workflows';
import { startLocalInstance } from '../test/helpers/local-instance';
import { createDevServerEnv, workflowBundle } from '../test/helpers/temporal';
import { alternate, drainWal, median, printRatios, ratio, record, timed } from './lib/rounds';

const SIZES = (process.env.BENCH_GROWTH_ROWS ?? '250000,1000000,4000000').split(',').map(Number);

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

async function main(): Promise<void> {
  if (SIZES.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(`BENCH_GROWTH_ROWS: expected row counts like 250000,1000000, got ${SIZES.join(',')}`);
  }
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const [env, instance] = await Promise.all([createDevServerEnv(), startLocalInstance('bench-growth')]);
  // The superuser: resets, checkpoints and WAL switches are not the worker's to do.
  const admin = await connect({ ...instance.endpoint, user: ADMIN_USER });
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue: 'bench-growth',
    workflowBundle: await workflowBundle(),
    activities: createActivities(instance.deps),
  });
  const running = worker.run();
  let id = 0;
  try {
    await env.client.workflow.execute(deployMigration, {
      taskQueue: 'bench-growth',
      workflowId: `bench-growth-${++id}`,
      args: [{ instanceId: instance.instanceId, target: '0004_conversation_chunks_ivfflat_index' }],
    });
    await admin.query('ALTER TABLE conversations ADD COLUMN _new_user_id bigint');
    const largest = Math.max(...SIZES);
    console.log(`[bench] backfill of ${SIZES.join(', ')} rows, after a warm-up ...`);
    await admin.query(
      `CREATE TABLE bench_seed AS
         SELECT g::bigint AS id, (g % 100000)::int AS user_id, 'conversation ' || g AS title,
                now() - g * interval '1 second' AS created_at, now() AS updated_at
           FROM generate_series(1, $1) g`,
      [largest],
    );
    /** `rows` fresh rows, _new_user_id NULL, then the timed backfill, then its check. */
    const fill = (rows: number) => async () => {
      await admin.query('TRUNCATE conversations CASCADE');
      await admin.query(
        `INSERT INTO conversations (id, user_id, title, created_at, updated_at)
           OVERRIDING SYSTEM VALUE SELECT id, user_id, title, created_at, updated_at FROM bench_seed WHERE id <= $1`,
        [rows],
      );
      await admin.query('VACUUM ANALYZE conversations');
      await drainWal(admin);
      const seconds = await timed(() =>
        env.client.workflow.execute(backfill, {
          taskQueue: 'bench-growth',
          workflowId: `bench-growth-${++id}`,
          args: [{ instanceId: instance.instanceId, name: 'user-id-bigint' }],
        }),
      );
      const { rows: filled } = await admin.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM conversations WHERE _new_user_id = user_id',
      );
      if (filled[0]!.n !== rows) throw new Error(`backfill filled ${filled[0]!.n} of ${rows} rows`);
      return seconds;
    };
    const label = (rows: number) => `${rows} rows`;
    const samples = await alternate(
      Object.fromEntries(SIZES.map((rows) => [label(rows), fill(rows)])),
      (round, figures) =>
        console.log(
          `[bench] round ${round}: ${SIZES.map((rows) => `${label(rows)} ${figures[label(rows)]!.toFixed(1)} s`).join(', ')}`,
        ),
    );

    console.log('');
    console.log(
      `${'rows'.padStart(9)}  ${'median s'.padStart(9)}  ${'min'.padStart(7)}  ${'max'.padStart(7)}  rows/s`,
    );
    for (const rows of SIZES) {
      const seconds = samples[label(rows)]!;
      record(`backfill time, ${label(rows)}`, seconds, { unit: 's' });
      console.log(
        `${String(rows).padStart(9)}  ${median(seconds).toFixed(1).padStart(9)}  ${Math.min(...seconds)
          .toFixed(1)
          .padStart(7)}  ${Math.max(...seconds)
          .toFixed(1)
          .padStart(7)}  ${Math.round(rows / median(seconds))}`,
      );
    }
    console.log('');
    const growth = SIZES.slice(1).flatMap((rows, i) => {
      const before = SIZES[i]!;
      const factor = rows / before;
      const time = ratio(
        `time ${label(rows)} / ${label(before)} (x${factor} rows)`,
        samples[label(rows)]!,
        samples[label(before)]!,
        `${(0.9 * factor).toFixed(1)} to ${(1.1 * factor).toFixed(1)}`,
      );
      const perRow = ratio(
        `time per row ${label(rows)} / ${label(before)}`,
        samples[label(rows)]!.map((s) => s / factor),
        samples[label(before)]!,
        '0.9 to 1.1 (linear)',
      );
      return [time, perRow];
    });
    // What each further million rows costs: the time without the run's fixed part (starting the
    // workflow, the first chunk's connection, the batch size's ramp). Linear growth means this
    // cost is the same for every step, so any size can be predicted from two.
    const steps = SIZES.slice(1).map((rows, i) => {
      const before = SIZES[i]!;
      const after = samples[label(rows)]!;
      const earlier = samples[label(before)]!;
      const millions = (rows - before) / 1e6;
      return {
        name: `${label(before)} -> ${label(rows)}`,
        rows,
        after,
        perMillion: after.map((seconds, round) => (seconds - earlier[round]!) / millions),
      };
    });
    for (const step of steps) {
      console.log(
        `${step.name}: ${median(step.perMillion).toFixed(2)} s per further million rows (${Math.min(...step.perMillion).toFixed(2)} to ${Math.max(...step.perMillion).toFixed(2)})`,
      );
      record(`seconds per further million rows, ${step.name}`, step.perMillion, { unit: 's' });
    }
    console.log('');
    printRatios([
      ...growth,
      ...steps
        .slice(1)
        .map((step, i) =>
          ratio(
            `seconds per further million rows, ${step.name} / ${steps[i]!.name}`,
            step.perMillion,
            steps[i]!.perMillion,
            '0.9 to 1.1 (linear)',
          ),
        ),
    ]);
    const last = steps.at(-1);
    if (last !== undefined) {
      const perMillion = median(last.perMillion);
      const fixed = median(last.after) - perMillion * (last.rows / 1e6);
      console.log('');
      console.log(
        `prediction from the largest step: backfill ≈ ${fixed.toFixed(1)} s + ${perMillion.toFixed(2)} s per million rows`,
      );
    }
  } finally {
    worker.shutdown();
    await running.catch(() => undefined);
    await admin.end().catch(() => undefined);
    await Promise.allSettled([env.teardown(), instance.stop()]);
  }
}

main().catch((error: Error) => {
  console.error(error);
  process.exitCode = 1;
});
