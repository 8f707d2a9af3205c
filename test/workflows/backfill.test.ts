import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { Client } from 'pg';

import { createActivities, type Activities } from '../../activities';
import { HEARTBEAT_THROTTLE } from '../../activities/heartbeat';
import { backfill } from '../../workflows';
import type { BackfillProgress } from '../../workflows/backfill';
import { backfillProgressLine } from '../../workers/backfill-progress';
import { counter } from '../fixtures/backfills/counter';
import { startLocalInstance, type LocalInstance } from '../helpers/local-instance';
import { metricsUrl } from '../helpers/metrics-runtime';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';

const ROWS = 20_000;

/** counter_rows with ROWS rows, and the single-UPDATE result to compare with in counter_expected. */
async function resetTable(client: Client): Promise<void> {
  await client.query(`DROP TABLE IF EXISTS counter_rows, counter_expected`);
  await client.query(
    `CREATE TABLE counter_rows (id bigint PRIMARY KEY, value int NOT NULL, applied int NOT NULL DEFAULT 0, done boolean NOT NULL DEFAULT false)`,
  );
  await client.query(
    `INSERT INTO counter_rows (id, value) SELECT g * 3, g % 97 FROM generate_series(1, $1) g`,
    [ROWS],
  );
  await client.query(`CREATE TABLE counter_expected AS SELECT * FROM counter_rows`);
  await client.query(
    `UPDATE counter_expected SET value = value * 3, applied = applied + 1, done = true WHERE NOT done`,
  );
  await client.query('ANALYZE counter_rows');
}

/** Rows whose final state differs from the single UPDATE, and rows touched other than once. */
async function compare(client: Client): Promise<{ different: number; notOnce: number }> {
  const { rows } = await client.query<{ different: number; not_once: number }>(
    `SELECT (SELECT count(*) FROM counter_rows r FULL JOIN counter_expected e USING (id)
              WHERE r.value IS DISTINCT FROM e.value OR r.done IS DISTINCT FROM e.done)::int AS different,
            (SELECT count(*) FROM counter_rows WHERE applied <> 1)::int AS not_once`,
  );
  return { different: rows[0]!.different, notOnce: rows[0]!.not_once };
}

async function until(
  handle: WorkflowHandle<typeof backfill>,
  what: string,
  done: (p: BackfillProgress) => boolean,
): Promise<BackfillProgress> {
  for (let i = 0; i < 1200; i++) {
    const progress = await handle.query<BackfillProgress>('progress').catch(() => undefined);
    if (progress !== undefined && done(progress)) return progress;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`backfill never reached: ${what}`);
}

describe('backfill workflow (dev server, local instance)', () => {
  let env: TestWorkflowEnvironment;
  let instance: LocalInstance;
  let client: Client;

  before(async () => {
    [env, instance] = await Promise.all([createDevServerEnv(), startLocalInstance('backfill-test')]);
    client = await instance.connect();
  });
  after(async () => {
    await Promise.all([env?.teardown(), instance?.stop()]);
  });

  const input = (extra: object = {}) => ({
    instanceId: instance.instanceId,
    name: 'counter',
    params: { factor: 3 },
    batchSize: 500,
    ...extra,
  });

  it('the worker killed with SIGKILL mid-chunk (after batch 3 of chunk 2 committed): the retry resumes from the checkpoint, re-runs at most one batch and does not rescan; no row applied twice', async () => {
    await resetTable(client);
    // Every committed batch statement on the table, counted by a statement trigger, with the
    // synchronous_commit its transaction commits under.
    await client.query(`CREATE TABLE counter_statements (n serial PRIMARY KEY,
        commit_mode text NOT NULL DEFAULT current_setting('synchronous_commit'));
      CREATE FUNCTION count_counter_statement() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN INSERT INTO counter_statements DEFAULT VALUES; RETURN NULL; END$$;
      CREATE TRIGGER counter_statement AFTER UPDATE ON counter_rows
        FOR EACH STATEMENT EXECUTE FUNCTION count_counter_statement()`);
    const taskQueue = 'backfill-kill';
    const batchSize = 200;
    try {
      const handle = await env.client.workflow.start(backfill, {
        taskQueue,
        workflowId: 'backfill-kill',
        // 60 ms between batches: a 5-second chunk does at most 83 of the 100, so chunk 2 has a batch 3.
        args: [input({ batchSize, delayMs: 60 })],
      });
      const first = startWorkerProcess(taskQueue, { TEST_STOP_AT_BATCH: '2:3' });
      await printed(first, 'stopped after batch 3 of chunk 2');
      first.kill('SIGKILL');
      await new Promise((resolve) => first.once('exit', resolve));
      const committed = await doneRows();
      const second = startWorkerProcess(taskQueue);
      try {
        // The new worker answers at once; the lost chunk is retried after its heartbeat timeout.
        await printed(second, 'worker ready');
        const known = await handle.query<BackfillProgress>('progress');
        assert.ok(
          known.rowsDone > 0 && committed === known.rowsDone + 3 * batchSize,
          `killed after three batches the workflow has not heard of: ${committed} rows done, ${known.rowsDone} reported`,
        );
        const final = await handle.result();
        const batches = ROWS / batchSize + 1; // 100 full batches and the empty one that finds the end
        // Resumed after the last batch the killed attempt committed, with its totals: every row
        // scanned and changed once over the whole run (a retry that started the chunk again
        // would scan the killed attempt's rows again, and find nothing left to change in them).
        assert.deepEqual(
          [final.state, final.rowsDone, final.rowsScanned, final.batches],
          ['completed', ROWS, ROWS, batches],
        );
        const { rows } = await client.query<{ n: number; off: number }>(
          `SELECT count(*)::int AS n, count(*) FILTER (WHERE commit_mode = 'off')::int AS off FROM counter_statements`,
        );
        assert.ok(
          rows[0]!.n - batches <= 1,
          `batch statements committed: ${rows[0]!.n} for ${batches} batches (at most one re-run)`,
        );
        // Every batch committed without waiting for its WAL flush (safe: a lost batch stays pending).
        assert.equal(rows[0]!.off, rows[0]!.n, 'batches committed with synchronous_commit off');
      } finally {
        second.kill('SIGKILL');
      }
      assert.deepEqual(await compare(client), { different: 0, notOnce: 0 });
    } finally {
      await client.query(`DROP TABLE counter_statements; DROP FUNCTION count_counter_statement() CASCADE`);
    }
  });

  it('pauses, resumes, takes a new batch size while running, and ends equal to the single UPDATE with every row counted once on /metrics', async () => {
    await resetTable(client);
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'backfill-control',
      workflowBundle: await workflowBundle(),
      activities: createActivities({ ...instance.deps, backfills: { counter } }),
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    });
    const final = await worker.runUntil(async () => {
      // 100 rows then 100 ms asleep: a 5-second chunk does at most about 5,000 rows, so the pause
      // lands long before the end of the table.
      const handle = await env.client.workflow.start(backfill, {
        taskQueue: 'backfill-control',
        workflowId: 'backfill-control',
        args: [input({ batchSize: 100, delayMs: 100, chunksPerRun: 2 })],
      });
      await until(handle, 'first rows', (p) => p.rowsDone > 0);
      await handle.signal('pause');
      const paused = await until(handle, 'paused', (p) => p.state === 'paused');
      // Nothing moves while paused: no chunk is scheduled or running, and the table shows what was reported.
      assert.deepEqual((await handle.describe()).raw.pendingActivities ?? [], []);
      const { rows } = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM counter_rows WHERE done`,
      );
      assert.equal(rows[0]!.n, paused.rowsDone);
      assert.ok(paused.rowsDone < ROWS);

      assert.deepEqual(await handle.executeUpdate('configure', { args: [{ batchSize: 2000, delayMs: 0 }] }), {
        batchSize: 2000,
        delayMs: 0,
      });
      await assert.rejects(handle.executeUpdate('configure', { args: [{ batchSize: 0 }] }), (error: Error) =>
        /batchSize: 0 is not an integer from 1 to 100000/.test(
          (error.cause as Error | undefined)?.message ?? '',
        ),
      );
      const settings = await handle.query<BackfillProgress>('progress');
      assert.deepEqual([settings.state, settings.batchSize, settings.delayMs], ['paused', 2000, 0]);
      await handle.signal('resume');
      return handle.result();
    });
    assert.equal(final.state, 'completed');
    assert.equal(final.rowsDone, ROWS);
    assert.equal(final.batchSize, 2000);
    assert.ok(final.runs > 1, 'continued as new at least once');
    assert.equal(final.etaSeconds, 0);
    assert.deepEqual(await compare(client), { different: 0, notOnce: 0 });
    // The worker's Prometheus endpoint counted every row written, once.
    const scraped = await (await fetch(metricsUrl())).text();
    const counted = scraped
      .split('\n')
      .filter((line) => line.startsWith('dbops_backfill_rows_processed_total{'))
      .filter((line) => line.includes('taskQueue="backfill-control"'));
    assert.equal(counted.length, 1, scraped);
    assert.match(counted[0]!, /table="public\.counter_rows"/);
    assert.equal(Number(counted[0]!.split(' ').pop()), ROWS);
  });

  it('waits while more sessions are active than allowed, naming the indicator and its reading, then goes on', async () => {
    await resetTable(client);
    // Two sessions stay active (waiting on a lock this test holds) until the test lets them go.
    await client.query('SELECT pg_advisory_lock(42)');
    const busy = await Promise.all([instance.connect(), instance.connect()]);
    const waiting = busy.map((session) => session.query('SELECT pg_advisory_lock_shared(42)'));
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'backfill-throttle',
      workflowBundle: await workflowBundle(),
      activities: createActivities({ ...instance.deps, backfills: { counter } }),
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    });
    const final = await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(backfill, {
        taskQueue: 'backfill-throttle',
        workflowId: 'backfill-throttle',
        args: [input({ maxActiveConnections: 1, waitForAutovacuum: true, throttleWait: '1 second' })],
      });
      const throttled = await until(handle, 'throttled', (p) => p.state === 'throttled');
      assert.equal(throttled.throttleReason, 'active sessions 2 > 1');
      assert.equal(throttled.rowsDone, 0);
      // Every indicator read, by name, with its threshold (the WAL rate needs a second look first).
      assert.deepEqual(
        throttled.health.map((r) => [r.indicator, r.threshold, r.over]),
        [
          ['replica lag', 10, false],
          ['active sessions', 1, true],
          ['autovacuum on the table', 0, false],
          ['WAL archive backlog', 1024, false],
        ],
      );
      // What `dbops status` prints for it.
      assert.match(backfillProgressLine(throttled), / {2}throttled \(active sessions 2 > 1\)$/);
      await client.query('SELECT pg_advisory_unlock(42)');
      await Promise.all(waiting);
      return handle.result();
    });
    assert.equal(final.state, 'completed');
    assert.deepEqual(await compare(client), { different: 0, notOnce: 0 });
  });

  it('self-tuned (no batch size given): a batch over its statement timeout is rolled back and retried at half the size, which shows in progress; then the size grows back toward the target and every row is done once', async () => {
    await resetTable(client);
    // While counter_slow says so, every batch statement takes 1.5 s: over the 1 s statement
    // timeout of batches that aim at 50 ms.
    await client.query(`CREATE TABLE counter_slow AS SELECT true AS slow;
      CREATE FUNCTION slow_statement() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN IF (SELECT slow FROM counter_slow) THEN PERFORM pg_sleep(1.5); END IF; RETURN NULL; END$$;
      CREATE TRIGGER slow_statement BEFORE UPDATE ON counter_rows
        FOR EACH STATEMENT EXECUTE FUNCTION slow_statement()`);
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'backfill-tuned',
      workflowBundle: await workflowBundle(),
      activities: createActivities({ ...instance.deps, backfills: { counter } }),
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    });
    try {
      const final = await worker.runUntil(async () => {
        const handle = await env.client.workflow.start(backfill, {
          taskQueue: 'backfill-tuned',
          workflowId: 'backfill-tuned',
          args: [
            // One target and no pause, whatever this suite's own session does meanwhile.
            {
              instanceId: instance.instanceId,
              name: 'counter',
              params: { factor: 3 },
              targetBatchMs: 50,
              contendedTargetBatchMs: 50,
              contendedPauseFactor: 0,
            },
          ],
        });
        const shrunk = await until(handle, 'a batch timed out', (p) => p.batchTimeouts >= 1);
        await client.query('UPDATE counter_slow SET slow = false');
        assert.deepEqual(
          [shrunk.batchSizeMode, shrunk.targetBatchMs, shrunk.rowsDone, shrunk.lastTimeout],
          ['auto', 50, 0, `statement timeout (1000 ms) at ${shrunk.batchSize * 2} rows`],
        );
        // 1000 to start, halved at every timeout.
        assert.equal(shrunk.batchSize, Math.max(1000 / 2 ** shrunk.batchTimeouts, 100));
        const line = backfillProgressLine(shrunk);
        assert.match(
          line,
          // Two side by side (×2) while this suite's own session is quiet.
          new RegExp(`batch ${shrunk.batchSize}( ×2)? \\(auto, 50 ms, ${shrunk.batchTimeouts} timed out\\)`),
        );
        return { shrunk, final: await handle.result() };
      });
      assert.equal(final.final.state, 'completed');
      assert.ok(
        final.final.batchSize > final.shrunk.batchSize,
        `grew back from ${final.shrunk.batchSize} to ${final.final.batchSize}`,
      );
      assert.deepEqual(await compare(client), { different: 0, notOnce: 0 });
    } finally {
      await client.query('DROP TABLE counter_slow; DROP FUNCTION slow_statement() CASCADE');
    }
  });

  it('cancel stops after the current chunk; what was done stays done', async () => {
    await resetTable(client);
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'backfill-cancel',
      workflowBundle: await workflowBundle(),
      activities: createActivities({ ...instance.deps, backfills: { counter } }),
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    });
    const final = await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(backfill, {
        taskQueue: 'backfill-cancel',
        workflowId: 'backfill-cancel',
        args: [input({ batchSize: 100, delayMs: 50 })],
      });
      await until(handle, 'first rows', (p) => p.rowsDone > 0);
      await handle.signal('cancel');
      return handle.result();
    });
    assert.equal(final.state, 'cancelled');
    assert.ok(final.rowsDone > 0 && final.rowsDone < ROWS);
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM counter_rows WHERE done`,
    );
    assert.equal(rows[0]!.n, final.rowsDone);
  });

  it('an update sent right after the start, while the first activity still runs, is accepted and applied', async () => {
    await resetTable(client);
    const activities = createActivities({ ...instance.deps, backfills: { counter } });
    // The first activity waits until the test has had its answer.
    let describing!: () => void;
    const describeStarted = new Promise<void>((resolve) => (describing = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const held: Activities = {
      ...activities,
      describeBackfill: async (target) => {
        describing();
        await released;
        return activities.describeBackfill(target);
      },
    };
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'backfill-early-update',
      workflowBundle: await workflowBundle(),
      activities: held,
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    });
    const final = await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(backfill, {
        taskQueue: 'backfill-early-update',
        workflowId: 'backfill-early-update',
        args: [input({ batchSize: 500 })],
      });
      await describeStarted;
      try {
        const answer = await handle.executeUpdate('configure', { args: [{ batchSize: 4000 }] });
        assert.deepEqual(answer, { batchSize: 4000, delayMs: 0 });
        const early = await handle.query<BackfillProgress>('progress');
        assert.deepEqual([early.state, early.batchSize, early.rowsDone], ['running', 4000, 0]);
      } finally {
        release();
      }
      return handle.result();
    });
    // 5 full batches of 4000 and the empty one that found the end.
    assert.deepEqual(
      [final.state, final.batchSize, final.rowsDone, final.batches],
      ['completed', 4000, ROWS, 6],
    );
    assert.deepEqual(await compare(client), { different: 0, notOnce: 0 });
  });

  it('cancelled through Temporal while a batch waits on a lock: the batch statement is cancelled at once, its rows stay pending, the progress is exact', async () => {
    await resetTable(client);
    // A row in the middle of the table is locked, so the batch that reaches it waits.
    const locker = await instance.connect();
    await locker.query('BEGIN');
    await locker.query('SELECT 1 FROM counter_rows WHERE id = $1 FOR UPDATE', [3 * (ROWS / 2)]);
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'backfill-temporal-cancel',
      workflowBundle: await workflowBundle(),
      activities: createActivities({ ...instance.deps, backfills: { counter } }),
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    });
    try {
      await worker.runUntil(async () => {
        const handle = await env.client.workflow.start(backfill, {
          taskQueue: 'backfill-temporal-cancel',
          workflowId: 'backfill-temporal-cancel',
          args: [input({ batchSize: 500 })],
        });
        await blockedBatch();
        const cancelledAt = Date.now();
        await handle.cancel();
        await assert.rejects(
          handle.result(),
          (error: Error) => error instanceof WorkflowFailedError && error.cause instanceof CancelledFailure,
        );
        const waitedMs = Date.now() - cancelledAt;
        // Ended by the cancel, not by the 20 s batch statement timeout.
        assert.ok(waitedMs < 15_000, `the run took ${waitedMs} ms to end after the cancel`);
        const { rows: waiting } = await client.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'dbops' AND wait_event_type = 'Lock'`,
        );
        assert.equal(waiting[0]!.n, 0, 'no batch still waiting');
        // The chunk ended as cancelled (its batch rolled back) before the run reported its cancellation.
        const events = (await handle.fetchHistory()).events ?? [];
        const cancelledChunk = events.findIndex((e) => e.activityTaskCanceledEventAttributes != null);
        const runCancelled = events.findIndex((e) => e.workflowExecutionCanceledEventAttributes != null);
        assert.ok(cancelledChunk > 0 && cancelledChunk < runCancelled, 'chunk cancelled, then the run');
        const progress = await handle.query<BackfillProgress>('progress');
        assert.equal(progress.state, 'cancelled');
        assert.equal(progress.rowsDone, await doneRows(), 'the progress counts every committed batch');
        assert.ok(progress.rowsDone < ROWS / 2, String(progress.rowsDone));
        const { rows: beyond } = await client.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM counter_rows WHERE id > $1 AND done`,
          [progress.lastKey],
        );
        assert.equal(beyond[0]!.n, 0, 'nothing done after the last key the progress reports');
      });
    } finally {
      await locker.query('ROLLBACK');
    }
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM counter_rows WHERE id >= $1 AND done`,
      [3 * (ROWS / 2)],
    );
    assert.equal(rows[0]!.n, 0, 'the cancelled batch left its rows pending');
    const { notOnce } = await compare(client);
    assert.equal(notOnce, ROWS - (await doneRows()), 'no row changed twice');
  });

  it('a long delay between batches is a workflow timer: one batch per chunk, and a new delay ends the wait at once', async () => {
    await resetTable(client);
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'backfill-long-delay',
      workflowBundle: await workflowBundle(),
      activities: createActivities({ ...instance.deps, backfills: { counter } }),
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    });
    const { final, history } = await worker.runUntil(async () => {
      // Ten minutes after every batch: the run could not end within the test's time otherwise.
      const handle = await env.client.workflow.start(backfill, {
        taskQueue: 'backfill-long-delay',
        workflowId: 'backfill-long-delay',
        args: [input({ batchSize: 5000, delayMs: 600_000 })],
      });
      const waiting = await until(handle, 'first batch', (p) => p.batches >= 1);
      assert.equal(waiting.rowsDone, 5000, 'one batch, then the pause');
      assert.deepEqual(await handle.executeUpdate('configure', { args: [{ delayMs: 1000 }] }), {
        batchSize: 5000,
        delayMs: 1000,
      });
      return { final: await handle.result(), history: await handle.fetchHistory() };
    });
    assert.deepEqual([final.state, final.rowsDone, final.batches], ['completed', ROWS, 5]);
    const events = history.events ?? [];
    const chunks = events.filter(
      (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'runBackfillChunk',
    );
    const timers = events.flatMap((e) => {
      const seconds = e.timerStartedEventAttributes?.startToFireTimeout?.seconds;
      return seconds == null ? [] : [Number(String(seconds))];
    });
    const cancelledTimers = events.filter((e) => e.timerCanceledEventAttributes != null);
    // A chunk per batch; the ten-minute timer after the first was cut short by the new delay,
    // and one-second timers followed (none after the last batch).
    assert.equal(chunks.length, 5);
    assert.equal(timers[0], 600);
    assert.ok(timers.length >= 4 && timers.slice(1).every((s) => s <= 1), String(timers));
    assert.equal(cancelledTimers.length, 1);
    assert.deepEqual(await compare(client), { different: 0, notOnce: 0 });
  });

  it('bad parameters, unknown names and bad settings fail at start naming the field and rule; no row changes', async () => {
    await resetTable(client);
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'backfill-bad',
      workflowBundle: await workflowBundle(),
      activities: createActivities({ ...instance.deps, backfills: { counter } }),
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    });
    const failure = async (id: string, extra: object): Promise<string> => {
      try {
        await env.client.workflow.execute(backfill, {
          taskQueue: 'backfill-bad',
          workflowId: id,
          args: [input(extra)],
        });
      } catch (error) {
        assert.ok(error instanceof WorkflowFailedError);
        let cause: Error | undefined = error.cause;
        while (cause?.cause instanceof Error) cause = cause.cause;
        return cause?.message ?? '';
      }
      return assert.fail(`${id} started`);
    };
    const messages = await worker.runUntil(async () => [
      await failure('bad-factor', { params: { factor: 11 } }),
      await failure('bad-key', { params: { factor: 2, sql: 'DROP TABLE x' } }),
      await failure('bad-name', { name: 'nope' }),
      await failure('bad-batch', { batchSize: -1 }),
      await failure('bad-streams', { streams: 3 }),
      await failure('bad-pause', { contendedPauseFactor: 11 }),
      await failure('bad-instance', { instanceId: 'Not_An_Id' }),
    ]);
    assert.deepEqual(messages.slice(0, 6), [
      'params.factor of backfill counter: 11 is not an integer from 2 to 10',
      'params of backfill counter: unknown sql; expected only factor',
      'name: no backfill named "nope"; known: counter',
      'batchSize: -1 is not an integer from 1 to 100000',
      'streams: 3 is not 1 or 2',
      'contendedPauseFactor: 11 is not a number from 0 to 10',
    ]);
    assert.match(messages[6]!, /^instanceId: "Not_An_Id" is not /);
    assert.deepEqual(await compare(client), { different: ROWS, notOnce: ROWS });
  });

  async function doneRows(): Promise<number> {
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM counter_rows WHERE done`,
    );
    return rows[0]!.n;
  }

  /** Until a backfill batch is waiting on a row lock. */
  async function blockedBatch(): Promise<void> {
    for (let i = 0; i < 1200; i++) {
      const { rows } = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE application_name = 'dbops' AND wait_event_type = 'Lock' AND query LIKE 'WITH batch AS%'`,
      );
      if (rows[0]!.n > 0) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.fail('no batch ever waited on the lock');
  }

  /** `extra`: more environment, e.g. TEST_STOP_AT_BATCH (see the fixture). */
  function startWorkerProcess(taskQueue: string, extra: Record<string, string> = {}): ChildProcess {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(__dirname, '..', 'fixtures', 'worker-process.ts')],
      {
        env: {
          ...process.env,
          TEST_STATE_DIR: instance.stateDir,
          TEST_ENDPOINT: JSON.stringify(instance.endpoint),
          TEST_TEMPORAL_ADDRESS: env.address,
          TEST_TASK_QUEUE: taskQueue,
          ...extra,
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    child.stdout.resume();
    return child;
  }

  /** Until the worker prints `line`; fails if it exits first. */
  function printed(child: ChildProcess, line: string): Promise<void> {
    return new Promise((resolve, reject) => {
      let seen = '';
      const onData = (chunk: Buffer) => {
        seen += chunk.toString();
        if (seen.split('\n').includes(line)) {
          child.stdout!.off('data', onData);
          child.off('exit', onExit);
          resolve();
        }
      };
      const onExit = (code: number | null) => reject(new Error(`worker exited ${code} before "${line}"`));
      child.stdout!.on('data', onData);
      child.once('exit', onExit);
    });
  }
});

describe('backfill workflow replays runs recorded by earlier code', () => {
  it('a run whose long delay slept inside the chunk (before delays became timers) replays without a non-determinism error', async () => {
    const file = path.join(__dirname, '..', 'fixtures', 'histories', 'backfill', 'delay-in-chunk.binpb');
    const history = temporal.api.history.v1.History.decode(await readFile(file));
    const chunks = (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes != null);
    assert.ok(chunks.length >= 3, 'the recording has a pause between two chunks');
    await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history, 'backfill-delay');
  });
});
