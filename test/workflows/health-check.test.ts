import assert from 'node:assert/strict';

import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { Client as PgClient } from 'pg';

import { createActivities } from '../../activities';
import { withClient } from '../../activities/postgres/connect';
import { setUpWorkerRole } from '../../activities/postgres/worker-role';
import { healthCheck } from '../../workflows';
import type { HealthCheckInput } from '../../workflows/health-check';
import { localActivityDeps } from '../helpers/activity-deps';
import { startThrowawayCluster, type ThrowawayCluster } from '../helpers/postgres';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';

describe('healthCheck workflow (dev server, real Postgres with max_connections = 10)', () => {
  let env: TestWorkflowEnvironment;
  let cluster: ThrowawayCluster;
  let runs = 0;

  before(async () => {
    [env, cluster] = await Promise.all([
      createDevServerEnv(),
      startThrowawayCluster({ max_connections: '10' }),
    ]);
    // What a deployer runs once as the master user: it creates the pg_stat_statements view.
    await withClient(cluster.database, setUpWorkerRole);
  });
  after(async () => {
    await Promise.all([env?.teardown(), cluster?.stop()]);
  });
  // Each test starts from a quiet database: no statement statistics and no table another test made.
  beforeEach(async () => {
    await withClient(cluster.database, (client) =>
      client.query('SELECT pg_stat_statements_reset(); DROP TABLE IF EXISTS conversation_chunks'),
    );
  });

  async function run(input: HealthCheckInput = {}) {
    const taskQueue = `health-${++runs}`;
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities(localActivityDeps(cluster.database)),
    });
    return worker.runUntil(
      env.client.workflow.execute(healthCheck, { taskQueue, workflowId: taskQueue, args: [input] }),
    );
  }

  it('reports a quiet database as ok, with info findings for what it could not measure', async () => {
    const result = await run();
    assert.equal(result.status, 'ok', JSON.stringify(result.findings));
    assert.deepEqual(
      result.findings.map((f) => [f.severity, f.check]),
      [
        ['info', 'replication'],
        ['info', 'knn'],
      ],
    );
    assert.match(result.findings[1]!.message, /no conversation_chunks table/);
    assert.deepEqual(result.replicas, []);
  });

  it('lists a slow statement (pg_sleep) among the findings and the slowest statements', async () => {
    const sql = await cluster.connect();
    await sql.query('SELECT pg_sleep(1.2)');
    const result = await run();
    const slow = result.findings.filter((f) => f.check === 'slow-statement');
    assert.equal(slow.length, 1, JSON.stringify(result.findings));
    assert.equal(slow[0]!.severity, 'warning');
    assert.match(slow[0]!.message, /^mean 1\d\d\d ms over 1 calls: SELECT pg_sleep\(\$1\)$/);
    assert.equal(result.slowest![0]!.query, 'SELECT pg_sleep($1)');
    assert.ok(result.mostFrequent!.length > 0);
    assert.equal(result.status, 'warning');
  });

  it('raises the connection saturation finding when connections near max_connections', async () => {
    const held: PgClient[] = [];
    try {
      // 10 allowed; the test's own client and the activity's make 2 more
      for (let i = 0; i < 7; i++) {
        const client = new PgClient({ ...cluster.database });
        await client.connect();
        held.push(client);
      }
      const result = await run();
      const saturation = result.findings.find((f) => f.check === 'connections-saturated');
      assert.ok(saturation, JSON.stringify(result.findings));
      assert.equal(saturation.severity, 'warning');
      assert.match(saturation.message, /^9 of max_connections 10 in use \(90%\), above 80%$/);
      assert.deepEqual(result.connections, { used: 9, max: 10 });

      const more = new PgClient({ ...cluster.database });
      await more.connect();
      held.push(more);
      const full = await run();
      assert.equal(full.status, 'critical');
      assert.match(full.findings.find((f) => f.check === 'connections-saturated')!.message, /^10 of/);
    } finally {
      await Promise.all(held.map((client) => client.end()));
    }
  });

  it('explains the kNN query on conversation_chunks and names the vector index it uses', async () => {
    const sql = await cluster.connect();
    await sql.query(`
      CREATE EXTENSION IF NOT EXISTS vector;
      CREATE TABLE conversation_chunks (
        id bigserial PRIMARY KEY, conversation_id bigint NOT NULL, content text NOT NULL, embedding vector(3));
      INSERT INTO conversation_chunks (conversation_id, content, embedding)
        SELECT g / 10, 'chunk ' || g, ARRAY[random(), random(), random()]::vector
          FROM generate_series(1, 2000) g;
      CREATE INDEX conversations_embedding_idx ON conversation_chunks
        USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
      ANALYZE conversation_chunks;
    `);
    const result = await run();
    assert.equal(result.knn.status, 'explained');
    assert.ok(result.knn.status === 'explained');
    assert.equal(result.knn.operator, '<=>');
    assert.equal(result.knn.indexUsed, 'conversations_embedding_idx');
    assert.match(result.knn.plan, /Buffers: shared hit=\d+/);
    const knn = result.findings.find((f) => f.check === 'knn')!;
    assert.deepEqual([knn.severity, /uses conversations_embedding_idx/.test(knn.message)], ['info', true]);
  });

  it('measures a named instance through the ControlPlane: an unknown one fails with NotFoundError', async () => {
    await assert.rejects(run({ instanceId: 'no-such-db' }), (error: Error) => {
      const failure = (error.cause as Error & { cause?: Error & { type?: string } }).cause;
      assert.equal(failure?.type, 'NotFoundError');
      assert.match(failure.message, /no-such-db/);
      return true;
    });
  });

  it('rejects a negative threshold before measuring anything', async () => {
    await assert.rejects(run({ thresholds: { slowStatementMs: -1 } }), (error: Error) => {
      assert.match(
        String((error.cause as Error).message),
        /thresholds.slowStatementMs is -1; expected a number >= 0/,
      );
      return true;
    });
  });
});
