/**
 * Builds and rebuilds pgvector indexes (HNSW, IVFFlat) for the vectorIndex workflow, each step an
 * activity a retry can repeat. A build runs `CREATE INDEX CONCURRENTLY` on a connection of its own,
 * outside the migrations' statement_timeout, with `maintenance_work_mem` sized from an estimate of
 * the graph and bounded by a share of the instance's memory. Index names are deterministic, so a
 * retry finds its own index: valid, it is done; INVALID (a build that died), it is dropped and built
 * again. A rebuild builds `<name>_dbops_new` beside the index, swaps the names in one short
 * transaction and drops the old one concurrently.
 *
 * Why a share of memory and not the whole graph: a build that takes the instance's memory starves
 * the queries it serves. Above the bound the build still works, but spills (pgvector then builds the
 * rest of the graph on disk, many times slower), so the plan warns.
 */
import type { Client } from 'pg';

import {
  AlreadyExistsError,
  InvalidInputError,
  NotFoundError,
  TransientError,
} from '../../workflows/lib/errors';
import { backendCanceller, heartbeatWhile } from '../heartbeat';
import type { InstanceInput, OnInstance } from './on-instance';

export type VectorIndexMethod = 'hnsw' | 'ivfflat';
export type VectorDistance = 'cosine' | 'l2' | 'ip';

/** The operator class of each distance (a rebuild keeps the index's own). */
export const OPCLASS_BY_DISTANCE: Record<VectorDistance, string> = {
  cosine: 'vector_cosine_ops',
  l2: 'vector_l2_ops',
  ip: 'vector_ip_ops',
};

/** Storage parameters of the index: `m`, `ef_construction` (HNSW) or `lists` (IVFFlat). */
export interface VectorIndexParams {
  m?: number;
  efConstruction?: number;
  lists?: number;
}

export interface VectorIndexRequest extends InstanceInput {
  action: 'build' | 'rebuild';
  /** `table` or `schema.table`. */
  table: string;
  column: string;
  method: VectorIndexMethod;
  params: VectorIndexParams;
  /** For a build; default cosine. A rebuild keeps the operator class of the index it replaces. */
  distance?: VectorDistance;
  /** Rebuild: the index to rebuild when the column has several of `method`. */
  index?: string;
  /** `max_parallel_maintenance_workers` for the build; default the server's setting. */
  parallelWorkers?: number;
}

/** What a build needs, worked out once by `planVectorIndex` and passed to every later step. */
export interface VectorIndexPlan {
  instanceId?: string;
  action: 'build' | 'rebuild';
  schema: string;
  table: string;
  column: string;
  dimensions: number;
  method: VectorIndexMethod;
  opclass: string;
  /** Every parameter, defaults filled in. */
  params:
    Required<Pick<VectorIndexParams, 'm' | 'efConstruction'>> | Required<Pick<VectorIndexParams, 'lists'>>;
  /** The index users query: built under this name, or (rebuild) the one replaced. */
  name: string;
  /** The index the build creates: `name`, or for a rebuild `<name>_dbops_new`. */
  buildName: string;
  /** Rebuild: what the replaced index is called between the swap and its drop. */
  oldName: string;
  /** The statement the build runs (identifiers quoted). */
  createStatement: string;
  memory: BuildMemory;
  parallelWorkers: number;
}

/** How `maintenance_work_mem` was sized, in bytes; all of it goes into results and logs. */
export interface BuildMemory {
  rows: number;
  /** rows × (dimensions × 4 + 8) for the vectors, plus rows × m × 2 × 8 for HNSW's neighbour lists. */
  estimatedBytes: number;
  /** The instance's memory: configured, or four times shared_buffers (RDS's default quarter). */
  instanceBytes: number;
  instanceBytesFrom: 'configured' | 'shared_buffers';
  share: number;
  /** instanceBytes × share: the most a build may take. */
  boundBytes: number;
  maintenanceWorkMemBytes: number;
  /** The estimate is above the bound: the build will spill and be slower. */
  willSpill: boolean;
  /** Said in the plan, the workflow's log and the CLI when the build will spill. */
  warning?: string;
}

export interface BuildProgress {
  /** pg_stat_progress_create_index's phase, e.g. `building index: loading tuples`. */
  phase: string;
  blocksDone: number;
  blocksTotal: number;
  tuplesDone: number;
  tuplesTotal: number;
  pid: number;
}

export interface BuildOutcome {
  index: string;
  /** `built`, or `found` when a valid index of the same definition was there (a retried build). */
  outcome: 'built' | 'found';
  /** INVALID leftovers of an earlier attempt dropped before building. */
  droppedInvalid: boolean;
  durationMs: number;
  sizeBytes: number;
}

export interface VectorIndexSettings {
  /** Share of the instance's memory a build's maintenance_work_mem may take (0 < share <= 0.9). */
  memoryShare: number;
  /** The instance's memory in bytes; unset: four times shared_buffers. */
  instanceMemoryBytes?: number;
}

export const DEFAULT_VECTOR_INDEX_SETTINGS: VectorIndexSettings = { memoryShare: 0.25 };

/** pgvector's limits (0.8.0): HNSW m 2-100, ef_construction 4-1000 and at least 2 × m; lists 1-32768. */
export const PARAM_RANGES = {
  m: { min: 2, max: 100, default: 16 },
  efConstruction: { min: 4, max: 1000, default: 64 },
  lists: { min: 1, max: 32768, default: 100 },
} as const;

/** Both methods index at most 2000 dimensions of `vector`. */
const MAX_DIMENSIONS = 2000;
const MIN_MAINTENANCE_WORK_MEM = 64 * 1024 * 1024;
/** The swap waits at most this long for its locks, then the activity is retried. */
const SWAP_LOCK_TIMEOUT = '2s';
/** A build whose client is gone (a killed worker) stops within this. */
const CONNECTION_CHECK = '2s';

const MIB = 1024 * 1024;
const mib = (bytes: number) => `${Math.round(bytes / MIB)} MB`;

export function createVectorIndexActivities(onInstance: OnInstance, settings: VectorIndexSettings) {
  return {
    /**
     * Checks the request against the database (the table and column exist, the column is a
     * `vector` of at most 2000 dimensions; for a rebuild, the index exists) and sizes the build.
     * Throws InvalidInputError / NotFoundError naming the problem; changes nothing.
     */
    async planVectorIndex(input: VectorIndexRequest): Promise<VectorIndexPlan> {
      return onInstance(input.instanceId, (client) => plan(client, input, settings));
    },

    /**
     * Builds `plan.buildName` concurrently on a connection of its own, heartbeating every second.
     * Finds its own index first: valid and of the same definition, done; INVALID, dropped (an
     * earlier attempt's build still running is cancelled first) and built again. Cancelled, it
     * cancels the build's backend; the workflow then drops the INVALID leftover.
     */
    async buildVectorIndex(input: { plan: VectorIndexPlan }): Promise<BuildOutcome> {
      const { plan } = input;
      return onInstance(plan.instanceId, async (client) => {
        const started = Date.now();
        let droppedInvalid = false;
        const existing = await findIndex(client, plan.schema, plan.buildName);
        if (existing !== undefined) {
          if (existing.valid) {
            checkSameDefinition(existing, plan);
            return {
              index: plan.buildName,
              outcome: 'found',
              droppedInvalid,
              durationMs: 0,
              sizeBytes: existing.sizeBytes,
            };
          }
          await cancelOtherBuilds(client, plan);
          await dropConcurrently(client, plan.schema, plan.buildName);
          droppedInvalid = true;
        }
        await client.query(`SET client_connection_check_interval = '${CONNECTION_CHECK}'`);
        // Outside the migrations' limits: a build takes as long as it takes, and waits for the
        // transactions older than it as CREATE INDEX CONCURRENTLY must.
        await client.query(`SET statement_timeout = 0`);
        await client.query(`SET lock_timeout = 0`);
        await client.query(
          `SET maintenance_work_mem = '${Math.floor(plan.memory.maintenanceWorkMemBytes / 1024)}kB'`,
        );
        await client.query(`SET max_parallel_maintenance_workers = ${plan.parallelWorkers}`);
        const onCancel = await backendCanceller(client, (fn) => onInstance(plan.instanceId, fn));
        await heartbeatWhile(
          async (signal) => {
            if (signal.aborted) throw signal.reason;
            await client.query(plan.createStatement);
          },
          { onCancel, details: { index: plan.buildName } },
        );
        const built = await findIndex(client, plan.schema, plan.buildName);
        return {
          index: plan.buildName,
          outcome: 'built',
          droppedInvalid,
          durationMs: Date.now() - started,
          sizeBytes: built?.sizeBytes ?? 0,
        };
      });
    },

    /** The build's row of pg_stat_progress_create_index, or null when no build of it runs. */
    async vectorIndexBuildProgress(input: { plan: VectorIndexPlan }): Promise<BuildProgress | null> {
      const { plan } = input;
      return onInstance(plan.instanceId, async (client) => {
        const { rows } = await client.query<BuildProgress>(
          `SELECT p.phase, p.blocks_done::float8 AS "blocksDone", p.blocks_total::float8 AS "blocksTotal",
                  p.tuples_done::float8 AS "tuplesDone", p.tuples_total::float8 AS "tuplesTotal", p.pid
             FROM pg_stat_progress_create_index p
             JOIN pg_class c ON c.oid = p.index_relid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relname = $2`,
          [plan.schema, plan.buildName],
        );
        return rows[0] ?? null;
      });
    },

    /**
     * Drops `name` when it is INVALID (what a cancelled or failed concurrent build leaves), after
     * cancelling a build of it still running; a valid index is never touched. Returns whether it dropped.
     */
    async dropInvalidVectorIndex(input: { plan: VectorIndexPlan }): Promise<boolean> {
      const { plan } = input;
      return onInstance(plan.instanceId, async (client) => {
        const existing = await findIndex(client, plan.schema, plan.buildName);
        if (existing === undefined || existing.valid) return false;
        await cancelOtherBuilds(client, plan);
        await dropConcurrently(client, plan.schema, plan.buildName);
        return true;
      });
    },

    /**
     * Rebuild: gives the new index the old one's name in one transaction (the old one becomes
     * `oldName`), waiting at most 2 s for the locks (then retried). Done already (a lost reply):
     * nothing to do.
     */
    async swapVectorIndex(input: { plan: VectorIndexPlan }): Promise<'swapped' | 'swapped-before'> {
      const { plan } = input;
      return onInstance(plan.instanceId, async (client) => {
        const fresh = await findIndex(client, plan.schema, plan.buildName);
        if (fresh === undefined) {
          const [current, old] = await Promise.all([
            findIndex(client, plan.schema, plan.name),
            findIndex(client, plan.schema, plan.oldName),
          ]);
          if (current !== undefined && old !== undefined) return 'swapped-before';
          throw new NotFoundError(
            `the new index ${plan.schema}.${plan.buildName} is gone: nothing to swap in`,
          );
        }
        if (!fresh.valid)
          throw new NotFoundError(`the new index ${plan.schema}.${plan.buildName} is not valid`);
        // A leftover of an earlier rebuild whose drop did not happen.
        await dropConcurrently(client, plan.schema, plan.oldName);
        const q = (name: string) =>
          `${client.escapeIdentifier(plan.schema)}.${client.escapeIdentifier(name)}`;
        try {
          await client.query('BEGIN');
          await client.query(`SET LOCAL lock_timeout = '${SWAP_LOCK_TIMEOUT}'`);
          await client.query(
            `ALTER INDEX ${q(plan.name)} RENAME TO ${client.escapeIdentifier(plan.oldName)}`,
          );
          await client.query(
            `ALTER INDEX ${q(plan.buildName)} RENAME TO ${client.escapeIdentifier(plan.name)}`,
          );
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined);
          if ((error as { code?: string }).code === '55P03') {
            throw new TransientError(
              `the swap waited more than ${SWAP_LOCK_TIMEOUT} for its locks on ${plan.table}; retrying`,
            );
          }
          throw error;
        }
        return 'swapped';
      });
    },

    /** Drops `name` concurrently when it exists (the replaced index after a swap, or a rejected candidate). */
    async dropVectorIndex(input: { plan: VectorIndexPlan; name: string }): Promise<boolean> {
      const { plan, name } = input;
      if (name !== plan.oldName && name !== plan.buildName) {
        throw new InvalidInputError(`only ${plan.oldName} or ${plan.buildName} may be dropped, not ${name}`);
      }
      return onInstance(plan.instanceId, async (client) => {
        if ((await findIndex(client, plan.schema, name)) === undefined) return false;
        await dropConcurrently(client, plan.schema, name);
        return true;
      });
    },
  };
}

interface FoundIndex {
  valid: boolean;
  tableOid: number;
  method: string;
  /** Column names the index covers, in order. */
  columns: string[];
  opclass: string;
  /** pg_class.reloptions, e.g. `m=16`. */
  options: string[];
  sizeBytes: number;
}

async function findIndex(client: Client, schema: string, name: string): Promise<FoundIndex | undefined> {
  const { rows } = await client.query<FoundIndex>(
    `SELECT i.indisvalid AS valid, i.indrelid::int8::float8 AS "tableOid", am.amname AS method,
            ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n)
                    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n) AS columns,
            op.opcname AS opclass, coalesce(c.reloptions, '{}') AS options,
            pg_relation_size(c.oid)::float8 AS "sizeBytes"
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_index i ON i.indexrelid = c.oid
       JOIN pg_am am ON am.oid = c.relam
       JOIN pg_opclass op ON op.oid = i.indclass[0]
      WHERE n.nspname = $1 AND c.relname = $2`,
    [schema, name],
  );
  return rows[0];
}

/** The storage options a plan gives its index, as pg_class.reloptions lists them. */
function expectedOptions(plan: VectorIndexPlan): string[] {
  return 'lists' in plan.params
    ? [`lists=${plan.params.lists}`]
    : [`m=${plan.params.m}`, `ef_construction=${plan.params.efConstruction}`];
}

function checkSameDefinition(found: FoundIndex, plan: VectorIndexPlan): void {
  const same =
    found.method === plan.method &&
    found.columns.length === 1 &&
    found.columns[0] === plan.column &&
    found.opclass === plan.opclass &&
    [...found.options].sort().join(',') === expectedOptions(plan).sort().join(',');
  if (!same) {
    throw new AlreadyExistsError(
      `index ${plan.schema}.${plan.buildName} exists with another definition ` +
        `(${found.method} on ${found.columns.join(', ')} ${found.opclass} ${found.options.join(', ')}); ` +
        `drop or rename it, or rebuild it with dbops index rebuild`,
    );
  }
}

/** Cancels another session's build of the plan's index: a lost attempt's, whose worker is gone. */
async function cancelOtherBuilds(client: Client, plan: VectorIndexPlan): Promise<void> {
  await client.query(
    `SELECT pg_cancel_backend(p.pid)
       FROM pg_stat_progress_create_index p
       JOIN pg_class c ON c.oid = p.index_relid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND p.pid <> pg_backend_pid()`,
    [plan.schema, plan.buildName],
  );
}

async function dropConcurrently(client: Client, schema: string, name: string): Promise<void> {
  await client.query(`SET statement_timeout = 0`);
  await client.query(
    `DROP INDEX CONCURRENTLY IF EXISTS ${client.escapeIdentifier(schema)}.${client.escapeIdentifier(name)}`,
  );
}

/** `<base><suffix>` within Postgres' 63-byte names. */
function suffixed(base: string, suffix: string): string {
  return `${base.slice(0, 63 - suffix.length)}${suffix}`;
}

interface ColumnRow {
  schema: string;
  table: string;
  type: string | null;
  dimensions: number;
  rows: number;
}

async function plan(
  client: Client,
  input: VectorIndexRequest,
  settings: VectorIndexSettings,
): Promise<VectorIndexPlan> {
  const [schemaPart, tablePart] = input.table.includes('.')
    ? input.table.split('.')
    : [undefined, input.table];
  const { rows: tables } = await client.query<{ schema: string; table: string; oid: number }>(
    `SELECT n.nspname AS schema, c.relname AS table, c.oid::int8::float8 AS oid
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND c.relname = $1
        AND ($2::text IS NULL AND n.nspname NOT IN ('pg_catalog', 'information_schema') OR n.nspname = $2)`,
    [tablePart, schemaPart ?? null],
  );
  if (tables.length === 0) throw new InvalidInputError(`table ${JSON.stringify(input.table)} does not exist`);
  if (tables.length > 1) {
    throw new InvalidInputError(
      `table ${JSON.stringify(input.table)} is in several schemas: name it as schema.table`,
    );
  }
  const found = tables[0]!;
  const { rows: columns } = await client.query<ColumnRow>(
    `SELECT $2::text AS schema, $3::text AS table,
            CASE WHEN t.typname IS NULL THEN NULL ELSE t.typname END AS type,
            coalesce(a.atttypmod, -1) AS dimensions,
            greatest(c.reltuples, 0)::float8 AS rows
       FROM pg_class c
       LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $1 AND a.attnum > 0 AND NOT a.attisdropped
       LEFT JOIN pg_type t ON t.oid = a.atttypid
      WHERE c.oid = $4::int8::oid`,
    [input.column, found.schema, found.table, found.oid],
  );
  const column = columns[0]!;
  const where = `${found.schema}.${found.table}`;
  if (column.type === null)
    throw new InvalidInputError(`column ${JSON.stringify(input.column)} does not exist in ${where}`);
  if (column.type !== 'vector') {
    throw new InvalidInputError(
      `column ${where}.${input.column} is of type ${column.type}, not vector: only vector columns get HNSW or IVFFlat indexes`,
    );
  }
  if (column.dimensions <= 0) {
    throw new InvalidInputError(
      `column ${where}.${input.column} has no dimensions (declare it as vector(N))`,
    );
  }
  if (column.dimensions > MAX_DIMENSIONS) {
    throw new InvalidInputError(
      `column ${where}.${input.column} has ${column.dimensions} dimensions; ${input.method} indexes at most ${MAX_DIMENSIONS}`,
    );
  }

  const q = (name: string) => client.escapeIdentifier(name);
  let name: string;
  let opclass: string;
  let buildName: string;
  /** A rebuild keeps the storage parameters it is not given. */
  let current: Record<string, string> = {};
  if (input.action === 'rebuild') {
    const { rows: indexes } = await client.query<{ name: string; opclass: string; options: string[] }>(
      `SELECT c.relname AS name, op.opcname AS opclass, coalesce(c.reloptions, '{}') AS options
         FROM pg_index i
         JOIN pg_class c ON c.oid = i.indexrelid
         JOIN pg_am am ON am.oid = c.relam
         JOIN pg_opclass op ON op.oid = i.indclass[0]
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = $1::oid AND a.attname = $2 AND am.amname = $3
          AND c.relname NOT LIKE '%\\_dbops\\_new' AND c.relname NOT LIKE '%\\_dbops\\_old'
        ORDER BY c.relname`,
      [found.oid, input.column, input.method],
    );
    const chosen = input.index === undefined ? indexes : indexes.filter((i) => i.name === input.index);
    if (chosen.length === 0) {
      throw new NotFoundError(
        input.index === undefined
          ? `${where}.${input.column} has no ${input.method} index to rebuild (dbops index build makes one)`
          : `${where}.${input.column} has no ${input.method} index named ${input.index}` +
              (indexes.length > 0 ? ` (it has ${indexes.map((i) => i.name).join(', ')})` : ''),
      );
    }
    if (chosen.length > 1) {
      throw new InvalidInputError(
        `${where}.${input.column} has several ${input.method} indexes (${chosen.map((i) => i.name).join(', ')}): name one with --index`,
      );
    }
    name = chosen[0]!.name;
    opclass = chosen[0]!.opclass;
    current = Object.fromEntries(chosen[0]!.options.map((option) => option.split('=') as [string, string]));
    buildName = suffixed(name, '_dbops_new');
  } else {
    name = suffixed(`${found.table}_${input.column}`, `_${input.method}_idx`);
    opclass = OPCLASS_BY_DISTANCE[input.distance ?? 'cosine'];
    buildName = name;
  }

  let params: VectorIndexPlan['params'];
  if (input.method === 'hnsw') {
    const m = input.params.m ?? numberOr(current.m, PARAM_RANGES.m.default);
    const efConstruction =
      input.params.efConstruction ?? numberOr(current.ef_construction, PARAM_RANGES.efConstruction.default);
    if (efConstruction < 2 * m) {
      throw new InvalidInputError(`ef_construction ${efConstruction} must be at least 2 × m (${2 * m})`);
    }
    params = { m, efConstruction };
  } else {
    params = { lists: input.params.lists ?? numberOr(current.lists, PARAM_RANGES.lists.default) };
  }
  const withClause =
    'lists' in params
      ? `lists = ${params.lists}`
      : `m = ${params.m}, ef_construction = ${params.efConstruction}`;

  const { rows: serverRows } = await client.query<{
    sharedBuffers: number;
    workers: number;
    maxWorkers: number;
  }>(
    `SELECT (SELECT setting::float8 * pg_size_bytes(coalesce(unit, 'B')) FROM pg_settings WHERE name = 'shared_buffers') AS "sharedBuffers",
            current_setting('max_parallel_maintenance_workers')::int AS workers,
            current_setting('max_worker_processes')::int AS "maxWorkers"`,
  );
  const server = serverRows[0]!;
  if (input.parallelWorkers !== undefined && input.parallelWorkers > server.maxWorkers) {
    throw new InvalidInputError(
      `parallelWorkers ${input.parallelWorkers} is above the server's max_worker_processes ${server.maxWorkers}`,
    );
  }
  const memory = sizeMemory(
    column.rows,
    column.dimensions,
    params,
    settings,
    server.sharedBuffers,
    input.method,
  );

  return {
    ...(input.instanceId === undefined ? {} : { instanceId: input.instanceId }),
    action: input.action,
    schema: found.schema,
    table: found.table,
    column: input.column,
    dimensions: column.dimensions,
    method: input.method,
    opclass,
    params,
    name,
    buildName,
    oldName: suffixed(name, '_dbops_old'),
    createStatement:
      `CREATE INDEX CONCURRENTLY ${q(buildName)} ON ${q(found.schema)}.${q(found.table)} ` +
      `USING ${input.method} (${q(input.column)} ${opclass}) WITH (${withClause})`,
    memory,
    parallelWorkers: input.parallelWorkers ?? server.workers,
  };
}

function numberOr(value: string | undefined, fallback: number): number {
  return value === undefined ? fallback : Number(value);
}

/**
 * The graph's size: every vector (4 bytes a dimension plus its 8-byte header) and, for HNSW, the
 * neighbour lists of layer 0 (2 × m neighbours of 8 bytes each; the upper layers hold few
 * elements). IVFFlat sorts the vectors into their lists: the vectors alone.
 */
export function sizeMemory(
  rows: number,
  dimensions: number,
  params: { m: number } | { lists: number },
  settings: VectorIndexSettings,
  sharedBuffersBytes: number,
  method: VectorIndexMethod,
): BuildMemory {
  const perRow = dimensions * 4 + 8 + ('m' in params ? params.m * 2 * 8 : 0);
  const estimatedBytes = Math.ceil(rows * perRow);
  const configured = settings.instanceMemoryBytes;
  const instanceBytes = configured ?? sharedBuffersBytes * 4;
  const boundBytes = Math.floor(instanceBytes * settings.memoryShare);
  // A margin of a quarter over the estimate, at least the default's 64 MB, never above the bound.
  const wanted = Math.max(Math.ceil(estimatedBytes * 1.25), MIN_MAINTENANCE_WORK_MEM);
  const maintenanceWorkMemBytes = Math.max(Math.min(wanted, boundBytes), 1024 * 1024);
  const willSpill = estimatedBytes > maintenanceWorkMemBytes;
  const memory: BuildMemory = {
    rows,
    estimatedBytes,
    instanceBytes,
    instanceBytesFrom: configured === undefined ? 'shared_buffers' : 'configured',
    share: settings.memoryShare,
    boundBytes,
    maintenanceWorkMemBytes,
    willSpill,
  };
  if (willSpill) {
    memory.warning =
      `the ${method} build will spill: its graph is estimated at ${mib(estimatedBytes)} (${rows} rows × ${perRow} bytes) ` +
      `but maintenance_work_mem is bounded by ${mib(boundBytes)} (${Math.round(settings.memoryShare * 100)}% of ` +
      `${mib(instanceBytes)}${configured === undefined ? ', four times shared_buffers' : ''}); ` +
      `expect a much slower build, or raise DBOPS_INDEX_BUILD_MEMORY_SHARE / DBOPS_INSTANCE_MEMORY_MB`;
  }
  return memory;
}
