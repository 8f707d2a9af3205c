/**
 * The DR test's checks on a restored instance: is the copy a usable replacement, holding what its
 * snapshot held? Connectivity; amcheck over every table and B-tree index (damaged bytes that the
 * restore itself did not notice); the runbook's `count(*)` / `max(created_at)` of conversations;
 * every table read in full, its row count and content hash against what was recorded with the
 * snapshot (activities/postgres/fingerprints.ts); pgvector, every vector index valid and usable by
 * a kNN query, and the recall@10 of HNSW indexes against exact search.
 *
 * The databases checked are the endpoint's and those the snapshot recorded tables of. amcheck is
 * created on the copy when it is missing there (the checks only ever connect to the copy). A table
 * amcheck finds damaged is not read by the later checks: on a cluster without data checksums a
 * damaged page can crash the backend that reads it.
 *
 * Table and index names come from the catalog or the snapshot's metadata, never from workflow
 * input as SQL: they are quoted with escapeIdentifier, or passed as oids.
 *
 * Run as an activity, the checks heartbeat on a timer while each one runs (a count on a cold,
 * freshly restored volume can take minutes), and a cancellation cancels the running queries and
 * stops between two tables.
 */
import { asyncLocalStorage } from '@temporalio/activity';
import { DatabaseError, type Client } from 'pg';

import type { Endpoint } from '../control-plane/control-plane';
import { heartbeatWhile } from '../heartbeat';
import type { DatabaseConnector } from './connect';
import { beginFingerprints, fingerprintTable, userTables, type TableFingerprint } from './fingerprints';

export type CheckStatus = 'passed' | 'failed' | 'skipped';

export interface DrCheck {
  /** e.g. `amcheck`, `conversations`, `row-counts`, `table-contents`, `vector-index:…`, `recall:…`. */
  name: string;
  status: CheckStatus;
  detail: string;
}

export interface DrChecksInput {
  endpoint: Endpoint;
  /** The snapshot's `tableRowCounts` (`db.schema.table` or `schema.table`), null when unknown. */
  expectedRowCounts: Record<string, number> | null;
  /** The snapshot's `tableContentHashes`, keyed alike; null or absent when unknown (RDS). */
  expectedContentHashes?: Record<string, string> | null;
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

  const expected = expectedTables(input, endpoint.database);
  const databases = [...new Set([endpoint.database, ...expected.tables.map((table) => table.database)])];
  const integrity = await checkIntegrity(run, databases);
  add(integrity.check);

  const conversations = await checkConversations(client, endpoint.database, integrity.damaged);
  add(conversations.check);
  const reads = await readTables(run, databases, integrity.damaged);
  add(checkRowCounts(expected, reads));
  add(checkContents(expected, reads));

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
  const damagedTable = (index: VectorIndex) =>
    integrity.damaged.has(`${endpoint.database}.${index.schema}.${index.table}`);
  for (const index of indexes) {
    const name = `vector-index:${index.name}`;
    add(
      damagedTable(index)
        ? { name, status: 'failed', detail: `not queried: amcheck found ${index.table} damaged` }
        : await guarded(name, () => checkIndexUsable(client, index, indexes)),
    );
  }

  const hnsw = indexes.filter((index) => index.method === 'hnsw' && index.valid);
  if (pgvectorVersion !== null && hnsw.length === 0) {
    add({ name: 'recall', status: 'failed', detail: 'no valid HNSW index to measure recall@10 on' });
  }
  for (const index of hnsw) {
    const name = `recall:${index.name}`;
    add(
      damagedTable(index)
        ? { name, status: 'failed', detail: `not measured: amcheck found ${index.table} damaged` }
        : await guarded(name, () => checkRecall(client, index, indexes, input)),
    );
  }

  return {
    checks,
    conversationCount: conversations.count,
    latestConversation: conversations.latest,
    pgvectorVersion,
  };
}

/**
 * A failure of the statement (its message is the finding: a damaged page, a missing file), as
 * opposed to a lost connection or a cancellation, which end the activity (it retries, or stops).
 */
function isStatementError(error: unknown): error is DatabaseError {
  return error instanceof DatabaseError && !/^(08|57)/.test(error.code ?? '');
}

/** Runs a check; a statement error fails it with the server's message. */
async function guarded(name: string, check: () => Promise<DrCheck>): Promise<DrCheck> {
  try {
    return await check();
  } catch (error) {
    if (!isStatementError(error)) throw error;
    return { name, status: 'failed', detail: `ERROR: ${error.message}` };
  }
}

interface HeapOrIndex {
  oid: string;
  kind: string;
  schema: string;
  name: string;
  /** The table a heap relation's rows belong to (a TOAST table's owner), `schema.table`. */
  table: string;
}

/**
 * amcheck on every table (`verify_heapam`, TOAST pointers included; TOAST tables and system
 * catalogs too) and every valid B-tree index (`bt_index_check` with `heapallindexed`: each heap
 * tuple is found in the index) of each database. Returns the tables (`db.schema.table`) found
 * damaged, so later checks leave them unread.
 */
async function checkIntegrity(
  run: CheckRun,
  databases: string[],
): Promise<{ check: DrCheck; damaged: Set<string> }> {
  const damaged = new Set<string>();
  const problems: string[] = [];
  const created: string[] = [];
  let heaps = 0;
  let btrees = 0;
  for (const database of databases) {
    try {
      await run.open({ ...run.endpoint, database }, async (client) => {
        const amcheck = await amcheckSchema(client);
        if (amcheck === null) created.push(database);
        const schema = amcheck ?? (await createAmcheck(client));
        const { rows: relations } = await client.query<HeapOrIndex>(
          `SELECT c.oid::text AS oid, c.relkind AS kind, n.nspname AS schema, c.relname AS name,
                  coalesce(tn.nspname || '.' || t.relname, n.nspname || '.' || c.relname) AS table
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_class t ON c.relkind = 't' AND t.reltoastrelid = c.oid
             LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
             LEFT JOIN pg_index x ON x.indexrelid = c.oid
             LEFT JOIN pg_am am ON am.oid = c.relam
            WHERE c.relpersistence <> 't'
              AND (c.relkind IN ('r', 'm', 't') OR (c.relkind = 'i' AND am.amname = 'btree' AND x.indisvalid AND x.indisready))
            ORDER BY c.relkind = 'i', n.nspname, c.relname`,
        );
        for (const relation of relations) {
          const what =
            relation.kind === 't'
              ? `${database}.${relation.schema}.${relation.name} (TOAST of ${relation.table})`
              : `${relation.kind === 'i' ? 'index ' : ''}${database}.${relation.schema}.${relation.name}`;
          const found =
            relation.kind === 'i'
              ? await checkIndex(client, schema, relation.oid)
              : await checkHeap(client, schema, relation.oid);
          if (relation.kind === 'i') btrees++;
          else heaps++;
          if (found.length > 0) {
            problems.push(`${what}: ${found.join('; ')}`);
            if (relation.kind !== 'i') damaged.add(`${database}.${relation.table}`);
          }
          if (run.signal?.aborted) throw run.signal.reason;
        }
      });
    } catch (error) {
      if (!isStatementError(error)) throw error;
      problems.push(`${database}: amcheck could not run: ${error.message}`);
    }
  }
  const scope = `verify_heapam on ${heaps} tables (TOAST and catalogs included) and bt_index_check with heapallindexed on ${btrees} B-tree indexes of ${databases.join(', ')}`;
  const made = created.length > 0 ? `; amcheck created on this copy in ${created.join(', ')}` : '';
  const check: DrCheck =
    problems.length === 0
      ? { name: 'amcheck', status: 'passed', detail: `${scope}: no corruption${made}` }
      : {
          name: 'amcheck',
          status: 'failed',
          detail: `${problems.length} damaged: ${problems.join('; ')} (${scope}${made})`,
        };
  return { check, damaged };
}

/** The schema amcheck is installed in, quoted; null when it is not installed. */
async function amcheckSchema(client: Client): Promise<string | null> {
  const { rows } = await client.query<{ schema: string }>(
    `SELECT extnamespace::regnamespace::text AS schema FROM pg_extension WHERE extname = 'amcheck'`,
  );
  return rows[0]?.schema ?? null;
}

async function createAmcheck(client: Client): Promise<string> {
  await client.query('CREATE EXTENSION IF NOT EXISTS amcheck');
  return (await amcheckSchema(client))!;
}

const MAX_FINDINGS = 3;

/** verify_heapam's findings for one table: `block 0, offset 3: …`, or the error reading it raised. */
async function checkHeap(client: Client, schema: string, oid: string): Promise<string[]> {
  try {
    const { rows } = await client.query<{
      blkno: string;
      offnum: number | null;
      attnum: number | null;
      msg: string;
    }>(
      `SELECT blkno, offnum, attnum, msg FROM ${schema}.verify_heapam($1::oid::regclass, check_toast => true) LIMIT ${MAX_FINDINGS + 1}`,
      [oid],
    );
    return rows.map((row, i) =>
      i === MAX_FINDINGS
        ? 'and more'
        : `block ${row.blkno}${row.offnum === null ? '' : `, offset ${row.offnum}`}${row.attnum === null ? '' : `, attribute ${row.attnum}`}: ${row.msg}`,
    );
  } catch (error) {
    if (!isStatementError(error)) throw error;
    return [`ERROR: ${error.message}`];
  }
}

/** bt_index_check raises an error for the first problem it finds. */
async function checkIndex(client: Client, schema: string, oid: string): Promise<string[]> {
  try {
    await client.query(`SELECT ${schema}.bt_index_check($1::oid::regclass, true)`, [oid]);
    return [];
  } catch (error) {
    if (!isStatementError(error)) throw error;
    return [`ERROR: ${error.message}`];
  }
}

/** The runbook's query: the restored copy has conversations, up to some latest time. */
async function checkConversations(
  client: Client,
  database: string,
  damaged: Set<string>,
): Promise<{ check: DrCheck; count: number | null; latest: string | null }> {
  const failed = (detail: string) => ({
    check: { name: 'conversations', status: 'failed' as const, detail },
    count: null,
    latest: null,
  });
  const { rows: found } = await client.query<{ schema: string | null }>(
    `SELECT n.nspname AS schema FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = to_regclass('conversations')`,
  );
  const schema = found[0]?.schema;
  if (schema === undefined || schema === null) return failed('table conversations does not exist');
  if (damaged.has(`${database}.${schema}.conversations`)) {
    return failed('not read: amcheck found conversations damaged');
  }
  let rows: { n: string; latest: Date | null }[];
  try {
    ({ rows } = await client.query<{ n: string; latest: Date | null }>(
      'SELECT count(*) AS n, max(created_at) AS latest FROM conversations',
    ));
  } catch (error) {
    if (!isStatementError(error)) throw error;
    return failed(`ERROR: ${error.message}`);
  }
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

interface ExpectedTable {
  /** As the snapshot recorded it: `db.schema.table` or `schema.table`. */
  key: string;
  database: string;
  /** `db.schema.table`. */
  full: string;
  rows: number | undefined;
  hash: string | undefined;
}

interface ExpectedTables {
  tables: ExpectedTable[];
  /** Recorded names that are not `[database.]schema.table`. */
  invalid: string[];
  recordedCounts: boolean;
  recordedHashes: boolean;
}

/** The snapshot's record, per table; `schema.table` names a table of the endpoint's database. */
function expectedTables(input: DrChecksInput, defaultDatabase: string): ExpectedTables {
  const counts = input.expectedRowCounts ?? {};
  const hashes = input.expectedContentHashes ?? {};
  const result: ExpectedTables = {
    tables: [],
    invalid: [],
    recordedCounts: Object.keys(counts).length > 0,
    recordedHashes: Object.keys(hashes).length > 0,
  };
  for (const key of new Set([...Object.keys(counts), ...Object.keys(hashes)])) {
    const parts = key.split('.');
    const [database, schema, table] = parts.length === 2 ? [defaultDatabase, ...parts] : parts;
    if (parts.length < 2 || parts.length > 3 || !database || !schema || !table) {
      result.invalid.push(key);
      continue;
    }
    result.tables.push({
      key,
      database,
      full: `${database}.${schema}.${table}`,
      rows: counts[key],
      hash: hashes[key],
    });
  }
  return result;
}

type TableRead = { fingerprint: TableFingerprint } | { error: string };

interface TableReads {
  /** Every user table of the checked databases, `db.schema.table`. */
  tables: Map<string, TableRead>;
  /** Databases that could not be opened, with why. */
  unopened: Map<string, string>;
}

/**
 * Reads every user table of each database in full (fingerprints.ts: every column detoasted), in
 * one snapshot per database; tables amcheck found damaged are left unread.
 */
async function readTables(run: CheckRun, databases: string[], damaged: Set<string>): Promise<TableReads> {
  const reads: TableReads = { tables: new Map(), unopened: new Map() };
  for (const database of databases) {
    try {
      await run.open({ ...run.endpoint, database }, async (client) => {
        await beginFingerprints(client);
        try {
          for (const table of await userTables(client)) {
            const key = `${database}.${table.schema}.${table.name}`;
            if (damaged.has(key)) {
              reads.tables.set(key, { error: 'not read: amcheck found it damaged' });
              continue;
            }
            await client.query('SAVEPOINT table_read');
            try {
              reads.tables.set(key, { fingerprint: await fingerprintTable(client, table) });
              await client.query('RELEASE SAVEPOINT table_read');
            } catch (error) {
              if (!isStatementError(error)) throw error;
              await client.query('ROLLBACK TO SAVEPOINT table_read');
              reads.tables.set(key, { error: `ERROR: ${error.message}` });
            }
            if (run.signal?.aborted) throw run.signal.reason;
          }
        } finally {
          await client.query('ROLLBACK');
        }
      });
    } catch (error) {
      if (!isStatementError(error)) throw error;
      reads.unopened.set(database, error.message);
    }
  }
  return reads;
}

/** What a recorded table's read says when it gives no fingerprint: missing, unopened or unread. */
function unreadable(table: ExpectedTable, reads: TableReads): string | undefined {
  const read = reads.tables.get(table.full);
  if (read !== undefined) return 'error' in read ? `could not be read (${read.error})` : undefined;
  const unopened = reads.unopened.get(table.database);
  return unopened === undefined ? 'missing' : `database ${table.database} could not be opened (${unopened})`;
}

/** Every recorded table's row count against the copy's. */
function checkRowCounts(expected: ExpectedTables, reads: TableReads): DrCheck {
  if (!expected.recordedCounts) {
    return {
      name: 'row-counts',
      status: 'skipped',
      detail: 'no row counts were recorded with this snapshot',
    };
  }
  const mismatches = expected.invalid.map((key) => `${key}: not a [database.]schema.table name`);
  let total = expected.invalid.length;
  for (const table of expected.tables) {
    if (table.rows === undefined) continue;
    total++;
    const problem = unreadable(table, reads);
    const read = reads.tables.get(table.full);
    if (problem === 'missing') mismatches.push(`${table.key}: missing (expected ${table.rows} rows)`);
    else if (problem !== undefined) mismatches.push(`${table.key}: ${problem}`);
    else if (read !== undefined && 'fingerprint' in read && read.fingerprint.rows !== table.rows) {
      mismatches.push(`${table.key}: ${read.fingerprint.rows} rows, expected ${table.rows}`);
    }
  }
  return mismatches.length === 0
    ? { name: 'row-counts', status: 'passed', detail: `${total} tables match the snapshot's row counts` }
    : {
        name: 'row-counts',
        status: 'failed',
        detail: `${mismatches.length} of ${total} tables differ: ${mismatches.join('; ')}`,
      };
}

/**
 * Every table read in full; each recorded table's content hash against the copy's. Without
 * recorded hashes (RDS) it still proves every table reads.
 */
function checkContents(expected: ExpectedTables, reads: TableReads): DrCheck {
  const problems: string[] = [];
  let rows = 0;
  for (const [key, read] of reads.tables) {
    if ('error' in read) problems.push(`${key}: could not be read (${read.error})`);
    else rows += read.fingerprint.rows;
  }
  for (const [database, why] of reads.unopened)
    problems.push(`database ${database} could not be opened (${why})`);
  const readAll = `${reads.tables.size} tables, ${rows} rows, read in full with TOAST detoasted`;
  if (!expected.recordedHashes) {
    return problems.length === 0
      ? {
          name: 'table-contents',
          status: 'passed',
          detail: `${readAll}; no content hashes were recorded with this snapshot to compare`,
        }
      : { name: 'table-contents', status: 'failed', detail: problems.join('; ') };
  }
  let compared = 0;
  for (const table of expected.tables) {
    if (table.hash === undefined) continue;
    compared++;
    const read = reads.tables.get(table.full);
    // Unreadable tables and databases are listed above already.
    if (read === undefined && !reads.unopened.has(table.database)) problems.push(`${table.key}: missing`);
    if (read === undefined || 'error' in read || read.fingerprint.hash === table.hash) continue;
    const same = read.fingerprint.rows === table.rows ? ', as many as recorded' : '';
    problems.push(`${table.key}: contents differ from the snapshot (${read.fingerprint.rows} rows${same})`);
  }
  return problems.length === 0
    ? {
        name: 'table-contents',
        status: 'passed',
        detail: `${compared} tables match the snapshot's content hashes (${readAll})`,
      }
    : {
        name: 'table-contents',
        status: 'failed',
        detail: `${problems.length} differ: ${problems.join('; ')}`,
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
