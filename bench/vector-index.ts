/**
 * An HNSW build through the vectorIndex workflow vs a direct CREATE INDEX CONCURRENTLY of the same
 * index, and the recall of the index before and after a rebuild, in one run on one throwaway
 * cluster with pgvector and a Temporal dev server.
 *
 * Data: BENCH_VECTOR_ROWS (10,000) uniformly random vectors of BENCH_VECTOR_DIMENSIONS (64)
 * dimensions: unlike real embeddings they have no low-dimensional structure, the hard case for an
 * approximate index, so that recall differences show. Both sides build
 * `hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)` with the
 * maintenance_work_mem and max_parallel_maintenance_workers the workflow's plan chose, so they
 * differ only by what the workflow adds (planning, progress looks, round trips to Temporal). Each
 * build is dropped before the next, with the WAL drained; a warm-up, then BENCH_ROUNDS (>= 5) rounds
 * in alternating order (bench/lib/rounds.ts). Printed: the median and spread of workflow / direct
 * build time (goal <= 1.05), then recall@10 (50 queries, at the server's hnsw.ef_search of 40 and
 * at 10) of the index the workflow built and of the same index rebuilt through the workflow with
 * m = 24 and ef_construction = 128.
 *   npx tsx bench/vector-index.ts
 */
import { Worker } from '@temporalio/worker';

import { createActivities } from '../activities';
import { HEARTBEAT_THROTTLE } from '../activities/heartbeat';
import { vectorIndex, vectorRecall } from '../workflows';
import type { VectorIndexInput } from '../workflows/vector-index';
import { localActivityDeps } from '../test/helpers/activity-deps';
import { startThrowawayCluster } from '../test/helpers/postgres';
import { createDevServerEnv, workflowBundle } from '../test/helpers/temporal';
import { alternate, drainWal, median, printRatios, ratio, record, ROUNDS, timed } from './lib/rounds';

const ROWS = Number(process.env.BENCH_VECTOR_ROWS ?? 10_000);
const DIMENSIONS = Number(process.env.BENCH_VECTOR_DIMENSIONS ?? 64);
const INDEX = 'bench_docs_embedding_hnsw_idx';
const BUILD: VectorIndexInput = {
  action: 'build',
  table: 'bench_docs',
  column: 'embedding',
  method: 'hnsw',
  m: 16,
  efConstruction: 64,
};

async function main(): Promise<void> {
  const [env, cluster] = await Promise.all([
    createDevServerEnv(),
    startThrowawayCluster({ shared_buffers: "'256MB'" }),
  ]);
  const sql = await cluster.connect();
  const taskQueue = 'bench-vector-index';
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities(localActivityDeps(cluster.database)),
    maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
  });
  let runs = 0;
  const execute = <T>(fn: typeof vectorIndex | typeof vectorRecall, args: unknown[]) =>
    env.client.workflow.execute(fn as never, {
      taskQueue,
      workflowId: `bench-${++runs}`,
      args: args as never,
    }) as Promise<T>;
  try {
    await worker.runUntil(async () => {
      console.log(`generating ${ROWS} vectors of ${DIMENSIONS} dimensions`);
      await sql.query(`
        CREATE EXTENSION vector;
        CREATE TABLE bench_docs (id bigserial PRIMARY KEY, embedding vector(${DIMENSIONS}));
        INSERT INTO bench_docs (embedding)
          SELECT (SELECT array_agg(random() - 0.5) FROM generate_series(1, ${DIMENSIONS}) WHERE g > 0)::vector
            FROM generate_series(1, ${ROWS}) g;
        ANALYZE bench_docs;`);

      // The settings the workflow's plan chooses, for the direct build too.
      const planned = await execute<Awaited<ReturnType<typeof vectorIndex>>>(vectorIndex, [BUILD]);
      const { maintenanceWorkMemBytes } = planned.memory;
      const { rows } = await sql.query<{ workers: number }>(
        `SELECT current_setting('max_parallel_maintenance_workers')::int AS workers`,
      );
      console.log(
        `maintenance_work_mem ${Math.round(maintenanceWorkMemBytes / 1024 / 1024)} MB (estimate ${Math.round(planned.memory.estimatedBytes / 1024 / 1024)} MB), ` +
          `max_parallel_maintenance_workers ${rows[0]!.workers}`,
      );
      const drop = async () => {
        await sql.query(`DROP INDEX IF EXISTS ${INDEX}`);
        await drainWal(sql);
      };
      await drop();

      const samples = await alternate(
        {
          workflow: async () => {
            const seconds = await timed(() => execute(vectorIndex, [BUILD]));
            await drop();
            return seconds;
          },
          direct: async () => {
            const seconds = await timed(async () => {
              await sql.query(`SET maintenance_work_mem = '${Math.floor(maintenanceWorkMemBytes / 1024)}kB'`);
              await sql.query(
                `CREATE INDEX CONCURRENTLY ${INDEX} ON bench_docs USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)`,
              );
            });
            await sql.query('RESET maintenance_work_mem');
            await drop();
            return seconds;
          },
        },
        (round, s) =>
          console.log(`round ${round}: workflow ${s.workflow.toFixed(2)} s, direct ${s.direct.toFixed(2)} s`),
      );
      console.log(
        `HNSW build, median of ${ROUNDS}: through the workflow ${median(samples.workflow).toFixed(2)} s, direct ${median(samples.direct).toFixed(2)} s`,
      );
      record('HNSW build through the workflow', samples.workflow, { unit: 's' });
      record('HNSW build, direct', samples.direct, { unit: 's' });
      printRatios([
        ratio('HNSW build through the workflow / direct', samples.workflow, samples.direct, '<= 1.05'),
      ]);

      type Recall = Awaited<ReturnType<typeof vectorRecall>>;
      const recallOf = async (build: string, efSearch?: number) => {
        const input = efSearch === undefined ? { sampleSize: 50 } : { sampleSize: 50, efSearch };
        const report = await execute<Recall>(vectorRecall, [input]);
        const measured = report.indexes.find((i) => i.index === INDEX)!;
        record(`recall@10 over 50 queries, ${build}, ${measured.searchSetting}`, [measured.recall]);
        return `${measured.recall} (${measured.searchSetting})`;
      };
      await execute(vectorIndex, [BUILD]);
      const before = [
        await recallOf('m=16 ef_construction=64'),
        await recallOf('m=16 ef_construction=64', 10),
      ];
      await execute(vectorIndex, [{ ...BUILD, action: 'rebuild', m: 24, efConstruction: 128, index: INDEX }]);
      const after = [
        await recallOf('rebuilt m=24 ef_construction=128'),
        await recallOf('rebuilt m=24 ef_construction=128', 10),
      ];
      console.log(`recall@10 over 50 queries, m=16 ef_construction=64: ${before.join(', ')}`);
      console.log(`recall@10 over 50 queries, rebuilt with m=24 ef_construction=128: ${after.join(', ')}`);
    });
  } finally {
    await Promise.all([env.teardown(), cluster.stop()]);
  }
}

main().catch((error: Error) => {
  console.error(error);
  process.exitCode = 1;
});
