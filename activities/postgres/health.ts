/**
 * What the runbook's alerts watch, measured in one pass on the database: connections, replication,
 * pg_stat_statements, cache hit ratio, every vector index's size against shared_buffers and its
 * validity, and an EXPLAIN (ANALYZE, BUFFERS) of the kNN query. The
 * thresholds are applied by the workflow (`workflows/lib/health-findings.ts`).
 *
 * The counters describe the server they are read on, so they are read on the primary. The kNN
 * query reads the table: it runs on the read replica when one is configured and within its lag
 * bound, and the result says where (`knnReadFrom`).
 */
import { Context } from '@temporalio/activity';
import type { Client } from 'pg';

import { backendCanceller, heartbeatWhile } from '../heartbeat';
import type { ReadRoute } from './connect';
import type { InstanceInput, OnInstance, OnReadOnly } from './on-instance';

export interface StatementStats {
  /** Normalized text (constants replaced by $n), cut to 500 characters. */
  query: string;
  calls: number;
  meanMs: number;
  maxMs: number;
  totalMs: number;
  rows: number;
}

export interface ReplicaLag {
  /** application_name of the standby (primary side) or `self` (measured on a replica). */
  name: string;
  lagSeconds: number | null;
}

export interface KnnExplain {
  table: string;
  /** The distance operator that matches the vector index's operator class. */
  operator: string;
  /** The vector index the plan scans, or null (a sequential scan and sort). */
  indexUsed: string | null;
  executionMs: number;
  sharedHitBlocks: number;
  sharedReadBlocks: number;
  /** The plan as EXPLAIN prints it. */
  plan: string;
}

export interface HealthSnapshot {
  measuredAt: string;
  connections: { used: number; max: number };
  isReplica: boolean;
  replicas: ReplicaLag[];
  cache: { hits: number; reads: number };
  /** Null when pg_stat_statements is not available; `statementsProblem` then says why. */
  slowest: StatementStats[] | null;
  mostFrequent: StatementStats[] | null;
  statementsProblem: string | null;
  knn: KnnResult;
  /** Where the kNN query ran (the replica or the primary) and why there. */
  knnReadFrom: ReadRoute;
  /** Every HNSW / IVFFlat index: its size against shared_buffers, and whether it is valid. */
  vectorIndexes: VectorIndexHealth[];
}

export interface VectorIndexHealth {
  /** `schema.index`. */
  index: string;
  table: string;
  method: string;
  /** INVALID: a concurrent build that failed or was cancelled left it; queries do not use it. */
  valid: boolean;
  sizeBytes: number;
  sharedBuffersBytes: number;
}

export type KnnResult =
  | { status: 'no-table' }
  | { status: 'no-embeddings'; table: string }
  | ({ status: 'explained' } & KnnExplain);

/** The vector operator class of an index decides which operator lets the planner use it. */
export const OPERATOR_BY_OPCLASS: Record<string, string> = {
  vector_l2_ops: '<->',
  vector_ip_ops: '<#>',
  vector_cosine_ops: '<=>',
  vector_l1_ops: '<+>',
};

export function createHealthActivities(onInstance: OnInstance, onReadOnly: OnReadOnly) {
  return {
    /**
     * One pass of measurements. It heartbeats on a timer (the EXPLAIN ANALYZE of the kNN query
     * can take long on a big table scanned without its index); cancelled, it cancels its query.
     */
    async measureHealth(input: InstanceInput): Promise<HealthSnapshot> {
      const counters = await onInstance(input.instanceId, (client) =>
        measuring(
          client,
          (fn) => onInstance(input.instanceId, fn),
          async (step) => {
            const statements = await step(statementStats);
            return {
              measuredAt: new Date().toISOString(),
              connections: await step(connections),
              isReplica: await step(isReplica),
              replicas: await step(replicationLag),
              cache: await step(cacheCounters),
              vectorIndexes: await step(vectorIndexHealth),
              ...statements,
            };
          },
        ),
      );
      return onReadOnly(input.instanceId, async ({ client, route, sameServer }) => {
        Context.current().log.info(`kNN query on the ${route.server}: ${route.reason}`, {
          readFrom: route.server,
        });
        const knn = await measuring(client, sameServer, (step) => step(explainKnn));
        return { ...counters, knn, knnReadFrom: route };
      });
    },
  };
}

/**
 * Runs measurements on `client` under a heartbeat; cancelled, the running query is cancelled from
 * another connection to the same server and the next step is not started.
 */
async function measuring<T>(
  client: Client,
  sameServer: (fn: (other: Client) => Promise<unknown>) => Promise<unknown>,
  work: (step: <U>(measure: (client: Client) => Promise<U>) => Promise<U>) => Promise<T>,
): Promise<T> {
  const onCancel = await backendCanceller(client, sameServer);
  return heartbeatWhile(
    (signal) =>
      work(async (measure) => {
        if (signal.aborted) throw signal.reason;
        return measure(client);
      }),
    { onCancel },
  );
}

async function connections(client: Client): Promise<{ used: number; max: number }> {
  const { rows } = await client.query<{ used: number; max: number }>(
    `SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS used,
            current_setting('max_connections')::int AS max`,
  );
  return rows[0]!;
}

async function isReplica(client: Client): Promise<boolean> {
  const { rows } = await client.query<{ recovery: boolean }>('SELECT pg_is_in_recovery() AS recovery');
  return rows[0]!.recovery;
}

/** On a primary: every standby's replay lag; on a replica: how far behind its own replay is. */
async function replicationLag(client: Client): Promise<ReplicaLag[]> {
  const { rows } = await client.query<ReplicaLag>(
    `SELECT application_name AS name, extract(epoch FROM replay_lag)::float8 AS "lagSeconds"
       FROM pg_stat_replication
      WHERE NOT pg_is_in_recovery()
     UNION ALL
     SELECT 'self', extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
      WHERE pg_is_in_recovery()`,
  );
  return rows;
}

async function cacheCounters(client: Client): Promise<{ hits: number; reads: number }> {
  const { rows } = await client.query<{ hits: number; reads: number }>(
    `SELECT blks_hit::float8 AS hits, blks_read::float8 AS reads
       FROM pg_stat_database WHERE datname = current_database()`,
  );
  return rows[0]!;
}

async function statementStats(
  client: Client,
): Promise<Pick<HealthSnapshot, 'slowest' | 'mostFrequent' | 'statementsProblem'>> {
  const { rows: installed } = await client.query<{ ok: boolean }>(
    `SELECT to_regclass('pg_stat_statements') IS NOT NULL AS ok`,
  );
  if (!installed[0]!.ok) {
    return {
      slowest: null,
      mostFrequent: null,
      statementsProblem:
        'the pg_stat_statements extension is not created in this database: the worker role set-up ' +
        '(activities/postgres/worker-role.sql, run as the master user) creates it',
    };
  }
  try {
    const top = async (order: string) => {
      const { rows } = await client.query<StatementStats>(
        `SELECT left(query, 500) AS query, calls::float8 AS calls,
                round(mean_exec_time::numeric, 3)::float8 AS "meanMs",
                round(max_exec_time::numeric, 3)::float8 AS "maxMs",
                round(total_exec_time::numeric, 3)::float8 AS "totalMs", rows::float8 AS rows
           FROM pg_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          ORDER BY ${order} DESC
          LIMIT 10`,
      );
      return rows.map(redactPasswords);
    };
    return {
      slowest: await top('mean_exec_time'),
      mostFrequent: await top('calls'),
      statementsProblem: null,
    };
  } catch (error) {
    return { slowest: null, mostFrequent: null, statementsProblem: (error as Error).message };
  }
}

/** Utility statements keep their literals (ALTER ROLE ... PASSWORD '...'): never let one into history. */
function redactPasswords(statement: StatementStats): StatementStats {
  return /password/i.test(statement.query)
    ? { ...statement, query: '(statement mentioning a password, not shown)' }
    : statement;
}

async function vectorIndexHealth(client: Client): Promise<VectorIndexHealth[]> {
  const { rows } = await client.query<VectorIndexHealth>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS index, t.relname AS table, am.amname AS method,
            i.indisvalid AS valid, pg_relation_size(c.oid)::float8 AS "sizeBytes",
            (SELECT setting::float8 * pg_size_bytes(coalesce(unit, 'B')) FROM pg_settings
              WHERE name = 'shared_buffers') AS "sharedBuffersBytes"
       FROM pg_index i
       JOIN pg_class c ON c.oid = i.indexrelid
       JOIN pg_class t ON t.oid = i.indrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_am am ON am.oid = c.relam
      WHERE am.amname IN ('hnsw', 'ivfflat')
      ORDER BY n.nspname, c.relname`,
  );
  return rows;
}

/** EXPLAIN (ANALYZE, BUFFERS) of the application's kNN query, with a stored embedding as the probe. */
async function explainKnn(client: Client): Promise<KnnResult> {
  const { rows: columns } = await client.query<{ table: string }>(
    `SELECT c.oid::regclass::text AS table
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      WHERE c.oid = to_regclass('conversation_chunks') AND a.attname = 'embedding' AND NOT a.attisdropped`,
  );
  if (columns.length === 0) return { status: 'no-table' };
  const table = columns[0]!.table;

  const { rows: opclasses } = await client.query<{ opclass: string }>(
    `SELECT op.opcname AS opclass
       FROM pg_index i
       JOIN pg_class c ON c.oid = i.indexrelid
       JOIN pg_am am ON am.oid = c.relam
       JOIN pg_opclass op ON op.oid = i.indclass[0]
      WHERE i.indrelid = 'conversation_chunks'::regclass AND am.amname IN ('hnsw', 'ivfflat')
      ORDER BY am.amname = 'hnsw' DESC
      LIMIT 1`,
  );
  const operator = OPERATOR_BY_OPCLASS[opclasses[0]?.opclass ?? ''] ?? '<=>';

  const { rows: probes } = await client.query<{ embedding: string }>(
    'SELECT embedding::text AS embedding FROM conversation_chunks WHERE embedding IS NOT NULL LIMIT 1',
  );
  if (probes.length === 0) return { status: 'no-embeddings', table };
  const { rows } = await client.query<{ 'QUERY PLAN': string }>(
    `EXPLAIN (ANALYZE, BUFFERS)
     SELECT id FROM conversation_chunks ORDER BY embedding ${operator} $1::vector LIMIT 10`,
    [probes[0]!.embedding],
  );
  const plan = rows.map((row) => row['QUERY PLAN']).join('\n');
  // The first Buffers line belongs to the top node, which sums its children.
  const buffers = /Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?/.exec(plan);
  return {
    status: 'explained',
    table,
    operator,
    indexUsed: /Index Scan using (\S+)/.exec(plan)?.[1] ?? null,
    executionMs: Number(/Execution Time: ([\d.]+) ms/.exec(plan)?.[1] ?? 0),
    sharedHitBlocks: Number(buffers?.[1] ?? 0),
    sharedReadBlocks: Number(buffers?.[2] ?? 0),
    plan,
  };
}
