/**
 * Batched backfills: keyset pagination on the key, one short transaction (one statement) per
 * batch, only rows still pending are updated. An activity runs batches for a bounded time (a
 * "chunk") and returns, so the workflow applies new settings, pauses, stops or sleeps between
 * chunks. It heartbeats on a timer, also while a batch runs, and a cancelled chunk cancels its
 * running batch (rolled back: its rows stay pending).
 *
 * The checkpoint of a chunk is written by the batch statement itself, in the same transaction,
 * to `dbops.backfill_checkpoints` (one row per backfill workflow). A retry of the chunk (lost
 * worker, lost reply, dropped connection) reads it back and resumes exactly after the last
 * committed batch. Heartbeat details could not do that: the SDK sends them at most every 80% of
 * the heartbeat timeout, so the recorded ones may be many batches behind.
 *
 * A chunk may tune its batch size to a target duration (batch-size.ts): a batch cut short by its
 * statement or lock timeout is rolled back and the chunk ends with the size halved. While other
 * sessions are busy, it aims at a shorter target and pauses after each batch (by default twice as
 * long as the batch took), so the application keeps most of the machine. Between batches it reads
 * the database's health indicators (throttle/) and ends early, naming the one over its threshold,
 * so the workflow waits.
 *
 * While no other session is busy, a self-tuned chunk may run two batches side by side on two
 * sessions (`streams`): the next batch, and the one after it. The second commits only after the
 * first has, in a transaction that also moves the checkpoint past both, so the checkpoint still
 * means "every key up to here is done" and a retry resumes exactly. One batch walks keys at about
 * 0.8 of a single UPDATE's speed; two at once pass it, using the second core a quiet database has.
 */
import { ApplicationFailure, CancelledFailure, Context, metricMeter } from '@temporalio/activity';
import type { Client } from 'pg';

import { DbopsError, InvalidInputError } from '../../workflows/lib/errors';
import { recordBackfillRows } from '../../workflows/lib/metrics';
import { backendCanceller, heartbeatWhile } from '../heartbeat';
import type { AnyBackfill } from './backfills/definition';
import {
  contendedPauseMs,
  nextBatchSize,
  shrunkBatchSize,
  targetNow,
  tunedTimeouts,
  type BatchTuning,
} from './batch-size';
import type { WithInstance } from './instance';
import { readHealth } from './throttle';
import { readBusySessions } from './throttle/busy-sessions';
import type { Reading, ThrottleLimits } from './throttle/indicator';

export type { BatchTuning } from './batch-size';
export type { Reading, ThrottleLimits } from './throttle/indicator';

export interface BackfillTarget {
  instanceId: string;
  name: string;
  params?: unknown;
}

export interface BackfillDescription {
  name: string;
  description: string;
  table: string;
  key: string;
  /** From the planner's statistics (exact count when the table was never analyzed). */
  estimatedRows: number;
}

export interface ChunkInput extends BackfillTarget {
  /** Last key done (as text: keys are bigint), null to start at the beginning. */
  lastKey: string | null;
  /** Rows per batch; with `tuning`, the size of the first batch. */
  batchSize: number;
  /** Set: the batch size adapts to a target batch duration, and a batch that times out is retried smaller. */
  tuning?: BatchTuning;
  /** Pause between two batches of the chunk (longer pauses are the workflow's timers). */
  delayMs: number;
  /** Return after about this long (at least one batch), so the workflow can apply new settings. */
  chunkMs: number;
  throttle: ThrottleLimits;
  /** Upper bound for one batch statement; the heartbeat timeout is set above it. */
  batchTimeoutMs: number;
  /**
   * Sessions that may run batches at once: 2 lets a self-tuned chunk without a delay run two side
   * by side while no other session is busy. Absent: 1.
   */
  streams?: number;
}

/** What a chunk's checkpoint records: where it stands and its totals. */
export interface ChunkTotals {
  lastKey: string | null;
  /** No row left after lastKey. */
  done: boolean;
  batches: number;
  rowsScanned: number;
  rowsChanged: number;
  /** Time spent on batches and the delays between them (not throttled or paused), for rows/s and ETA. */
  busyMs: number;
}

export interface ChunkResult extends ChunkTotals {
  /** Set when the chunk stopped early because the database is under pressure: the indicator and its reading. */
  throttled: string | undefined;
  /** The batch size the chunk ended with (the tuned one, or the input's). */
  batchSize: number;
  /** How long the last batch took, in ms (undefined when the chunk ran none). */
  lastBatchMs: number | undefined;
  /** Batches cut short by their statement or lock timeout (rolled back, retried smaller). */
  timeouts: number;
  /** The last such timeout, e.g. `statement timeout (2000 ms) at 4000 rows`. */
  lastTimeout: string | undefined;
  /** The health indicators as last read. */
  health: Reading[];
  /** Other sessions busy at the last reading (self-tuned chunks only), and the target batches then aimed at. */
  busySessions?: number;
  aimedMs?: number;
  /** Batches the last step ran side by side: 1, or 2 (see `streams`). */
  streams?: number;
}

/**
 * The health indicators are read when a chunk starts and then before a batch at most this often:
 * often enough to stop within a second of pressure, rarely enough to cost nothing next to batches.
 */
const HEALTH_EVERY_MS = 1_000;

/** Where a chunk's checkpoint is kept, in the database it changes. */
export const CHECKPOINT_TABLE = 'dbops.backfill_checkpoints';

/** The chunk a checkpoint belongs to: one activity of one workflow run, whatever its attempt. */
export interface ChunkOwner {
  workflowId: string;
  /** `<run id>/<activity id>`. */
  chunk: string;
}

/**
 * A batch as SQL text; the definition's parameters are $1..$n, then last key and batch size, then
 * the chunk's owner and its totals before this batch. The batch is the next `limit` keys after the
 * last one; the update walks that key range in index order (cheaper than probing each key) and
 * touches only rows still pending. The same statement, so the same transaction, records the
 * chunk's new totals in the checkpoint table.
 */
export function batchStatement(
  backfill: AnyBackfill,
  paramCount: number,
  set: string,
  pending: string,
): string {
  const p = (i: number) => `$${paramCount + i}`;
  const last = `${p(1)}::bigint`;
  const limit = `${p(2)}::int`;
  // set_config(..., true) is SET LOCAL as a function: the batch's own transaction commits without
  // waiting for its WAL to reach disk. Safe: a batch lost in a crash before that flush loses its
  // rows' changes and its checkpoint together, so those rows are still pending and the retried
  // chunk does them again. Inside the statement, it costs no round trip of its own.
  return `WITH batch AS (
  SELECT min(key) AS first_key, max(key) AS last_key, count(*)::int AS scanned,
         set_config('synchronous_commit', 'off', true) AS commit_mode FROM (
    SELECT ${backfill.key} AS key FROM ${backfill.table}
     WHERE ${last} IS NULL OR ${backfill.key} > ${last}
     ORDER BY ${backfill.key} LIMIT ${limit}
  ) keys
), changed AS (
  UPDATE ${backfill.table} AS t SET ${set}
   WHERE t.${backfill.key} BETWEEN (SELECT first_key FROM batch) AND (SELECT last_key FROM batch)
     AND (${pending})
  RETURNING 1
), counted AS (
  SELECT COALESCE((SELECT last_key FROM batch), ${last})::text AS last_key,
         (SELECT scanned FROM batch) AS scanned,
         (SELECT count(*) FROM changed)::int AS changed
), saved AS (
  INSERT INTO ${CHECKPOINT_TABLE} AS c
         (workflow_id, chunk, last_key, batches, rows_scanned, rows_changed, busy_ms, done, updated_at)
  SELECT ${p(3)}::text, ${p(4)}::text, last_key, ${p(5)}::int + 1, ${p(6)}::bigint + scanned,
         ${p(7)}::bigint + changed,
         ${p(8)}::float8 + 1000 * extract(epoch FROM clock_timestamp() - statement_timestamp())::float8,
         scanned < ${limit}, now()
    FROM counted
  ON CONFLICT (workflow_id) DO UPDATE
     SET chunk = excluded.chunk, last_key = excluded.last_key, batches = excluded.batches,
         rows_scanned = excluded.rows_scanned, rows_changed = excluded.rows_changed,
         busy_ms = excluded.busy_ms, done = excluded.done, updated_at = excluded.updated_at
)
SELECT last_key, scanned, changed FROM counted`;
}

export interface BatchResult {
  lastKey: string | null;
  scanned: number;
  changed: number;
}

/**
 * One batch after `totals.lastKey`: its own transaction, only pending rows updated, and the
 * chunk's totals after it saved as `owner`'s checkpoint in the same transaction.
 */
export async function runBatch(
  client: Client,
  backfill: AnyBackfill,
  params: unknown,
  batchSize: number,
  owner: ChunkOwner,
  totals: ChunkTotals,
): Promise<BatchResult> {
  const sql = backfill.prepare(params);
  const { rows } = await client.query<{ last_key: string | null; scanned: number; changed: number }>(
    batchStatement(backfill, sql.values.length, sql.set, sql.pending),
    [
      ...sql.values,
      totals.lastKey,
      batchSize,
      owner.workflowId,
      owner.chunk,
      totals.batches,
      totals.rowsScanned,
      totals.rowsChanged,
      totals.busyMs,
    ],
  );
  const row = rows[0]!;
  return { lastKey: row.last_key, scanned: row.scanned, changed: row.changed };
}

/**
 * The batch after the next one, for a second session running beside the first: the `limit` keys
 * that follow the next `limit`, as the same walk in index order over only pending rows. It returns
 * the key it starts after (the end it expects the first batch to reach) and leaves the checkpoint
 * to its caller, who commits it only once the first batch has committed up to exactly that key.
 */
function followingBatchStatement(
  backfill: AnyBackfill,
  paramCount: number,
  set: string,
  pending: string,
): string {
  const p = (i: number) => `$${paramCount + i}`;
  const last = `${p(1)}::bigint`;
  const limit = `${p(2)}::int`;
  return `WITH batch AS (
  SELECT min(key) AS after_key, max(key) AS last_key, greatest(count(*)::int - 1, 0) AS scanned,
         set_config('synchronous_commit', 'off', true) AS commit_mode FROM (
    SELECT ${backfill.key} AS key FROM ${backfill.table}
     WHERE ${last} IS NULL OR ${backfill.key} > ${last}
     ORDER BY ${backfill.key} OFFSET (${limit} - 1) LIMIT (${limit} + 1)
  ) keys
), changed AS (
  UPDATE ${backfill.table} AS t SET ${set}
   WHERE t.${backfill.key} > (SELECT after_key FROM batch) AND t.${backfill.key} <= (SELECT last_key FROM batch)
     AND (${pending})
  RETURNING 1
)
SELECT after_key::text, last_key::text, scanned, (SELECT count(*) FROM changed)::int AS changed FROM batch`;
}

/** Two batches side by side; `second` is undefined when it was rolled back, `failure` says why if it failed. */
interface PairResult {
  first: BatchResult;
  second: BatchResult | undefined;
  failure?: Error;
}

/**
 * The next batch on `first` (as runBatch) and the one after it on `second`, at the same time. The
 * second's transaction waits for the first to commit, then moves the checkpoint past both and
 * commits; it rolls back (its rows stay pending) if the first failed, if the first ended elsewhere
 * than where the second began (rows inserted or deleted meanwhile shift the walk), or if it failed
 * itself. Throws only the first batch's failure.
 */
async function runPair(
  first: Client,
  second: Client,
  backfill: AnyBackfill,
  params: unknown,
  batchSize: number,
  owner: ChunkOwner,
  totals: ChunkTotals,
  started: number,
): Promise<PairResult> {
  const sql = backfill.prepare(params);
  const following = (async () => {
    await second.query('BEGIN');
    const { rows } = await second.query<{
      after_key: string | null;
      last_key: string | null;
      scanned: number;
      changed: number;
    }>(followingBatchStatement(backfill, sql.values.length, sql.set, sql.pending), [
      ...sql.values,
      totals.lastKey,
      batchSize,
    ]);
    return rows[0]!;
  })();
  const [next, after] = await Promise.allSettled([
    runBatch(first, backfill, params, batchSize, owner, totals),
    following,
  ]);
  const rollback = () => second.query('ROLLBACK');
  if (next.status === 'rejected') {
    await rollback();
    throw next.reason;
  }
  if (after.status === 'rejected') {
    await rollback();
    return { first: next.value, second: undefined, failure: after.reason as Error };
  }
  const a = next.value;
  const b = after.value;
  if (b.scanned === 0 || b.after_key !== a.lastKey) {
    await rollback();
    return { first: a, second: undefined };
  }
  const saved = await second.query(
    `UPDATE ${CHECKPOINT_TABLE}
        SET last_key = $3, batches = $4, rows_scanned = $5, rows_changed = $6, busy_ms = $7, done = $8,
            updated_at = now()
      WHERE workflow_id = $1 AND chunk = $2 AND last_key = $9`,
    [
      owner.workflowId,
      owner.chunk,
      b.last_key,
      totals.batches + 2,
      totals.rowsScanned + a.scanned + b.scanned,
      totals.rowsChanged + a.changed + b.changed,
      totals.busyMs + (performance.now() - started),
      b.scanned < batchSize,
      b.after_key,
    ],
  );
  if (saved.rowCount !== 1) {
    await rollback();
    return { first: a, second: undefined };
  }
  await second.query('COMMIT');
  return { first: a, second: { lastKey: b.last_key, scanned: b.scanned, changed: b.changed } };
}

/**
 * One step of a chunk: the next batch, or with `second` the next two side by side (runPair). What
 * committed is added to `totals`; returns the failure of a batch that did not commit, if any.
 */
async function runStep(
  first: Client,
  second: Client | undefined,
  backfill: AnyBackfill,
  params: unknown,
  owner: ChunkOwner,
  totals: ChunkResult,
  started: number,
): Promise<Error | undefined> {
  const size = totals.batchSize;
  totals.streams = second === undefined ? 1 : 2;
  let ran: PairResult;
  try {
    ran =
      second === undefined
        ? { first: await runBatch(first, backfill, params, size, owner, totals), second: undefined }
        : await runPair(first, second, backfill, params, size, owner, totals, started);
  } catch (error) {
    return error as Error;
  }
  for (const batch of [ran.first, ran.second]) {
    if (batch === undefined) continue;
    totals.batches += 1;
    totals.rowsScanned += batch.scanned;
    totals.rowsChanged += batch.changed;
    totals.lastKey = batch.lastKey;
    totals.done = batch.scanned < size;
    recordBackfillRows(metricMeter, backfill.table, batch.changed);
  }
  return ran.failure;
}

/**
 * Creates the checkpoint table on first use. Concurrent first backfills queue on a transaction
 * lock (released at commit) instead of racing on the catalog.
 */
export async function ensureCheckpointTable(client: Client): Promise<void> {
  const { rows } = await client.query<{ ok: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS ok`, [
    CHECKPOINT_TABLE,
  ]);
  if (rows[0]!.ok) return;
  // Several statements in one simple query run as one implicit transaction.
  await client.query(`SELECT pg_advisory_xact_lock(hashtext('${CHECKPOINT_TABLE}'));
CREATE SCHEMA IF NOT EXISTS dbops;
CREATE TABLE IF NOT EXISTS ${CHECKPOINT_TABLE} (
  workflow_id text PRIMARY KEY,
  chunk text NOT NULL,
  last_key text,
  batches int NOT NULL,
  rows_scanned bigint NOT NULL,
  rows_changed bigint NOT NULL,
  busy_ms float8 NOT NULL,
  done boolean NOT NULL,
  updated_at timestamptz NOT NULL
);
COMMENT ON TABLE ${CHECKPOINT_TABLE} IS 'dbops backfill: the last committed batch of each backfill workflow''s latest chunk, so a retried chunk resumes exactly there'`);
}

/** Suffix of the workflow id in the advisory lock a chunk's second session holds. */
const SECOND_SESSION = '/second';

/**
 * Marks `client` as the chunk's second session: a retry of the chunk waits for it to be gone, as
 * for the first (claimChunk), before reading the checkpoint.
 */
async function claimSecondSession(client: Client, owner: ChunkOwner): Promise<void> {
  await client.query(
    `SELECT pg_advisory_lock(hashtext('${CHECKPOINT_TABLE}'), hashtext($1 || '${SECOND_SESSION}'))`,
    [owner.workflowId],
  );
}

/**
 * Where the chunk stands: its own checkpoint when an earlier attempt of it committed batches,
 * else a fresh start at `lastKey`. First waits (bounded by the session's statement timeout) for
 * any session still working for this workflow, e.g. the batch of a killed worker that the server
 * has not noticed is gone; the lock goes with this session.
 */
export async function claimChunk(
  client: Client,
  owner: ChunkOwner,
  lastKey: string | null,
): Promise<ChunkTotals> {
  await client.query(`SELECT pg_advisory_lock(hashtext('${CHECKPOINT_TABLE}'), hashtext($1))`, [
    owner.workflowId,
  ]);
  // And for the second session of a lost attempt that ran batches side by side.
  await claimSecondSession(client, owner);
  await client.query(
    `SELECT pg_advisory_unlock(hashtext('${CHECKPOINT_TABLE}'), hashtext($1 || '${SECOND_SESSION}'))`,
    [owner.workflowId],
  );
  const { rows } = await client.query<{
    last_key: string | null;
    batches: number;
    rows_scanned: string;
    rows_changed: string;
    busy_ms: number;
    done: boolean;
  }>(
    `SELECT last_key, batches, rows_scanned, rows_changed, busy_ms, done
       FROM ${CHECKPOINT_TABLE} WHERE workflow_id = $1 AND chunk = $2`,
    [owner.workflowId, owner.chunk],
  );
  const saved = rows[0];
  if (saved === undefined) {
    return { lastKey, done: false, batches: 0, rowsScanned: 0, rowsChanged: 0, busyMs: 0 };
  }
  return {
    lastKey: saved.last_key,
    done: saved.done,
    batches: saved.batches,
    rowsScanned: Number(saved.rows_scanned),
    rowsChanged: Number(saved.rows_changed),
    busyMs: saved.busy_ms,
  };
}

export interface BackfillDeps {
  backfills: Record<string, AnyBackfill>;
  withInstance: WithInstance;
}

export function createBackfillActivities(deps: BackfillDeps) {
  const lookup = (name: string, params: unknown): AnyBackfill => {
    const backfill = deps.backfills[name];
    if (backfill === undefined) {
      throw ApplicationFailure.nonRetryable(
        `name: no backfill named ${JSON.stringify(name)}; known: ${Object.keys(deps.backfills).join(', ')}`,
        InvalidInputError.name,
      );
    }
    try {
      backfill.prepare(params);
    } catch (error) {
      if (error instanceof DbopsError) throw ApplicationFailure.nonRetryable(error.message, error.name);
      throw error;
    }
    return backfill;
  };

  return {
    /** Checks the name and parameters, and estimates the rows to walk. */
    async describeBackfill(target: BackfillTarget): Promise<BackfillDescription> {
      const backfill = lookup(target.name, target.params);
      const estimatedRows = await deps.withInstance(target.instanceId, async (client) => {
        const { rows } = await client.query<{ estimate: number }>(
          `SELECT reltuples::float8 AS estimate FROM pg_class WHERE oid = to_regclass($1)`,
          [backfill.table],
        );
        const estimate = rows[0]?.estimate;
        if (estimate === undefined) {
          throw ApplicationFailure.nonRetryable(
            `table ${backfill.table} does not exist`,
            InvalidInputError.name,
          );
        }
        if (estimate >= 0) return Math.round(estimate);
        const count = await client.query<{ n: number }>(
          `SELECT count(*)::float8 AS n FROM ${backfill.table}`,
        );
        return count.rows[0]!.n;
      });
      const { name, description, table, key } = backfill;
      return { name, description, table, key, estimatedRows };
    },

    /**
     * Runs batches for about `chunkMs` (at least one), each one checkpointed in its own
     * transaction; a retry of this chunk resumes after the last committed batch. Cancelled, it
     * cancels the running batch and fails as cancelled with the committed totals as details.
     */
    async runBackfillChunk(input: ChunkInput): Promise<ChunkResult> {
      const backfill = lookup(input.name, input.params);
      const context = Context.current();
      const { workflowExecution, activityId } = context.info;
      if (workflowExecution === undefined) {
        throw ApplicationFailure.nonRetryable(
          'runBackfillChunk runs in a backfill workflow only',
          InvalidInputError.name,
        );
      }
      const owner: ChunkOwner = {
        workflowId: workflowExecution.workflowId,
        chunk: `${workflowExecution.runId}/${activityId}`,
      };
      let result: ChunkResult | undefined;
      const connect = (fn: (other: Client) => Promise<unknown>) => deps.withInstance(input.instanceId, fn);
      const { tuning } = input;
      const limits = tuning === undefined ? undefined : tunedTimeouts(tuning, input.batchTimeoutMs);
      /** A second session for batches side by side: self-tuned chunks without a delay only. */
      const sideBySide = (input.streams ?? 1) >= 2 && tuning !== undefined && input.delayMs === 0;
      const withSecond = <T>(fn: (second: Client | undefined) => Promise<T>): Promise<T> =>
        sideBySide
          ? deps.withInstance(input.instanceId, async (second) => {
              await limitSession(second, input.batchTimeoutMs);
              return fn(second);
            })
          : fn(undefined);
      try {
        await deps.withInstance(input.instanceId, (client) =>
          withSecond(async (second) => {
            await limitSession(client, input.batchTimeoutMs);
            const cancelFirst = await backendCanceller(client, connect);
            const cancelSecond = second === undefined ? undefined : await backendCanceller(second, connect);
            const onCancel = () => Promise.all([cancelFirst(), cancelSecond?.()]);
            const memory = new Map<string, unknown>();
            await heartbeatWhile(
              async (signal) => {
                await ensureCheckpointTable(client);
                const totals: ChunkResult = {
                  ...(await claimChunk(client, owner, input.lastKey)),
                  throttled: undefined,
                  batchSize: input.batchSize,
                  lastBatchMs: undefined,
                  timeouts: 0,
                  lastTimeout: undefined,
                  health: [],
                };
                result = totals;
                if (second !== undefined) await claimSecondSession(second, owner);
                // Tuned batches are short: one far over its target is cut short and retried smaller
                // (set after the claim, which may wait up to the batch timeout for a lost attempt).
                for (const session of [client, second]) {
                  if (limits !== undefined && session !== undefined) {
                    await limitSession(session, limits.statementMs, limits.lockMs);
                  }
                }
                const started = Date.now();
                let healthReadAt = Number.NEGATIVE_INFINITY;
                while (!totals.done && !signal.aborted) {
                  if (performance.now() - healthReadAt >= HEALTH_EVERY_MS) {
                    const health = await readHealth({
                      client,
                      table: backfill.table,
                      limits: input.throttle,
                      memory,
                    });
                    healthReadAt = performance.now();
                    totals.health = health.readings;
                    totals.throttled = health.over;
                    if (totals.throttled !== undefined) return;
                    if (tuning !== undefined) {
                      totals.busySessions = await readBusySessions(client);
                      totals.aimedMs = targetNow(tuning, totals.busySessions);
                    }
                  }
                  const size = totals.batchSize;
                  const batchStarted = performance.now();
                  // Two batches at once only while the application leaves the database alone.
                  const alongside = totals.busySessions === 0 ? second : undefined;
                  const failure = await runStep(
                    client,
                    alongside,
                    backfill,
                    input.params,
                    owner,
                    totals,
                    batchStarted,
                  );
                  if (failure !== undefined) {
                    const timeout = timedOut(failure);
                    if (
                      tuning === undefined ||
                      limits === undefined ||
                      signal.aborted ||
                      timeout === undefined
                    ) {
                      throw failure;
                    }
                    // Rolled back, checkpoint included: its rows stay pending. The next chunk retries
                    // them smaller, and the workflow shows the new size.
                    totals.timeouts += 1;
                    totals.lastTimeout = `${timeout} (${timeout === 'lock timeout' ? limits.lockMs : limits.statementMs} ms) at ${size} rows`;
                    totals.batchSize = shrunkBatchSize(size, tuning);
                    totals.busyMs += performance.now() - batchStarted;
                    return;
                  }
                  const batchMs = performance.now() - batchStarted;
                  totals.lastBatchMs = Math.round(batchMs);
                  if (tuning !== undefined && !totals.done) {
                    const targetMs = totals.aimedMs ?? tuning.targetMs;
                    totals.batchSize = nextBatchSize(size, batchMs, { ...tuning, targetMs });
                  }
                  // A pause set by hand, or the one that lets a busy application go first.
                  const pauseMs = Math.max(
                    input.delayMs,
                    tuning === undefined ? 0 : contendedPauseMs(tuning, totals.busySessions ?? 0, batchMs),
                  );
                  if (pauseMs > 0 && !totals.done && !signal.aborted) await context.sleep(pauseMs);
                  totals.busyMs += performance.now() - batchStarted;
                  if (Date.now() - started >= input.chunkMs) return;
                }
              },
              { details: () => result, onCancel },
            );
          }),
        );
      } catch (error) {
        if (error instanceof CancelledFailure) throw cancelled(result);
        throw error;
      }
      // A cancellation that came after the last batch committed: the workflow still hears it.
      if (context.cancellationSignal.aborted) throw cancelled(result);
      return { ...result!, busyMs: Math.round(result!.busyMs) };
    },
  };
}

/**
 * A batch session's limits: its statement timeout, and its lock timeout when given. A killed
 * worker's batch: the server sees its connection gone within 2 s and rolls the batch back, instead
 * of running it to its end and holding the chunk's lock meanwhile.
 */
async function limitSession(client: Client, statementMs: number, lockMs?: number): Promise<void> {
  await client.query(
    `SELECT set_config('statement_timeout', $1, false), set_config('client_connection_check_interval', '2s', false)`,
    [`${statementMs}ms`],
  );
  if (lockMs !== undefined)
    await client.query(`SELECT set_config('lock_timeout', $1, false)`, [`${lockMs}ms`]);
}

/** Which timeout cut a batch short, or undefined for any other error. */
function timedOut(error: unknown): 'statement timeout' | 'lock timeout' | undefined {
  const { code, message } = error as { code?: string; message?: string };
  if (code === '55P03') return 'lock timeout';
  if (code === '57014' && message?.includes('statement timeout') === true) return 'statement timeout';
  return undefined;
}

/** The chunk's cancellation, carrying what it committed (nothing when it never started a batch). */
function cancelled(result: ChunkResult | undefined): CancelledFailure {
  const committed = result === undefined ? [] : [{ ...result, busyMs: Math.round(result.busyMs) }];
  return new CancelledFailure('backfill chunk cancelled (a batch it was running is rolled back)', committed);
}
