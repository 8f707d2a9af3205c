/**
 * Recall of pgvector indexes: the share of the exact k nearest neighbours (a sequential scan and
 * sort, index scans disabled) that the index scan returns, over stored vectors used as queries.
 * An approximate index can lose neighbours silently (after many updates and deletes, with a low
 * `hnsw.ef_search`, or under a filter that the index applies only after its search), so the
 * vectorRecall workflow measures it on a schedule and the vectorIndex workflow measures a rebuilt
 * index before it takes the old one's place.
 *
 * What is measured is what a query gets: the server's configured `hnsw.ef_search` /
 * `ivfflat.probes` (unless the input sets one), the index the planner chooses for the column, and,
 * with a filter column, the filtered query with iterative scans off and on (pgvector 0.8.0).
 */
import type { Client } from 'pg';

import { InvalidInputError, TransientError } from '../../workflows/lib/errors';
import { backendCanceller, heartbeatWhile } from '../heartbeat';
import type { ReadRoute } from './connect';
import { OPERATOR_BY_OPCLASS } from './health';
import type { InstanceInput, OnInstance, OnReadOnly } from './on-instance';
import type { VectorIndexPlan } from './vector-index';

export interface RecallOptions {
  /** Stored vectors used as queries. */
  sampleSize: number;
  /** Neighbours compared per query. */
  k: number;
  /** `hnsw.ef_search` for the index scans; unset: the server's setting. */
  efSearch?: number;
  /** A column to filter on (`= the sampled row's value`) for the filtered recall; unset: none. */
  filterColumn?: string;
}

export interface FilteredRecall {
  column: string;
  /** Iterative scans off: the index's ef_search candidates, then the filter. */
  recall: number;
  /** `hnsw.iterative_scan` / `ivfflat.iterative_scan` = relaxed_order: the scan goes on until k pass. */
  recallIterative: number;
  /** Indexes the planner used for the filtered query (the vector index unless it found a better one). */
  indexUsed: string | null;
}

export interface IndexRecall {
  schema: string;
  table: string;
  column: string;
  index: string;
  method: 'hnsw' | 'ivfflat';
  operator: string;
  k: number;
  queries: number;
  /** e.g. `hnsw.ef_search=40`, `ivfflat.probes=1`. */
  searchSetting: string;
  recall: number;
  /** Absent when no filter column was given or the table has no such column. */
  filtered?: FilteredRecall;
}

export interface SkippedIndex {
  schema: string;
  index: string;
  reason: string;
}

export interface RecallReport {
  measuredAt: string;
  readFrom: ReadRoute;
  indexes: IndexRecall[];
  skipped: SkippedIndex[];
}

interface VectorIndexRow {
  schema: string;
  table: string;
  column: string;
  index: string;
  method: 'hnsw' | 'ivfflat';
  opclass: string;
  valid: boolean;
  rows: number;
}

/** The scan settings of each method: how wide it searches, and its iterative scan switch. */
const SEARCH = {
  hnsw: { setting: 'hnsw.ef_search', iterative: 'hnsw.iterative_scan' },
  ivfflat: { setting: 'ivfflat.probes', iterative: 'ivfflat.iterative_scan' },
} as const;

const LOCK_TIMEOUT = '2s';

export function createRecallActivities(onInstance: OnInstance, onReadOnly: OnReadOnly) {
  return {
    /**
     * Recall of every valid vector index the planner uses, on the read replica when one is
     * configured (and within its lag bound). Indexes the planner passes over for another on the
     * same column are listed as skipped, with the one it chose.
     */
    async measureVectorRecall(input: InstanceInput & RecallOptions): Promise<RecallReport> {
      return onReadOnly(input.instanceId, async ({ client, route, sameServer }) => {
        const onCancel = await backendCanceller(client, sameServer);
        return heartbeatWhile(
          async (signal) => {
            const all = await vectorIndexes(client);
            const indexes: IndexRecall[] = [];
            const skipped: SkippedIndex[] = all
              .filter((i) => !i.valid)
              .map((i) => ({ schema: i.schema, index: i.index, reason: 'INVALID: not used by queries' }));
            const groups = new Map<string, VectorIndexRow[]>();
            for (const index of all.filter((i) => i.valid)) {
              const key = `${index.schema}.${index.table}.${index.column}.${operatorOf(index)}`;
              groups.set(key, [...(groups.get(key) ?? []), index]);
            }
            for (const group of groups.values()) {
              if (signal.aborted) throw signal.reason;
              const measured = await measureGroup(client, group, input);
              if (measured === undefined) {
                skipped.push(
                  ...group.map((i) => ({
                    schema: i.schema,
                    index: i.index,
                    reason: 'the table has no vectors to sample',
                  })),
                );
                continue;
              }
              indexes.push(measured);
              for (const other of group.filter((i) => i.index !== measured.index)) {
                skipped.push({
                  schema: other.schema,
                  index: other.index,
                  reason: `the planner uses ${measured.index} for ${operatorOf(other)} queries on ${other.table}.${other.column}`,
                });
              }
            }
            return { measuredAt: new Date().toISOString(), readFrom: route, indexes, skipped };
          },
          { onCancel },
        );
      });
    },

    /**
     * Recall of a rebuild's new index (`plan.buildName`) before it takes the old one's place. The
     * planner would keep choosing the old index, so the index scans run in a transaction that
     * drops the column's other vector indexes and is rolled back: it holds the table's lock for
     * the index scans only (milliseconds each), waiting at most 2 s for it (then retried). The
     * exact answers are computed before, outside that transaction.
     */
    async checkCandidateRecall(input: { plan: VectorIndexPlan } & RecallOptions): Promise<IndexRecall> {
      const { plan } = input;
      return onInstance(plan.instanceId, async (client) => {
        const onCancel = await backendCanceller(client, (fn) => onInstance(plan.instanceId, fn));
        return heartbeatWhile(
          async () => {
            const all = await vectorIndexes(client);
            const candidate = all.find((i) => i.schema === plan.schema && i.index === plan.buildName);
            if (candidate === undefined || !candidate.valid) {
              throw new InvalidInputError(
                `the new index ${plan.schema}.${plan.buildName} is missing or not valid`,
              );
            }
            const others = all.filter(
              (i) =>
                i.schema === plan.schema &&
                i.table === plan.table &&
                i.column === plan.column &&
                i.index !== plan.buildName,
            );
            const probes = await sample(client, candidate, input.sampleSize, undefined);
            if (probes.length === 0) {
              return result(candidate, input, 0, 1, await searchSetting(client, candidate, input));
            }
            const exact = await inSnapshot(client, () =>
              exactAnswers(client, candidate, probes, input.k, undefined),
            );
            let scanned: string[][] = [];
            let setting = '';
            await client.query('BEGIN');
            try {
              await client.query(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
              for (const other of others) {
                await client.query(`DROP INDEX ${qualified(client, other.schema, other.index)}`);
              }
              setting = await searchSetting(client, candidate, input);
              const used = await planIndex(client, candidate, probes[0]!.vector, input.k, undefined);
              if (used !== candidate.index) {
                throw new InvalidInputError(
                  `the planner does not use ${candidate.index} for the kNN query (it uses ${used ?? 'no index'})`,
                );
              }
              scanned = await indexAnswers(client, candidate, probes, input.k, undefined);
            } catch (error) {
              if ((error as { code?: string }).code === '55P03') {
                throw new TransientError(
                  `the recall check waited more than ${LOCK_TIMEOUT} for ${plan.table}'s lock; retrying`,
                );
              }
              throw error;
            } finally {
              await client.query('ROLLBACK');
            }
            return result(candidate, input, probes.length, overlap(exact, scanned), setting);
          },
          { onCancel, details: { index: plan.buildName } },
        );
      });
    },
  };
}

function result(
  index: VectorIndexRow,
  options: RecallOptions,
  queries: number,
  recall: number,
  setting: string,
): IndexRecall {
  return {
    schema: index.schema,
    table: index.table,
    column: index.column,
    index: index.index,
    method: index.method,
    operator: operatorOf(index),
    k: options.k,
    queries,
    searchSetting: setting,
    recall,
  };
}

function operatorOf(index: Pick<VectorIndexRow, 'opclass'>): string {
  return OPERATOR_BY_OPCLASS[index.opclass] ?? '<->';
}

function qualified(client: Client, schema: string, name: string): string {
  return `${client.escapeIdentifier(schema)}.${client.escapeIdentifier(name)}`;
}

async function vectorIndexes(client: Client): Promise<VectorIndexRow[]> {
  const { rows } = await client.query<VectorIndexRow>(
    `SELECT n.nspname AS schema, t.relname AS table, a.attname AS column, c.relname AS index,
            am.amname AS method, op.opcname AS opclass, i.indisvalid AS valid,
            greatest(t.reltuples, 0)::float8 AS rows
       FROM pg_index i
       JOIN pg_class c ON c.oid = i.indexrelid
       JOIN pg_class t ON t.oid = i.indrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_am am ON am.oid = c.relam
       JOIN pg_opclass op ON op.oid = i.indclass[0]
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
      WHERE am.amname IN ('hnsw', 'ivfflat')
      ORDER BY n.nspname, t.relname, c.relname`,
  );
  return rows;
}

interface Probe {
  vector: string;
  filter: string | null;
}

/** Measures the index the planner uses among `group` (same table, column and operator). */
async function measureGroup(
  client: Client,
  group: VectorIndexRow[],
  options: RecallOptions,
): Promise<IndexRecall | undefined> {
  const first = group[0]!;
  const filterColumn =
    options.filterColumn !== undefined && (await hasColumn(client, first, options.filterColumn))
      ? options.filterColumn
      : undefined;
  return inSnapshot(client, async () => {
    const probes = await sample(client, first, options.sampleSize, filterColumn);
    if (probes.length === 0) return undefined;
    const setting = await searchSetting(client, first, options);
    const used = await planIndex(client, first, probes[0]!.vector, options.k, undefined);
    const index = group.find((i) => i.index === used) ?? first;
    const exact = await exactAnswers(client, index, probes, options.k, undefined);
    const scanned = await indexAnswers(client, index, probes, options.k, undefined);
    const measured = result(index, options, probes.length, overlap(exact, scanned), setting);
    if (filterColumn === undefined) return measured;
    const filteredExact = await exactAnswers(client, index, probes, options.k, filterColumn);
    const filteredUsed = await planIndex(
      client,
      index,
      probes[0]!.vector,
      options.k,
      filterColumn,
      probes[0]!.filter,
    );
    const plain = await indexAnswers(client, index, probes, options.k, filterColumn);
    const { iterative } = SEARCH[index.method];
    await client.query(`SET LOCAL ${iterative} = relaxed_order`);
    const iterated = await indexAnswers(client, index, probes, options.k, filterColumn);
    await client.query(`SET LOCAL ${iterative} = off`);
    measured.filtered = {
      column: filterColumn,
      recall: overlap(filteredExact, plain),
      recallIterative: overlap(filteredExact, iterated),
      indexUsed: filteredUsed,
    };
    return measured;
  });
}

async function hasColumn(client: Client, index: VectorIndexRow, column: string): Promise<boolean> {
  const { rowCount } = await client.query(
    `SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND attnum > 0 AND NOT attisdropped`,
    [qualified(client, index.schema, index.table), column],
  );
  return (rowCount ?? 0) > 0;
}

/** Runs `fn` in one read-only REPEATABLE READ transaction: the exact and index answers see the same rows. */
async function inSnapshot<T>(client: Client, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    return await fn();
  } finally {
    await client.query('ROLLBACK');
  }
}

/**
 * Up to `size` stored vectors (and their filter values), from a block sample of about 10 × size
 * rows; a sample that falls short (a small table, stale statistics) is made up from the table's start.
 */
async function sample(
  client: Client,
  index: VectorIndexRow,
  size: number,
  filterColumn: string | undefined,
): Promise<Probe[]> {
  const percent = index.rows > 0 ? Math.min(100, (100 * size * 10) / index.rows) : 100;
  const column = client.escapeIdentifier(index.column);
  const filter = filterColumn === undefined ? 'NULL' : `${client.escapeIdentifier(filterColumn)}::text`;
  const from = (sampled: boolean) =>
    `SELECT ${column}::text AS vector, ${filter} AS filter
       FROM ${qualified(client, index.schema, index.table)} ${sampled ? 'TABLESAMPLE SYSTEM ($2)' : ''}
      WHERE ${column} IS NOT NULL
      LIMIT $1`;
  const { rows } = await client.query<Probe>(from(true), [size, percent]);
  if (rows.length === size || percent === 100) return rows;
  return (await client.query<Probe>(from(false), [size])).rows;
}

async function searchSetting(client: Client, index: VectorIndexRow, options: RecallOptions): Promise<string> {
  const { setting } = SEARCH[index.method];
  if (options.efSearch !== undefined && index.method === 'hnsw') {
    await client.query(`SELECT set_config('hnsw.ef_search', $1, true)`, [String(options.efSearch)]);
  }
  const { rows } = await client.query<{ value: string | null }>('SELECT current_setting($1, true) AS value', [
    setting,
  ]);
  return `${setting}=${rows[0]?.value ?? 'default'}`;
}

function knnQuery(
  client: Client,
  index: VectorIndexRow,
  k: number,
  filterColumn: string | undefined,
): string {
  const where = filterColumn === undefined ? '' : `WHERE ${client.escapeIdentifier(filterColumn)} = $2`;
  return (
    `SELECT ctid::text AS id FROM ${qualified(client, index.schema, index.table)} ${where} ` +
    `ORDER BY ${client.escapeIdentifier(index.column)} ${operatorOf(index)} $1::vector LIMIT ${Number(k)}`
  );
}

const params = (probe: Probe, filterColumn: string | undefined) =>
  filterColumn === undefined ? [probe.vector] : [probe.vector, probe.filter];

/** The exact answers: index scans off, so a sequential scan and a sort. */
const exactAnswers = answersWithout(['enable_indexscan', 'enable_bitmapscan', 'enable_indexonlyscan']);

/** The index's answers: sequential scans and sorts discouraged, so the planner takes the vector index. */
const indexAnswers = answersWithout(['enable_seqscan', 'enable_sort']);

/** The kNN answers for each probe with these planner settings off for the time of the queries. */
function answersWithout(settings: string[]) {
  const set = (value: 'on' | 'off') => settings.map((name) => `SET LOCAL ${name} = ${value}`).join('; ');
  return async (
    client: Client,
    index: VectorIndexRow,
    probes: Probe[],
    k: number,
    filterColumn: string | undefined,
  ): Promise<string[][]> => {
    await client.query(set('off'));
    try {
      const answers: string[][] = [];
      for (const probe of probes) {
        const { rows } = await client.query<{ id: string }>(
          knnQuery(client, index, k, filterColumn),
          params(probe, filterColumn),
        );
        answers.push(rows.map((r) => r.id));
      }
      return answers;
    } finally {
      await client.query(set('on'));
    }
  };
}

/** The index the planner scans for the kNN query (null: none), as the index pass runs it. */
async function planIndex(
  client: Client,
  index: VectorIndexRow,
  vector: string,
  k: number,
  filterColumn: string | undefined,
  filterValue: string | null = null,
): Promise<string | null> {
  await client.query(`SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off`);
  try {
    const { rows } = await client.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN ${knnQuery(client, index, k, filterColumn)}`,
      filterColumn === undefined ? [vector] : [vector, filterValue],
    );
    const plan = rows.map((row) => row['QUERY PLAN']).join('\n');
    return /Index (?:Only )?Scan using (\S+)/.exec(plan)?.[1] ?? null;
  } finally {
    await client.query(`SET LOCAL enable_seqscan = on; SET LOCAL enable_sort = on`);
  }
}

/** Share of the exact neighbours the index returned, over every query. */
function overlap(exact: string[][], scanned: string[][]): number {
  let wanted = 0;
  let found = 0;
  for (const [i, answer] of exact.entries()) {
    const got = new Set(scanned[i] ?? []);
    wanted += answer.length;
    found += answer.filter((id) => got.has(id)).length;
  }
  return wanted === 0 ? 1 : Math.round((found / wanted) * 10_000) / 10_000;
}
