import assert from 'node:assert/strict';

import { MockActivityEnvironment } from '@temporalio/testing';
import type { Client } from 'pg';

import {
  CHECKPOINT_TABLE,
  createBackfillActivities,
  type ChunkInput,
  type ChunkResult,
} from '../../../activities/postgres/backfill';
import { withClient } from '../../../activities/postgres/connect';
import { counter } from '../../fixtures/backfills/counter';
import { startThrowawayCluster, type ThrowawayCluster } from '../../helpers/postgres';

// The chunk activity alone (a mock activity context standing in for the worker's) on real Postgres.
describe('backfill chunk activity (real Postgres, mock activity context)', () => {
  let cluster: ThrowawayCluster;
  let sql: Client;
  let activities: ReturnType<typeof createBackfillActivities>;

  before(async () => {
    cluster = await startThrowawayCluster();
    sql = await cluster.connect();
    activities = createBackfillActivities({
      backfills: { counter },
      withInstance: (_instanceId, fn) => withClient(cluster.database, fn),
    });
  });
  after(async () => {
    await cluster?.stop();
  });

  beforeEach(async () => {
    await sql.query(`DROP SCHEMA IF EXISTS dbops CASCADE`);
    await sql.query(`DROP TABLE IF EXISTS counter_rows`);
    await sql.query(
      `CREATE TABLE counter_rows (id bigint PRIMARY KEY, value int NOT NULL, applied int NOT NULL DEFAULT 0, done boolean NOT NULL DEFAULT false)`,
    );
    await sql.query(`INSERT INTO counter_rows (id, value) SELECT g, g FROM generate_series(1, 1000) g`);
  });

  const input: ChunkInput = {
    instanceId: 'unused',
    name: 'counter',
    params: { factor: 2 },
    lastKey: null,
    batchSize: 100,
    delayMs: 0,
    chunkMs: 0,
    throttle: { maxReplicaLagSeconds: 10, maxActiveConnections: 50 },
    batchTimeoutMs: 20_000,
  };
  /** One attempt of the same chunk (same workflow run and activity id) each time. */
  const attempt = (n: number) =>
    new MockActivityEnvironment({
      workflowExecution: { workflowId: 'backfill-counter-x', runId: 'run-1' },
      activityId: '7',
      attempt: n,
    });
  const chunk = (env: MockActivityEnvironment, extra: Partial<ChunkInput> = {}): Promise<ChunkResult> =>
    env.run((chunkInput: ChunkInput) => activities.runBackfillChunk(chunkInput), { ...input, ...extra });

  /** Until a session waits on a lock of this kind (10 s at most). */
  async function waiting(event: string): Promise<void> {
    for (let i = 0; i < 500; i++) {
      const { rows } = await sql.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = $1`,
        [event],
      );
      if (rows[0]!.n > 0) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.fail(`no session ever waited on a ${event} lock`);
  }

  it('a retry waits for the batch a lost attempt is still running, then resumes exactly after it', async () => {
    // The first attempt's batch waits on a row lock: its worker is "lost" with the statement running.
    const locker = await cluster.connect();
    await locker.query('BEGIN');
    await locker.query('SELECT 1 FROM counter_rows WHERE id = 50 FOR UPDATE');
    const lost = chunk(attempt(1));
    await waiting('transactionid');
    // The retry queues behind the lost attempt's session instead of walking the same batch.
    const retry = chunk(attempt(2));
    await waiting('advisory');
    await locker.query('COMMIT');
    const first = await lost;
    assert.deepEqual([first.batches, first.rowsChanged, first.lastKey], [1, 100, '100']);
    // The retry read the checkpoint the lost batch committed, and ran the next batch.
    const second = await retry;
    assert.deepEqual(
      [second.batches, second.rowsScanned, second.rowsChanged, second.lastKey, second.done],
      [2, 200, 200, '200', false],
    );
    const { rows } = await sql.query<{ done: number; twice: number }>(
      `SELECT count(*) FILTER (WHERE done)::int AS done, count(*) FILTER (WHERE applied > 1)::int AS twice FROM counter_rows`,
    );
    assert.deepEqual(rows[0], { done: 200, twice: 0 });
  });

  it('a retry after a lost reply returns what the chunk committed, without running a batch again', async () => {
    const done = await chunk(attempt(1), { chunkMs: 60_000 });
    assert.deepEqual([done.done, done.batches, done.rowsChanged], [true, 11, 1000]);
    const again = await chunk(attempt(2), { chunkMs: 60_000 });
    assert.deepEqual({ ...again, busyMs: 0 }, { ...done, busyMs: 0 });
    const { rows } = await sql.query<{ batches: number }>(
      `SELECT batches FROM ${CHECKPOINT_TABLE} WHERE workflow_id = 'backfill-counter-x'`,
    );
    assert.deepEqual(rows, [{ batches: 11 }]);
  });

  it('a chunk of another activity starts from its input, not from an older chunk checkpoint', async () => {
    await chunk(attempt(1));
    const next = await chunk(
      new MockActivityEnvironment({
        workflowExecution: { workflowId: 'backfill-counter-x', runId: 'run-1' },
        activityId: '8',
      }),
      { lastKey: '100' },
    );
    assert.deepEqual([next.batches, next.rowsChanged, next.lastKey], [1, 100, '200']);
  });
});
