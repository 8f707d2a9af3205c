import assert from 'node:assert/strict';

import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { Client as PgClient } from 'pg';

import { createActivities } from '../../activities';
import { HEARTBEAT_THROTTLE } from '../../activities/heartbeat';
import { healthCheck, vectorIndex, vectorRecall } from '../../workflows';
import type { VectorIndexInput, VectorIndexProgress } from '../../workflows/vector-index';
import type { VectorRecallInput } from '../../workflows/vector-recall';
import { localActivityDeps } from '../helpers/activity-deps';
import { runDbops } from '../helpers/cli';
import { metricsUrl } from '../helpers/metrics-runtime';
import { startThrowawayCluster, type ThrowawayCluster } from '../helpers/postgres';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';

const DIMENSIONS = 32;

describe('vectorIndex and vectorRecall workflows (dev server, real Postgres with pgvector)', () => {
  let env: TestWorkflowEnvironment;
  let cluster: ThrowawayCluster;
  let sql: PgClient;
  let worker: Worker;
  let running: Promise<void>;
  const taskQueue = 'vector-index';
  let runs = 0;

  before(async () => {
    [env, cluster] = await Promise.all([createDevServerEnv(), startThrowawayCluster()]);
    sql = await cluster.connect();
    await sql.query('CREATE EXTENSION vector');
    worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities(localActivityDeps(cluster.database)),
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    });
    running = worker.run();
  });
  // A test that failed midway leaves its table: the next ones (recall measures every index) start clean.
  afterEach(async () => {
    const { rows } = await sql.query<{ name: string }>(
      `SELECT relname AS name FROM pg_class WHERE relname LIKE 'docs\\_%' AND relkind = 'r'`,
    );
    for (const { name } of rows) await sql.query(`DROP TABLE ${name}`);
  });
  after(async () => {
    worker?.shutdown();
    await running;
    await Promise.all([env?.teardown(), cluster?.stop()]);
  });

  /** A table of `rows` random vectors in 10 categories, analyzed (its row estimate sizes the build). */
  async function table(name: string, rows: number): Promise<void> {
    await sql.query(`
      DROP TABLE IF EXISTS ${name};
      CREATE TABLE ${name} (id bigserial PRIMARY KEY, category int NOT NULL, embedding vector(${DIMENSIONS}));
      INSERT INTO ${name} (category, embedding)
        SELECT g % 10, (SELECT array_agg(random()) FROM generate_series(1, ${DIMENSIONS}) WHERE g > 0)::vector
          FROM generate_series(1, ${rows}) g;
      ANALYZE ${name};`);
  }

  function start(input: VectorIndexInput): Promise<WorkflowHandle<typeof vectorIndex>> {
    return env.client.workflow.start(vectorIndex, {
      taskQueue,
      workflowId: `vector-index-${++runs}`,
      args: [input],
    });
  }

  async function indexes(
    tableName: string,
  ): Promise<{ name: string; valid: boolean; options: string[] | null }[]> {
    const { rows } = await sql.query<{ name: string; valid: boolean; options: string[] | null }>(
      `SELECT c.relname AS name, i.indisvalid AS valid, c.reloptions AS options
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = $1::regclass AND NOT i.indisprimary ORDER BY c.relname`,
      [tableName],
    );
    return rows;
  }

  /**
   * Leaves the INVALID index a failed concurrent build leaves: `create` (CREATE INDEX CONCURRENTLY)
   * has made its catalog entry and waits for a writer's open transaction, and times out there.
   */
  async function leaveInvalid(tableName: string, create: string): Promise<void> {
    const writer = await cluster.connect();
    await writer.query('BEGIN');
    await writer.query(
      `INSERT INTO ${tableName} (category, embedding) SELECT category, embedding FROM ${tableName} LIMIT 1`,
    );
    await sql.query(`SET statement_timeout = '1s'`);
    await assert.rejects(sql.query(create), /statement timeout/);
    await sql.query(`RESET statement_timeout`);
    await writer.query('ROLLBACK');
  }

  /** Waits until `check` holds, looking every 50 ms, for at most `ms`. */
  async function until(what: string, check: () => Promise<boolean>, ms = 60_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  it('builds an HNSW index concurrently: valid, with its parameters, its progress seen while it runs', async () => {
    await table('docs_build', 3_000);
    // A transaction that wrote to the table holds the concurrent build in its first phase (it waits
    // for the writers before it builds) until the test commits it: the build is seen running.
    const writer = await cluster.connect();
    await writer.query('BEGIN');
    await writer.query(
      'INSERT INTO docs_build (category, embedding) SELECT category, embedding FROM docs_build LIMIT 1',
    );
    const handle = await start({
      action: 'build',
      table: 'docs_build',
      column: 'embedding',
      method: 'hnsw',
      m: 8,
      efConstruction: 64,
    });
    let waiting: VectorIndexProgress | undefined;
    await until('the progress query to show the build waiting for the writer', async () => {
      const progress = await handle.query<VectorIndexProgress>('progress');
      if (progress.build?.phase !== 'waiting for writers before build') return false;
      waiting = progress;
      return true;
    });
    await writer.query('COMMIT');
    const built = await handle.result();

    assert.equal(waiting!.stage, 'building');
    assert.equal(waiting!.index, 'public.docs_build_embedding_hnsw_idx');
    assert.equal(waiting!.maintenanceWorkMemBytes, built.memory.maintenanceWorkMemBytes);
    assert.equal(built.index, 'public.docs_build_embedding_hnsw_idx');
    assert.equal(built.build.outcome, 'built');
    assert.deepEqual(built.params, { m: 8, efConstruction: 64 });
    assert.ok(built.memory.maintenanceWorkMemBytes >= 64 * 1024 * 1024, JSON.stringify(built.memory));
    assert.equal(built.memory.willSpill, false);
    assert.deepEqual(await indexes('docs_build'), [
      { name: 'docs_build_embedding_hnsw_idx', valid: true, options: ['m=8', 'ef_construction=64'] },
    ]);
    assert.equal((await handle.query<VectorIndexProgress>('progress')).stage, 'done');

    // The same build again finds its index by name, as a retry after a lost reply does: nothing is built twice.
    const again = await (
      await start({
        action: 'build',
        table: 'docs_build',
        column: 'embedding',
        method: 'hnsw',
        m: 8,
        efConstruction: 64,
      })
    ).result();
    assert.equal(again.build.outcome, 'found');
  });

  it('a build whose reply is lost is retried, finds its own valid index and carries on', async () => {
    await table('docs_lost_reply', 2_000);
    // A worker of its own whose build activity loses its first reply after building.
    const activities = createActivities(localActivityDeps(cluster.database));
    let replies = 0;
    const lossy = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'vector-index-lost-reply',
      workflowBundle: await workflowBundle(),
      activities: {
        ...activities,
        buildVectorIndex: async (input: Parameters<typeof activities.buildVectorIndex>[0]) => {
          const outcome = await activities.buildVectorIndex(input);
          if (++replies === 1) throw new Error('the reply was lost');
          return outcome;
        },
      },
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    });
    const result = await lossy.runUntil(
      env.client.workflow.execute(vectorIndex, {
        taskQueue: 'vector-index-lost-reply',
        workflowId: `vector-index-${++runs}`,
        args: [{ action: 'build', table: 'docs_lost_reply', column: 'embedding', method: 'hnsw' }],
      }),
    );
    assert.equal(replies, 2);
    assert.equal(result.build.outcome, 'found');
    assert.deepEqual(await indexes('docs_lost_reply'), [
      { name: 'docs_lost_reply_embedding_hnsw_idx', valid: true, options: ['m=16', 'ef_construction=64'] },
    ]);
  });

  it('drops an INVALID index an earlier build left under its name, then builds it', async () => {
    await table('docs_leftover', 2_000);
    await leaveInvalid(
      'docs_leftover',
      `CREATE INDEX CONCURRENTLY docs_leftover_embedding_ivfflat_idx ON docs_leftover USING ivfflat (embedding vector_cosine_ops) WITH (lists = 10)`,
    );
    assert.deepEqual(
      (await indexes('docs_leftover')).map((i) => i.valid),
      [false],
    );

    const built = await (
      await start({
        action: 'build',
        table: 'docs_leftover',
        column: 'embedding',
        method: 'ivfflat',
        lists: 10,
      })
    ).result();
    assert.equal(built.build.outcome, 'built');
    assert.equal(built.build.droppedInvalid, true);
    assert.deepEqual(await indexes('docs_leftover'), [
      { name: 'docs_leftover_embedding_ivfflat_idx', valid: true, options: ['lists=10'] },
    ]);
  });

  it('refuses bad input with a clear error and creates nothing', async () => {
    await table('docs_refused', 100);
    const refused = async (input: Partial<VectorIndexInput>, message: RegExp) => {
      const handle = await start({
        action: 'build',
        table: 'docs_refused',
        column: 'embedding',
        method: 'hnsw',
        ...input,
      });
      await assert.rejects(handle.result(), (error: unknown) => {
        assert.ok(error instanceof WorkflowFailedError, String(error));
        const cause = error.cause as Error & { type?: string; cause?: Error & { type?: string } };
        const failure = cause.type === undefined ? cause.cause! : cause;
        assert.equal(failure.type, 'InvalidInputError', failure.message);
        assert.match(failure.message, message);
        return true;
      });
    };
    await refused(
      { column: 'category' },
      /column public\.docs_refused\.category is of type int4, not vector/,
    );
    await refused({ table: 'no_such_table' }, /table "no_such_table" does not exist/);
    await refused({ column: 'nope' }, /column "nope" does not exist in public\.docs_refused/);
    await refused({ m: 200 }, /m is 200; expected an integer from 2 to 100/);
    await refused({ m: 40, efConstruction: 64 }, /efConstruction 64 must be at least 2 × m \(80\)/);
    await refused({ lists: 10 }, /lists does not apply to hnsw indexes/);
    await refused({ table: 'docs; DROP TABLE x' }, /table "docs; DROP TABLE x" is not valid/);
    assert.deepEqual(await indexes('docs_refused'), []);
  });

  it('cancelled, stops the build (pg_cancel_backend) and leaves no INVALID index behind', async () => {
    await table('docs_cancel', 20_000);
    // ef_construction 1000 makes the build slow enough to be caught running.
    const handle = await start({
      action: 'build',
      table: 'docs_cancel',
      column: 'embedding',
      method: 'hnsw',
      m: 16,
      efConstruction: 1000,
    });
    const building = async () =>
      (
        await sql.query(
          `SELECT 1 FROM pg_stat_progress_create_index WHERE relid = 'docs_cancel'::regclass AND phase LIKE 'building index%'`,
        )
      ).rowCount === 1;
    await until('the build to run', building);
    await handle.cancel();
    await assert.rejects(handle.result(), (error: unknown) => {
      assert.ok(error instanceof WorkflowFailedError, String(error));
      assert.ok(error.cause instanceof CancelledFailure, String(error.cause));
      return true;
    });
    assert.deepEqual(await indexes('docs_cancel'), [], 'an index was left behind');
    assert.equal(await building(), false, 'the build still runs');
    const { rows } = await sql.query(
      `SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid`,
    );
    assert.deepEqual(rows, []);
  });

  it('rebuilds an index under the same name with new parameters while queries keep working', async () => {
    await table('docs_rebuild', 3_000);
    await sql.query(
      `CREATE INDEX docs_rebuild_idx ON docs_rebuild USING hnsw (embedding vector_l2_ops) WITH (m = 4, ef_construction = 16)`,
    );
    const probe = (await sql.query<{ v: string }>(`SELECT embedding::text AS v FROM docs_rebuild LIMIT 1`))
      .rows[0]!.v;
    const reader = await cluster.connect();
    await reader.query('SET enable_seqscan = off');
    let queries = 0;
    let stop = false;
    const reading = (async () => {
      while (!stop) {
        const { rowCount } = await reader.query(
          `SELECT id FROM docs_rebuild ORDER BY embedding <-> $1 LIMIT 5`,
          [probe],
        );
        assert.equal(rowCount, 5);
        queries++;
      }
    })();
    try {
      const rebuilt = await (
        await start({
          action: 'rebuild',
          table: 'docs_rebuild',
          column: 'embedding',
          method: 'hnsw',
          m: 24,
          efConstruction: 100,
        })
      ).result();
      assert.equal(rebuilt.index, 'public.docs_rebuild_idx');
      assert.ok(rebuilt.recall!.recall >= 0.9, JSON.stringify(rebuilt.recall));
      assert.equal(rebuilt.recall!.index, 'docs_rebuild_idx_dbops_new');
    } finally {
      stop = true;
      await reading;
    }
    assert.ok(queries > 0);
    assert.deepEqual(await indexes('docs_rebuild'), [
      { name: 'docs_rebuild_idx', valid: true, options: ['m=24', 'ef_construction=100'] },
    ]);
    const { rows } = await sql.query<{ def: string }>(
      `SELECT pg_get_indexdef('docs_rebuild_idx'::regclass) AS def`,
    );
    assert.match(rows[0]!.def, /USING hnsw \(embedding vector_l2_ops\)/);
    const plan = await reader.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN SELECT id FROM docs_rebuild ORDER BY embedding <-> $1 LIMIT 5`,
      [probe],
    );
    assert.match(plan.rows.map((r) => r['QUERY PLAN']).join('\n'), /Index Scan using docs_rebuild_idx/);
  });

  it('a rebuild whose new index misses the recall bar drops it and keeps the old index', async () => {
    await table('docs_bar', 2_000);
    await sql.query(
      `CREATE INDEX docs_bar_idx ON docs_bar USING hnsw (embedding vector_l2_ops) WITH (m = 16, ef_construction = 64)`,
    );
    // m = 2 and ef_construction = 4: a sparse graph that cannot find every exact neighbour.
    const handle = await start({
      action: 'rebuild',
      table: 'docs_bar',
      column: 'embedding',
      method: 'hnsw',
      m: 2,
      efConstruction: 4,
      minRecall: 1,
    });
    await assert.rejects(handle.result(), (error: unknown) => {
      assert.ok(error instanceof WorkflowFailedError, String(error));
      const cause = error.cause as Error & { type?: string };
      assert.equal(cause.type, 'InvalidStateError', cause.message);
      assert.match(
        cause.message,
        /^the new index docs_bar_idx_dbops_new reaches recall@10 0\.\d+ \(hnsw\.ef_search=40\), below 1: it was dropped and docs_bar_idx is unchanged$/,
      );
      return true;
    });
    assert.deepEqual(await indexes('docs_bar'), [
      { name: 'docs_bar_idx', valid: true, options: ['m=16', 'ef_construction=64'] },
    ]);
  });

  it('health check: each vector index with its size against shared_buffers, and a finding for an INVALID one', async () => {
    await table('docs_health', 2_000);
    await sql.query(`CREATE INDEX docs_health_idx ON docs_health USING hnsw (embedding vector_l2_ops)`);
    await leaveInvalid(
      'docs_health',
      `CREATE INDEX CONCURRENTLY docs_health_broken_idx ON docs_health USING hnsw (embedding vector_l2_ops)`,
    );
    const health = await env.client.workflow.execute(healthCheck, {
      taskQueue,
      workflowId: `health-${++runs}`,
      args: [{}],
    });
    const sharedBuffers = 128 * 1024 * 1024; // the throwaway cluster's default
    const listed = health.vectorIndexes.filter((i) => i.table === 'docs_health');
    assert.deepEqual(
      listed.map((i) => [i.index, i.method, i.valid, i.sharedBuffersBytes]),
      [
        ['public.docs_health_broken_idx', 'hnsw', false, sharedBuffers],
        ['public.docs_health_idx', 'hnsw', true, sharedBuffers],
      ],
    );
    assert.ok(listed[1]!.sizeBytes > 8192, JSON.stringify(listed));
    const findings = health.findings.filter((f) => f.check.startsWith('vector-index'));
    assert.deepEqual(findings, [
      {
        severity: 'warning',
        check: 'vector-index-invalid',
        message:
          'hnsw index public.docs_health_broken_idx on docs_health is INVALID (a failed or cancelled build): drop it or rebuild it with dbops index',
      },
    ]);
  });

  it('dbops index build shows the build and its result; a missing --method is a usage error', async () => {
    await table('docs_cli', 2_000);
    const dbops = (...args: string[]) => runDbops({ address: env.address, taskQueue }, args);
    const usage = await dbops('index', 'build', 'docs_cli.embedding');
    assert.equal(usage.code, 2, usage.stderr);
    assert.match(usage.stderr, /dbops index build: --method hnsw or --method ivfflat is required/);

    const built = await dbops('index', 'build', 'docs_cli.embedding', '--method', 'hnsw', '--m', '8');
    assert.equal(built.code, 0, built.stderr);
    assert.match(
      built.stderr,
      /build of a hnsw index on docs_cli\.embedding: vector-index-configured-docs_cli\.embedding/,
    );
    assert.match(built.stdout, /^INDEX +METHOD +PARAMS +OUTCOME/);
    assert.match(built.stdout, /public\.docs_cli_embedding_hnsw_idx +hnsw +m=8,efConstruction=64 +built/);
    assert.deepEqual(
      (await indexes('docs_cli')).map((i) => [i.name, i.valid]),
      [['docs_cli_embedding_hnsw_idx', true]],
    );
  });

  it('measures recall per index, plain and filtered with and without iterative scans, and exports the gauges', async () => {
    await table('docs_recall', 3_000);
    await sql.query(`CREATE INDEX docs_recall_idx ON docs_recall USING hnsw (embedding vector_cosine_ops)`);
    const measure = (input: VectorRecallInput) =>
      env.client.workflow.execute(vectorRecall, {
        taskQueue,
        workflowId: `vector-recall-${++runs}`,
        args: [input],
      });

    const report = await measure({ filterColumn: 'category', sampleSize: 10 });
    const measured = report.indexes.find((i) => i.index === 'docs_recall_idx')!;
    assert.ok(measured, JSON.stringify(report));
    assert.equal(measured.searchSetting, 'hnsw.ef_search=40');
    assert.equal(measured.queries, 10);
    assert.ok(measured.recall >= 0.9, JSON.stringify(measured));
    // A filter keeping a tenth of the rows: ef_search 40 candidates leave about 4 to pass it; an
    // iterative scan goes on until 10 pass.
    assert.ok(measured.filtered!.recall < 0.7, JSON.stringify(measured.filtered));
    assert.ok(measured.filtered!.recallIterative >= 0.9, JSON.stringify(measured.filtered));
    assert.deepEqual(report.below, []);

    const scraped = (await (await fetch(metricsUrl())).text()).split('\n');
    const gauge = (query: string) =>
      scraped.find(
        (line) =>
          line.startsWith('dbops_vector_recall{') &&
          line.includes('index="public.docs_recall_idx"') &&
          line.includes(`query="${query}"`),
      );
    assert.equal(Number(gauge('plain')?.split(' ').pop()), measured.recall);
    assert.equal(Number(gauge('filtered')?.split(' ').pop()), measured.filtered!.recall);
    assert.equal(Number(gauge('filtered_iterative')?.split(' ').pop()), measured.filtered!.recallIterative);

    // ef_search 1 returns one neighbour of the ten: below the bar, twice, so a rebuild is started
    // (its own check runs at the server's ef_search and passes).
    const low = await measure({ efSearch: 1, sampleSize: 10, rebuildBelow: true, confirmAfter: '1 second' });
    assert.deepEqual(low.below, ['public.docs_recall_idx'], JSON.stringify(low.indexes));
    const rebuildId = 'vector-index-rebuild-configured-public.docs_recall_idx';
    assert.deepEqual(low.rebuilds, [
      { index: 'public.docs_recall_idx', workflowId: rebuildId, started: true },
    ]);
    const rebuilt = await env.client.workflow.getHandle<typeof vectorIndex>(rebuildId).result();
    assert.equal(rebuilt.index, 'public.docs_recall_idx');
    assert.deepEqual(rebuilt.params, { m: 16, efConstruction: 64 });
  });
});
