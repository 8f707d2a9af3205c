import assert from 'node:assert/strict';

import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';

import { withClient } from '../../../activities/postgres/connect';
import { createHealthActivities, type HealthSnapshot } from '../../../activities/postgres/health';
import type { OnInstance } from '../../../activities/postgres/on-instance';
import { startThrowawayCluster, type ThrowawayCluster } from '../../helpers/postgres';

describe('health activity (real Postgres)', () => {
  let cluster: ThrowawayCluster;
  let activities: ReturnType<typeof createHealthActivities>;

  before(async () => {
    cluster = await startThrowawayCluster();
    const onInstance: OnInstance = (_instanceId, fn) => withClient(cluster.database, fn);
    activities = createHealthActivities(onInstance);
  });
  after(async () => {
    await cluster?.stop();
  });

  /** measureHealth in a (mock) activity context, as the worker runs it. */
  const measure = (env = new MockActivityEnvironment()): Promise<HealthSnapshot> =>
    env.run(() => activities.measureHealth({}));

  it('creates the pg_stat_statements extension when the library is preloaded but the extension is missing', async () => {
    const sql = await cluster.connect();
    assert.equal(
      (await sql.query(`SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'`)).rowCount,
      0,
    );
    const snapshot = await measure();
    assert.equal(snapshot.statementsProblem, null);
    assert.equal(
      (await sql.query(`SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'`)).rowCount,
      1,
    );
  });

  it('never returns a statement that carries a password (utility statements keep their literals)', async () => {
    const sql = await cluster.connect();
    await sql.query('CREATE ROLE app LOGIN');
    for (let i = 0; i < 50; i++) await sql.query(`ALTER ROLE app PASSWORD 'hunter2-secret'`);
    const snapshot = await measure();
    const frequent = snapshot.mostFrequent!.find((s) => s.calls === 50)!;
    assert.equal(frequent.query, '(statement mentioning a password, not shown)');
    assert.doesNotMatch(JSON.stringify(snapshot), /hunter2/);
  });

  it('measures a primary without replicas and reports the kNN table as absent', async () => {
    const snapshot = await measure();
    assert.equal(snapshot.isReplica, false);
    assert.deepEqual(snapshot.replicas, []);
    assert.deepEqual(snapshot.knn, { status: 'no-table' });
    assert.ok(snapshot.cache.hits > 0);
  });

  it('heartbeats on its timer while a measurement waits, and cancelling the activity cancels its query', async () => {
    const sql = await cluster.connect();
    await sql.query('CREATE EXTENSION IF NOT EXISTS vector');
    await sql.query('CREATE TABLE conversation_chunks (id bigserial PRIMARY KEY, embedding vector(3))');
    const locker = await cluster.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE conversation_chunks IN ACCESS EXCLUSIVE MODE');
    const env = new MockActivityEnvironment();
    let beats = 0;
    let wanted = Infinity;
    let enough!: () => void;
    const reached = new Promise<void>((resolve) => (enough = resolve));
    env.on('heartbeat', () => {
      beats += 1;
      if (beats >= wanted) enough();
    });
    const running = measure(env);
    try {
      for (;;) {
        const { rows } = await sql.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE wait_event_type = 'Lock' AND query LIKE '%FROM conversation_chunks%'`,
        );
        if (rows[0]!.n === 1) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      // Two more heartbeats while the query still waits.
      wanted = beats + 2;
      await reached;
      env.cancel();
      await assert.rejects(running, (error: Error) => error instanceof CancelledFailure);
      const { rows } = await sql.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'`,
      );
      assert.equal(rows[0]!.n, 0, 'the waiting query was cancelled');
    } finally {
      await locker.query('ROLLBACK');
      await sql.query('DROP TABLE conversation_chunks');
    }
  });
});
