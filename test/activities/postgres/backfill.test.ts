import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

import { CancelledFailure } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { Client } from 'pg';

import {
  CHECKPOINT_TABLE,
  createBackfillActivities,
  type ChunkInput,
  type ChunkResult,
} from '../../../activities/postgres/backfill';
import { nextBatchSize, shrunkBatchSize } from '../../../activities/postgres/batch-size';
import { withClient } from '../../../activities/postgres/connect';
import { readHealth } from '../../../activities/postgres/throttle';
import { readBusySessions } from '../../../activities/postgres/throttle/busy-sessions';
import { prometheus } from '../../../activities/postgres/throttle/prometheus';
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
    const totals = (r: ChunkResult) => [r.lastKey, r.done, r.batches, r.rowsScanned, r.rowsChanged];
    assert.deepEqual(totals(again), totals(done));
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
  it('self-tuned: the batch size grows from 10 rows toward the one that takes the target time, and every row is done once', async () => {
    // Every row costs about 1 ms: a 100 ms batch is about 90 rows.
    await sql.query(`CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN PERFORM pg_sleep(0.001); RETURN NEW; END$$;
      CREATE TRIGGER slow_row BEFORE UPDATE ON counter_rows FOR EACH ROW EXECUTE FUNCTION slow_row()`);
    try {
      const result = await chunk(attempt(1), {
        batchSize: 10,
        tuning: { targetMs: 100, minSize: 10, maxSize: 1000 },
        chunkMs: 60_000,
      });
      assert.equal(result.done, true);
      assert.equal(result.rowsChanged, 1000);
      assert.ok(
        result.batchSize >= 30 && result.batchSize <= 150,
        `tuned to ${result.batchSize} rows (about 90 take 100 ms)`,
      );
      assert.ok(result.batches < 50, `${result.batches} batches (100 at the first size)`);
    } finally {
      await sql.query('DROP FUNCTION slow_row() CASCADE');
    }
    const { rows } = await sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM counter_rows WHERE applied <> 1`,
    );
    assert.equal(rows[0]!.n, 0);
  });

  it('self-tuned: batches aim at the full target on a quiet database and at the contended target while another session is busy, and tune toward it', async () => {
    // Every row costs about 1 ms: 100 ms is about 90 rows, 20 ms about 18.
    await sql.query(`CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN PERFORM pg_sleep(0.001); RETURN NEW; END$$;
      CREATE TRIGGER slow_row BEFORE UPDATE ON counter_rows FOR EACH ROW EXECUTE FUNCTION slow_row()`);
    const tuning = { targetMs: 100, contendedTargetMs: 20, minSize: 5, maxSize: 1000 };
    const busy = await cluster.connect();
    try {
      // Quiet: this suite's own session last ran a statement more than a second ago (the worker's,
      // named dbops, never count).
      for (let i = 0; (await withClient(cluster.database, readBusySessions)) > 0; i++) {
        if (i === 300) assert.fail('another session stayed busy for 6 s');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const quiet = await chunk(attempt(1), { batchSize: 50, tuning, chunkMs: 0 });
      assert.deepEqual([quiet.busySessions, quiet.aimedMs], [0, 100]);

      // Busy: a session of the application in an open transaction.
      await busy.query('BEGIN');
      await busy.query('SELECT 1');
      const contended = await chunk(
        new MockActivityEnvironment({
          workflowExecution: { workflowId: 'backfill-counter-x', runId: 'run-1' },
          activityId: '8',
        }),
        { lastKey: quiet.lastKey, batchSize: quiet.batchSize, tuning, chunkMs: 60_000 },
      );
      assert.equal(contended.done, true);
      assert.deepEqual([contended.busySessions, contended.aimedMs], [1, 20]);
      assert.ok(
        contended.batchSize >= 5 && contended.batchSize <= 40,
        `tuned to ${contended.batchSize} rows (about 18 take 20 ms)`,
      );
    } finally {
      await busy.end();
      await sql.query('DROP FUNCTION slow_row() CASCADE');
    }
    const { rows } = await sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM counter_rows WHERE applied <> 1`,
    );
    assert.equal(rows[0]!.n, 0);
  });

  it('self-tuned: while another session is busy, each batch is followed by a pause twice as long as it took', async () => {
    // Every row costs about 1 ms; each batch statement logs when it started and when its UPDATE ended.
    await sql.query(`CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN PERFORM pg_sleep(0.001); RETURN NEW; END$$;
      CREATE TRIGGER slow_row BEFORE UPDATE ON counter_rows FOR EACH ROW EXECUTE FUNCTION slow_row();
      CREATE TABLE batch_times (started timestamptz, ended timestamptz);
      CREATE FUNCTION batch_time() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN INSERT INTO batch_times VALUES (statement_timestamp(), clock_timestamp()); RETURN NULL; END$$;
      CREATE TRIGGER batch_time AFTER UPDATE ON counter_rows FOR EACH STATEMENT EXECUTE FUNCTION batch_time()`);
    const busy = await cluster.connect();
    try {
      await busy.query('BEGIN');
      await busy.query('SELECT 1');
      const result = await chunk(attempt(1), {
        batchSize: 20,
        tuning: { targetMs: 100, contendedTargetMs: 20, contendedPauseFactor: 2, minSize: 5, maxSize: 1000 },
        chunkMs: 60_000,
      });
      assert.equal(result.done, true);
      assert.equal(result.busySessions, 1);
      const { rows } = await sql.query<{ ran: number; paused: number }>(
        `SELECT 1000 * extract(epoch FROM ended - started)::float8 AS ran,
                1000 * extract(epoch FROM lead(started) OVER (ORDER BY started) - ended)::float8 AS paused
           FROM batch_times ORDER BY started`,
      );
      const pairs = rows.slice(0, -1);
      assert.ok(pairs.length >= 10, `${rows.length} batches`);
      const short = pairs.filter(({ ran, paused }) => paused < 2 * ran - 2);
      assert.deepEqual(short, [], 'a batch followed by a pause shorter than twice its time');
    } finally {
      await busy.end();
      await sql.query(
        'DROP FUNCTION slow_row() CASCADE; DROP FUNCTION batch_time() CASCADE; DROP TABLE batch_times',
      );
    }
  });

  it('self-tuned: a batch stopped by its lock timeout is rolled back and the chunk ends with the size halved, saying why', async () => {
    const locker = await cluster.connect();
    await locker.query('BEGIN');
    await locker.query('SELECT 1 FROM counter_rows WHERE id = 50 FOR UPDATE');
    try {
      const result = await chunk(attempt(1), {
        batchSize: 400,
        tuning: { targetMs: 100, minSize: 50, maxSize: 1000 },
        chunkMs: 60_000,
      });
      assert.deepEqual(
        [
          result.done,
          result.batches,
          result.rowsChanged,
          result.timeouts,
          result.batchSize,
          result.lastTimeout,
        ],
        [false, 0, 0, 1, 200, 'lock timeout (500 ms) at 400 rows'],
      );
    } finally {
      await locker.query('ROLLBACK');
      await locker.end();
    }
    const { rows } = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM counter_rows WHERE done`);
    assert.equal(rows[0]!.n, 0, 'the timed-out batch left its rows pending');
  });

  /** A session the busy-session count leaves out (named like the worker's), for locks and looks. */
  async function unseenSession(): Promise<Client> {
    const client = await cluster.connect();
    await client.query(`SET application_name = 'dbops test'`);
    return client;
  }
  /** Until no other session is busy (this suite's own last statement ended over a second ago). */
  async function quiet(): Promise<void> {
    for (let i = 0; (await withClient(cluster.database, readBusySessions)) > 0; i++) {
      if (i === 300) assert.fail('another session stayed busy for 6 s');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  /** Until `query` on `client` answers true (10 s at most). */
  async function until(client: Client, query: string, what: string): Promise<void> {
    for (let i = 0; i < 500; i++) {
      const { rows } = await client.query<{ ok: boolean }>(query);
      if (rows[0]!.ok) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.fail(`never saw ${what}`);
  }
  /**
   * A session that looks and one that holds row `id` locked in an open transaction, both unseen by
   * the busy-session count, once the database is quiet.
   */
  async function rowLockedOnQuietDatabase(id: number): Promise<{ look: Client; locker: Client }> {
    const look = await unseenSession();
    const locker = await unseenSession();
    await quiet();
    await locker.query('BEGIN');
    await locker.query('SELECT 1 FROM counter_rows WHERE id = $1 FOR UPDATE', [id]);
    return { look, locker };
  }
  const waitingOn = (event: string) =>
    `SELECT count(*) > 0 AS ok FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = '${event}'`;
  // Batches of exactly 100 rows (the bounds pin the size); a lock wait is cut short after 15 s.
  const sideBySide: Partial<ChunkInput> = {
    batchSize: 100,
    tuning: { targetMs: 8000, minSize: 100, maxSize: 100 },
    batchTimeoutMs: 60_000,
    streams: 2,
  };

  it('side by side on a quiet database: the batch after the next runs on a second session and commits only after the next one, with the checkpoint past both; every row once', async () => {
    // The next batch (rows 1-100) waits on a row lock; the one after it (101-200) runs meanwhile.
    const { look, locker } = await rowLockedOnQuietDatabase(50);
    const running = chunk(attempt(1), { ...sideBySide, chunkMs: 60_000 });
    await until(look, waitingOn('transactionid'), 'the next batch waiting on the row lock');
    await until(
      look,
      `SELECT count(*) > 0 AS ok FROM pg_stat_activity WHERE application_name = 'dbops' AND state = 'idle in transaction'`,
      'the batch after it done and waiting to commit',
    );
    const before = await look.query<{ done: number; checkpoints: number }>(
      `SELECT (SELECT count(*) FROM counter_rows WHERE done)::int AS done,
              (SELECT count(*) FROM ${CHECKPOINT_TABLE})::int AS checkpoints`,
    );
    assert.deepEqual(
      before.rows[0],
      { done: 0, checkpoints: 0 },
      'nothing committed ahead of the next batch',
    );
    await locker.query('COMMIT');
    const result = await running;
    assert.deepEqual(
      [result.done, result.batches, result.rowsScanned, result.rowsChanged, result.lastKey, result.streams],
      [true, 11, 1000, 1000, '1000', 2],
    );
    const { rows } = await look.query<{ once: number; saved: string; batches: number }>(
      `SELECT (SELECT count(*) FROM counter_rows WHERE applied = 1)::int AS once,
              last_key AS saved, batches FROM ${CHECKPOINT_TABLE}`,
    );
    assert.deepEqual(rows, [{ once: 1000, saved: '1000', batches: 11 }]);
  });

  it("side by side: a retry waits for a lost attempt's second session too, then resumes exactly after what it committed", async () => {
    // The lost attempt's second batch (101-200) waits on a row lock after its first (1-100) committed.
    const { look, locker } = await rowLockedOnQuietDatabase(150);
    const lost = chunk(attempt(1), { ...sideBySide, chunkMs: 0 });
    await until(look, waitingOn('transactionid'), 'the second batch waiting on the row lock');
    // Its worker is gone: the first session with it (the server ends it), the second still runs.
    await look.query(
      `SELECT pg_terminate_backend(pid) FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objid = hashtext('backfill-counter-x')::oid`,
    );
    const retry = chunk(attempt(2), { ...sideBySide, chunkMs: 60_000 });
    await until(look, waitingOn('advisory'), 'the retry waiting for the lost second session');
    await locker.query('COMMIT');
    const resumed = await retry;
    await lost.then(
      () => undefined,
      () => undefined,
    );
    assert.deepEqual(
      [resumed.done, resumed.batches, resumed.rowsScanned, resumed.rowsChanged, resumed.lastKey],
      [true, 11, 1000, 1000, '1000'],
    );
    const { rows } = await look.query<{ once: number }>(
      `SELECT count(*)::int AS once FROM counter_rows WHERE applied = 1`,
    );
    assert.equal(rows[0]!.once, 1000);
  });

  it("side by side: the second session's connection dropped fails that attempt only; the retry resumes after the batch that committed", async () => {
    const { look, locker } = await rowLockedOnQuietDatabase(150);
    const first = chunk(attempt(1), { ...sideBySide, chunkMs: 60_000 });
    await until(look, waitingOn('transactionid'), 'the second batch waiting on the row lock');
    await look.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'transactionid'`,
    );
    await assert.rejects(first, /terminat|closed/i);
    await locker.query('ROLLBACK');
    const retry = await chunk(attempt(2), { ...sideBySide, chunkMs: 60_000 });
    assert.deepEqual(
      [retry.done, retry.batches, retry.rowsScanned, retry.rowsChanged, retry.lastKey],
      [true, 11, 1000, 1000, '1000'],
    );
    const { rows } = await look.query<{ once: number }>(
      `SELECT count(*)::int AS once FROM counter_rows WHERE applied = 1`,
    );
    assert.equal(rows[0]!.once, 1000);
  });

  it("side by side, cancelled: the second session's waiting batch is cancelled at once and rolled back; what committed is reported", async () => {
    const { look, locker } = await rowLockedOnQuietDatabase(150);
    try {
      // The lock wait is cut short only after 150 s, well past the test's own timeout.
      const env = attempt(1);
      const running = chunk(env, {
        ...sideBySide,
        tuning: { targetMs: 60_000, minSize: 100, maxSize: 100 },
        batchTimeoutMs: 600_000,
        chunkMs: 60_000,
      });
      await until(look, waitingOn('transactionid'), 'the second batch waiting on the row lock');
      env.cancel();
      // Settles while the row is still locked: the waiting batch did not wait for the lock.
      const error = await running.then(
        () => assert.fail('the chunk was not cancelled'),
        (failure: unknown) => failure,
      );
      assert.ok(error instanceof CancelledFailure, String(error));
      const committed = error.details[0] as ChunkResult;
      assert.deepEqual([committed.batches, committed.rowsChanged, committed.lastKey], [1, 100, '100']);
      const { rows } = await look.query<{ done: number; waiting: number }>(
        `SELECT (SELECT count(*) FROM counter_rows WHERE done)::int AS done,
                (SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'transactionid')::int AS waiting`,
      );
      assert.deepEqual(rows[0], { done: 100, waiting: 0 });
    } finally {
      await locker.query('ROLLBACK');
    }
  });

  it('the size moves by at most half or one and a half times a batch, stays within 10% of the target, and keeps to its bounds', () => {
    const tuning = { targetMs: 200, minSize: 100, maxSize: 10_000 };
    assert.deepEqual(
      [
        nextBatchSize(1000, 20, tuning),
        nextBatchSize(1000, 150, tuning),
        nextBatchSize(1000, 190, tuning),
        nextBatchSize(1000, 400, tuning),
        nextBatchSize(1000, 5000, tuning),
        nextBatchSize(8000, 10, tuning),
        nextBatchSize(120, 1000, tuning),
        shrunkBatchSize(1000, tuning),
        shrunkBatchSize(150, tuning),
      ],
      [1500, 1333, 1000, 500, 500, 10_000, 100, 500, 100],
    );
  });

  // A stand-in for Prometheus (an HTTP server answering its instant-query API): no Prometheus server runs here.
  it('health: every indicator reads on real Postgres; a Prometheus query (stand-in server) over its threshold, or failing, is why to wait', async () => {
    let value = '0.2';
    const server = createServer((request, response) => {
      const query = new URL(request.url ?? '', 'http://x').searchParams.get('query');
      response.setHeader('content-type', 'application/json');
      response.end(
        JSON.stringify({
          status: 'success',
          data: { resultType: 'vector', result: [{ metric: { q: query }, value: [0, value] }] },
        }),
      );
    });
    server.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const signal = { url, query: 'histogram_quantile(0.99, rate(app_seconds_bucket[1m]))', threshold: 0.5 };
    try {
      const read = (limits: Parameters<typeof readHealth>[0]['limits']) =>
        readHealth({ client: sql, table: 'public.counter_rows', limits, memory: new Map() });
      const all = await read({ waitForAutovacuum: true, prometheus: signal });
      assert.deepEqual(
        all.readings.map((r) => [r.indicator, r.over]),
        [
          ['replica lag', false],
          ['active sessions', false],
          ['autovacuum on the table', false],
          [`prometheus ${signal.query}`, false],
        ],
      );
      assert.equal(all.over, undefined);
      value = '0.8';
      assert.equal((await read({ prometheus: signal })).over, `prometheus ${signal.query} 0.8 > 0.5`);
      const down = await read({ prometheus: { ...signal, url: 'http://127.0.0.1:1' } });
      assert.match(down.over ?? '', /^prometheus .*: fetch failed$/);
      // Asked at most every few seconds: a second read in the same chunk reuses the answer.
      const memory = new Map<string, unknown>();
      const context = { client: sql, table: 'public.counter_rows', limits: { prometheus: signal }, memory };
      const first = await prometheus.read(context);
      value = '0.1';
      assert.deepEqual(await prometheus.read(context), first);
    } finally {
      server.close();
    }
  });
});
