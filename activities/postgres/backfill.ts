/**
 * Batched backfills: keyset pagination on the key, one short transaction (one statement) per
 * batch, only rows still pending are updated. An activity runs batches for a bounded time (a
 * "chunk") and returns, so the workflow applies new settings, pauses or stops between chunks; the
 * checkpoint after every batch is in the heartbeat details, so a killed worker resumes there.
 */
import { ApplicationFailure, Context, metricMeter } from '@temporalio/activity';
import type { Client } from 'pg';

import { DbopsError, InvalidInputError } from '../../workflows/lib/errors';
import { recordBackfillRows } from '../../workflows/lib/metrics';
import type { AnyBackfill } from './backfills/definition';
import type { WithInstance } from './instance';

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

export interface ThrottleLimits {
  /** Pause batches while a replica lags more than this. */
  maxReplicaLagSeconds: number;
  /** Pause batches while more than this many other sessions are running a query. */
  maxActiveConnections: number;
}

export interface ChunkInput extends BackfillTarget {
  /** Last key done (as text: keys are bigint), null to start at the beginning. */
  lastKey: string | null;
  batchSize: number;
  delayMs: number;
  /** Return after about this long, so the workflow can apply new settings. */
  chunkMs: number;
  throttle: ThrottleLimits;
  /** Upper bound for one batch statement. */
  batchTimeoutMs: number;
}

export interface ChunkResult {
  lastKey: string | null;
  /** No row left after lastKey. */
  done: boolean;
  batches: number;
  rowsScanned: number;
  rowsChanged: number;
  /** Time spent on batches and the delays between them (not throttled or paused), for rows/s and ETA. */
  busyMs: number;
  /** Set when the chunk stopped early because the database is under pressure. */
  throttled: string | undefined;
}

/**
 * A batch as SQL text; the definition's parameters are $1..$n, then last key and batch size. The
 * batch is the next `limit` keys after the last one; the update walks that key range in index
 * order (cheaper than probing each key) and touches only rows still pending.
 */
export function batchStatement(
  backfill: AnyBackfill,
  paramCount: number,
  set: string,
  pending: string,
): string {
  const last = `$${paramCount + 1}::bigint`;
  const limit = `$${paramCount + 2}::int`;
  return `WITH batch AS (
  SELECT min(key) AS first_key, max(key) AS last_key, count(*)::int AS scanned FROM (
    SELECT ${backfill.key} AS key FROM ${backfill.table}
     WHERE ${last} IS NULL OR ${backfill.key} > ${last}
     ORDER BY ${backfill.key} LIMIT ${limit}
  ) keys
), changed AS (
  UPDATE ${backfill.table} AS t SET ${set}
   WHERE t.${backfill.key} BETWEEN (SELECT first_key FROM batch) AND (SELECT last_key FROM batch)
     AND (${pending})
  RETURNING 1
)
SELECT (SELECT last_key FROM batch)::text AS last_key,
       (SELECT scanned FROM batch) AS scanned,
       (SELECT count(*) FROM changed)::int AS changed`;
}

export interface BatchResult {
  lastKey: string | null;
  scanned: number;
  changed: number;
}

/** One batch after `lastKey`: its own transaction, only pending rows updated. */
export async function runBatch(
  client: Client,
  backfill: AnyBackfill,
  params: unknown,
  lastKey: string | null,
  batchSize: number,
): Promise<BatchResult> {
  const sql = backfill.prepare(params);
  const { rows } = await client.query<{ last_key: string | null; scanned: number; changed: number }>(
    batchStatement(backfill, sql.values.length, sql.set, sql.pending),
    [...sql.values, lastKey, batchSize],
  );
  const row = rows[0]!;
  return { lastKey: row.last_key ?? lastKey, scanned: row.scanned, changed: row.changed };
}

/** Why batches should wait now, or undefined when the database has room. */
export async function pressure(client: Client, limits: ThrottleLimits): Promise<string | undefined> {
  const { rows } = await client.query<{ lag: number; active: number }>(
    `SELECT COALESCE((SELECT max(EXTRACT(epoch FROM replay_lag)) FROM pg_stat_replication), 0)::float8 AS lag,
            (SELECT count(*) FROM pg_stat_activity
              WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid())::int AS active`,
  );
  const { lag, active } = rows[0]!;
  if (lag > limits.maxReplicaLagSeconds) {
    return `replica lag ${lag.toFixed(1)} s > ${limits.maxReplicaLagSeconds} s`;
  }
  if (active > limits.maxActiveConnections) {
    return `${active} active connections > ${limits.maxActiveConnections}`;
  }
  return undefined;
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

    /** Runs batches for about `chunkMs`, checkpointing each one in the heartbeat details. */
    async runBackfillChunk(input: ChunkInput): Promise<ChunkResult> {
      const backfill = lookup(input.name, input.params);
      const context = Context.current();
      // A retry after a lost worker resumes from the last batch it recorded.
      const resumed = context.info.heartbeatDetails as ChunkResult | undefined;
      const result: ChunkResult = resumed ?? {
        lastKey: input.lastKey,
        done: false,
        batches: 0,
        rowsScanned: 0,
        rowsChanged: 0,
        busyMs: 0,
        throttled: undefined,
      };
      const started = Date.now();
      await deps.withInstance(input.instanceId, async (client) => {
        await client.query(`SELECT set_config('statement_timeout', $1, false)`, [
          `${input.batchTimeoutMs}ms`,
        ]);
        while (!result.done && Date.now() - started < input.chunkMs) {
          result.throttled = await pressure(client, input.throttle);
          if (result.throttled !== undefined) break;
          const batchStarted = performance.now();
          const batch = await runBatch(client, backfill, input.params, result.lastKey, input.batchSize);
          result.batches += 1;
          result.rowsScanned += batch.scanned;
          result.rowsChanged += batch.changed;
          result.lastKey = batch.lastKey;
          result.done = batch.scanned < input.batchSize;
          context.heartbeat(result);
          recordBackfillRows(metricMeter, backfill.table, batch.changed);
          if (input.delayMs > 0 && !result.done) await context.sleep(input.delayMs);
          result.busyMs += performance.now() - batchStarted;
        }
      });
      result.busyMs = Math.round(result.busyMs);
      return result;
    },
  };
}
