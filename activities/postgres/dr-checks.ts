/**
 * The DR test's checks on a restored instance: is the copy a usable replacement? Connectivity,
 * the runbook's `count(*)` / `max(created_at)` of conversations, every table's row count against
 * what was recorded with the snapshot, pgvector, every vector index valid and usable by a kNN
 * query, and the recall@10 of HNSW indexes against exact search.
 *
 * Table and index names come from the catalog or the snapshot's metadata, never from workflow
 * input as SQL: they are quoted with escapeIdentifier.
 *
 * Run as an activity, the checks heartbeat on a timer while each one runs (a count on a cold,
 * freshly restored volume can take minutes), and a cancellation cancels the running queries.
 */
import { asyncLocalStorage } from '@temporalio/activity';
import type { Client } from 'pg';

import type { Endpoint } from '../control-plane/control-plane';
import { heartbeatWhile } from '../heartbeat';
import type { DatabaseConnector } from './connect';

export type CheckStatus = 'passed' | 'failed' | 'skipped';

export interface DrCheck {
  /** e.g. `conversations`, `row-counts`, `vector-index:conversations_embedding_idx`, `recall:…`. */
  name: string;
  status: CheckStatus;
  detail: string;
}

export interface DrChecksInput {
  endpoint: Endpoint;
  /** The snapshot's `tableRowCounts` (`db.schema.table` or `schema.table`), null when unknown. */
  expectedRowCounts: Record<string, number> | null;
  /** Stored embeddings used as query vectors for recall. */
  sampleQueries: number;
  minRecall: number;
  /** `hnsw.ef_search` for the approximate queries. */
  efSearch: number;
}

export interface DrChecksResult {
  checks: DrCheck[];
  conversationCount: number | null;
  latestConversation: string | null;
  pgvectorVersion: string | null;
}

/** Distance operator of each pgvector operator class. */
const OPERATOR_BY_OPCLASS: Record<string, string> = {
  vector_l2_ops: '<->',
  vector_ip_ops: '<#>',
  vector_cosine_ops: '<=>',
  vector_l1_ops: '<+>',
};

interface VectorIndex {
  name: string;
  schema: string;
  table: string;
  column: string;
  method: 'hnsw' | 'ivfflat';
  opclass: string;
  valid: boolean;
}

const K = 10;

/**
 * Runs every check; a check that finds a problem fails with its detail, the others still run.
 * Only a connection failure throws (the activity retries it: a fresh RDS endpoint may take a
 * moment to resolve). `progress` hears each check as it ends. In an activity, heartbeats go out
 * on a timer meanwhile, and cancelling the activity cancels the running queries and stops.
 */
export async function runDrChecks(
  connector: DatabaseConnector,
  input: DrChecksInput,
  progress: (check: string) => void = () => undefined,
): Promise<DrChecksResult> {
  const endpoint = { ...input.endpoint };
  const checks: DrCheck[] = [];
  /** Backends of the open check sessions, to cancel. */
  const sessions = new Set<number>();
  const open = <T>(where: Endpoint, fn: (client: Client) => Promise<T>): Promise<T> =>
    connector.withEndpoint(where, async (client) => {
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      sessions.add(rows[0]!.pid);
      try {
        return await fn(client);
      } finally {
        sessions.delete(rows[0]!.pid);
      }
    });
  const run = (signal?: AbortSignal) =>
    open(endpoint, (client) => checkAll(client, { input, endpoint, checks, progress, open, signal }));
  if (asyncLocalStorage.getStore() === undefined) return run();
  return heartbeatWhile(run, {
    details: () => ({ checksDone: checks.map((check) => check.name) }),
    onCancel: () =>
      connector.withEndpoint(endpoint, (other) =>
        other.query('SELECT pg_cancel_backend(pid) FROM unnest($1::int[]) AS pid', [[...sessions]]),
      ),
  });
}

interface CheckRun {
  input: DrChecksInput;
  endpoint: Endpoint;
  checks: DrCheck[];
  progress: (check: string) => void;
  /** A connection whose backend a cancellation reaches. */
  open: <T>(where: Endpoint, fn: (client: Client) => Promise<T>) => Promise<T>;
  signal: AbortSignal | undefined;
}

async function checkAll(client: Client, run: CheckRun): Promise<DrChecksResult> {
  const { input, endpoint, checks, progress, signal } = run;
  const add = (check: DrCheck) => {
    checks.push(check);
    progress(check.name);
    // Cancelled between two checks: the next one does not start.
    if (signal?.aborted) throw signal.reason;
  };
  const { rows } = await client.query<{ version: string; db: string }>(
    `SELECT current_setting('server_version') AS version, current_database() AS db`,
  );
  add({
    name: 'connectivity',
    status: 'passed',
    detail: `connected to ${rows[0]!.db} as ${endpoint.user} on ${endpoint.host}:${endpoint.port}, PostgreSQL ${rows[0]!.version}`,
  });

  const conversations = await checkConversations(client);
  add(conversations.check);
  add(await checkRowCounts(run.open, endpoint, input.expectedRowCounts));

  const pgvectorVersion = await extensionVersion(client, 'vector');
  add(
    pgvectorVersion === null
      ? { name: 'pgvector', status: 'failed', detail: 'the vector extension is not installed' }
      : { name: 'pgvector', status: 'passed', detail: `vector ${pgvectorVersion} installed` },
  );

  const indexes = pgvectorVersion === null ? [] : await vectorIndexes(client);
  if (indexes.length === 0) {
    add({ name: 'vector-indexes', status: 'failed', detail: 'no HNSW or IVFFlat index found' });
  }
  for (const index of indexes) add(await checkIndexUsable(client, index, indexes));

  const hnsw = indexes.filter((index) => index.method === 'hnsw' && index.valid);
  if (pgvectorVersion !== null && hnsw.length === 0) {
    add({ name: 'recall', status: 'failed', detail: 'no valid HNSW index to measure recall@10 on' });
  }
  for (const index of hnsw) add(await checkRecall(client, index, indexes, input));

  return {
    checks,
    conversationCount: conversations.count,
    latestConversation: conversations.latest,
    pgvectorVersion,
  };
}

/** The runbook's query: the restored copy has conversations, up to some latest time. */
async function checkConversations(
  client: Client,
): Promise<{ check: DrCheck; count: number | null; latest: string | null }> {
  const { rows: exists } = await client.query<{ ok: boolean }>(
    `SELECT to_regclass('conversations') IS NOT NULL AS ok`,
  );
  if (!exists[0]!.ok) {
    return {
      check: { name: 'conversations', status: 'failed', detail: 'table conversations does not exist' },
      count: null,
      latest: null,
    };
  }
  const { rows } = await client.query<{ n: string; latest: Date | null }>(
    'SELECT count(*) AS n, max(created_at) AS latest FROM conversations',
  );
  const count = Number(rows[0]!.n);
  const latest = rows[0]!.latest?.toISOString() ?? null;
  return {
    check: {
      name: 'conversations',
      status: count > 0 ? 'passed' : 'failed',
      detail: `${count} conversations, latest created_at ${latest ?? 'none'}`,
    },
    count,
    latest,
  };
}

/** Every table's row count against the snapshot's; keys are `db.schema.table` or `schema.table`. */
async function checkRowCounts(
  open: CheckRun['open'],
  endpoint: Endpoint,
  expected: Record<string, number> | null,
): Promise<DrCheck> {
  if (expected === null || Object.keys(expected).length === 0) {
    return {
      name: 'row-counts',
      status: 'skipped',
      detail: 'no row counts were recorded with this snapshot',
    };
  }
  const byDatabase = new Map<string, { key: string; schema: string; table: string; rows: number }[]>();
  const mismatches: string[] = [];
  for (const [key, rows] of Object.entries(expected)) {
    const parts = key.split('.');
    const [database, schema, table] = parts.length === 2 ? [endpoint.database, ...parts] : parts;
    if (parts.length < 2 || parts.length > 3 || !database || !schema || !table) {
      mismatches.push(`${key}: not a [database.]schema.table name`);
      continue;
    }
    byDatabase.set(database, [...(byDatabase.get(database) ?? []), { key, schema, table, rows }]);
  }
  for (const [database, tables] of byDatabase) {
    await open({ ...endpoint, database }, async (client) => {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      try {
        for (const { key, schema, table, rows } of tables) {
          const qualified = `${client.escapeIdentifier(schema)}.${client.escapeIdentifier(table)}`;
          const { rows: exists } = await client.query<{ ok: boolean }>(
            'SELECT to_regclass($1) IS NOT NULL AS ok',
            [qualified],
          );
          if (!exists[0]!.ok) {
            mismatches.push(`${key}: missing (expected ${rows} rows)`);
            continue;
          }
          const { rows: counted } = await client.query<{ n: string }>(
            `SELECT count(*) AS n FROM ${qualified}`,
          );
          const actual = Number(counted[0]!.n);
          if (actual !== rows) mismatches.push(`${key}: ${actual} rows, expected ${rows}`);
        }
      } finally {
        await client.query('ROLLBACK');
      }
    });
  }
  const total = Object.keys(expected).length;
  return mismatches.length === 0
    ? { name: 'row-counts', status: 'passed', detail: `${total} tables match the snapshot's row counts` }
    : {
        name: 'row-counts',
        status: 'failed',
        detail: `${mismatches.length} of ${total} tables differ: ${mismatches.join('; ')}`,
      };
}

async function extensionVersion(client: Client, name: string): Promise<string | null> {
  const { rows } = await client.query<{ version: string }>(
    'SELECT extversion AS version FROM pg_extension WHERE extname = $1',
    [name],
  );
  return rows[0]?.version ?? null;
}

async function vectorIndexes(client: Client): Promise<VectorIndex[]> {
  const { rows } = await client.query<VectorIndex>(
    `SELECT ic.relname AS name, n.nspname AS schema, tc.relname AS table, a.attname AS column,
            am.amname AS method, op.opcname AS opclass, i.indisvalid AS valid
       FROM pg_index i
       JOIN pg_class ic ON ic.oid = i.indexrelid
       JOIN pg_class tc ON tc.oid = i.indrelid
       JOIN pg_namespace n ON n.oid = tc.relnamespace
       JOIN pg_am am ON am.oid = ic.relam
       JOIN pg_opclass op ON op.oid = i.indclass[0]
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
      WHERE am.amname IN ('hnsw', 'ivfflat')
      ORDER BY n.nspname, tc.relname, ic.relname`,
  );
  return rows;
}

function qualifiedTable(client: Client, index: VectorIndex): string {
  return `${client.escapeIdentifier(index.schema)}.${client.escapeIdentifier(index.table)}`;
}

/** A stored embedding of the index's column, as text, to query with. */
async function probes(client: Client, index: VectorIndex, count: number): Promise<string[]> {
  const column = client.escapeIdentifier(index.column);
  // md5 of the ctid spreads the sample over the table and is the same on every run.
  const { rows } = await client.query<{ v: string }>(
    `SELECT ${column}::text AS v FROM ${qualifiedTable(client, index)}
      WHERE ${column} IS NOT NULL ORDER BY md5(ctid::text) LIMIT $1`,
    [count],
  );
  return rows.map((row) => row.v);
}

/**
 * Runs `fn` in a transaction where `index` is the only vector index of its column: the other
 * vector indexes are dropped and the drop rolled back afterwards. This runs on the temporary DR
 * copy only (the DDL takes a lock nobody else waits on there).
 */
async function withOnlyIndex<T>(
  client: Client,
  index: VectorIndex,
  all: VectorIndex[],
  fn: () => Promise<T>,
): Promise<T> {
  await client.query('BEGIN');
  try {
    for (const other of all) {
      if (other.name === index.name || other.table !== index.table || other.schema !== index.schema) continue;
      if (other.column !== index.column) continue;
      await client.query(
        `DROP INDEX ${client.escapeIdentifier(other.schema)}.${client.escapeIdentifier(other.name)}`,
      );
    }
    return await fn();
  } finally {
    await client.query('ROLLBACK');
  }
}

function knnQuery(client: Client, index: VectorIndex): string {
  const operator = OPERATOR_BY_OPCLASS[index.opclass] ?? '<->';
  return `SELECT ctid::text AS id FROM ${qualifiedTable(client, index)}
           ORDER BY ${client.escapeIdentifier(index.column)} ${operator} $1::vector LIMIT ${K}`;
}

/**
 * Valid (pg_index.indisvalid) and chosen by the planner for a kNN query. Sequential scans are
 * disabled for the EXPLAIN: on a small copy a scan can be cheaper, and the question here is
 * whether the index can serve the query at all.
 */
async function checkIndexUsable(client: Client, index: VectorIndex, all: VectorIndex[]): Promise<DrCheck> {
  const name = `vector-index:${index.name}`;
  const what = `${index.method} on ${index.table}.${index.column} (${index.opclass})`;
  if (!index.valid)
    return { name, status: 'failed', detail: `${what} is INVALID (pg_index.indisvalid = false)` };
  const [probe] = await probes(client, index, 1);
  if (probe === undefined)
    return { name, status: 'failed', detail: `${what}: no stored vector to query with` };
  const plan = await withOnlyIndex(client, index, all, async () => {
    await client.query('SET LOCAL enable_seqscan = off');
    const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${knnQuery(client, index)}`, [
      probe,
    ]);
    return rows.map((row) => row['QUERY PLAN']).join('\n');
  });
  const used = new RegExp(`Index Scan using ${escapeRegExp(index.name)}\\b`).test(plan);
  return used
    ? { name, status: 'passed', detail: `${what} is valid and used by the kNN plan` }
    : { name, status: 'failed', detail: `${what} is valid but the kNN plan does not use it:\n${plan}` };
}

/** recall@10: the share of the exact 10 nearest neighbours that the index scan returns. */
async function checkRecall(
  client: Client,
  index: VectorIndex,
  all: VectorIndex[],
  input: DrChecksInput,
): Promise<DrCheck> {
  const name = `recall:${index.name}`;
  const queries = await probes(client, index, input.sampleQueries);
  if (queries.length === 0) return { name, status: 'failed', detail: 'no stored vectors to query with' };
  const sql = knnQuery(client, index);
  const approximate = await withOnlyIndex(client, index, all, async () => {
    await client.query(
      `SELECT set_config('enable_seqscan', 'off', true), set_config('hnsw.ef_search', $1, true)`,
      [String(input.efSearch)],
    );
    const results: string[][] = [];
    for (const probe of queries)
      results.push((await client.query<{ id: string }>(sql, [probe])).rows.map((r) => r.id));
    return results;
  });
  // Exact search: no index scan at all, so a sort over every row.
  await client.query('BEGIN');
  const exact: string[][] = [];
  try {
    await client.query('SET LOCAL enable_indexscan = off');
    await client.query('SET LOCAL enable_bitmapscan = off');
    for (const probe of queries)
      exact.push((await client.query<{ id: string }>(sql, [probe])).rows.map((r) => r.id));
  } finally {
    await client.query('ROLLBACK');
  }
  let found = 0;
  let wanted = 0;
  exact.forEach((ids, i) => {
    const returned = new Set(approximate[i]);
    wanted += ids.length;
    found += ids.filter((id) => returned.has(id)).length;
  });
  const recall = wanted === 0 ? 0 : found / wanted;
  const detail = `recall@${K} ${recall.toFixed(3)} over ${queries.length} queries (hnsw.ef_search ${input.efSearch}), minimum ${input.minRecall}`;
  return { name, status: recall >= input.minRecall ? 'passed' : 'failed', detail };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
