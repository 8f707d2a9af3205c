/**
 * The runbook's vacuum / analyze routine: which tables to vacuum, one VACUUM per activity (it can
 * run for hours on a big table, so it heartbeats), and the report a DBA reads before and after.
 */
import type { Client } from 'pg';

import { InvalidInputError } from '../../workflows/lib/errors';
import { parseTableName, TABLE_NAME_RULE } from '../../workflows/lib/table-names';
import { backendCanceller, heartbeatWhile } from '../heartbeat';
import type { InstanceInput, OnInstance } from './on-instance';

export interface TableRef {
  schema: string;
  table: string;
}

export interface VacuumResult extends TableRef {
  full: boolean;
  durationMs: number;
}

export interface TableMaintenanceStats extends TableRef {
  liveTuples: number;
  deadTuples: number;
  /** dead / (live + dead); 0 for an empty table. */
  deadTupleRatio: number;
  lastVacuum: string | null;
  lastAutovacuum: string | null;
  lastAnalyze: string | null;
  lastAutoanalyze: string | null;
}

export interface UnusedIndex extends TableRef {
  index: string;
  sizeBytes: number;
}

export interface VectorIndex extends TableRef {
  index: string;
  method: 'hnsw' | 'ivfflat';
  sizeBytes: number;
  definition: string;
}

export interface AutovacuumSetting {
  name: string;
  current: string;
  recommended: string;
  matches: boolean;
}

export interface MaintenanceReport {
  tables: TableMaintenanceStats[];
  /** Never scanned since `statsSince`, not unique and not backing a constraint. */
  unusedIndexes: UnusedIndex[];
  vectorIndexes: VectorIndex[];
  autovacuum: AutovacuumSetting[];
  /** When the statistics were last reset (null: since the cluster was created). */
  statsSince: string | null;
}

/**
 * The runbook's autovacuum values ("tune for high-write workloads"), as `pg_settings` shows them
 * (naptime in seconds).
 */
export const RECOMMENDED_AUTOVACUUM: Record<string, string> = {
  autovacuum: 'on',
  autovacuum_naptime: '30s',
  autovacuum_vacuum_threshold: '1000',
  autovacuum_analyze_threshold: '500',
};

export function createMaintenanceActivities(onInstance: OnInstance, maintenanceWindow: string) {
  return {
    /** The configured window for VACUUM FULL (an activity, so the workflow stays deterministic). */
    configuredMaintenanceWindow(): Promise<string> {
      return Promise.resolve(maintenanceWindow);
    },

    /**
     * The tables to vacuum: the named ones (each must exist) or, when none are named, every user
     * table. Throws InvalidInputError naming every unknown table, before anything is vacuumed.
     */
    async resolveMaintenanceTables(input: InstanceInput & { tables?: string[] }): Promise<TableRef[]> {
      return onInstance(input.instanceId, async (client) => {
        const existing = await userTables(client);
        if (input.tables === undefined || input.tables.length === 0) return existing;
        const resolved: TableRef[] = [];
        const problems: string[] = [];
        for (const name of input.tables) {
          const parsed = parseTableName(name);
          if (parsed === undefined) {
            problems.push(`${JSON.stringify(name)} is not a table name (${TABLE_NAME_RULE})`);
            continue;
          }
          const matches = existing.filter(
            (t) => t.table === parsed.table && (parsed.schema === undefined || t.schema === parsed.schema),
          );
          if (matches.length === 1) resolved.push(matches[0]!);
          else if (matches.length === 0) problems.push(`table ${JSON.stringify(name)} does not exist`);
          else problems.push(`table ${JSON.stringify(name)} is in several schemas: name it as schema.table`);
        }
        if (problems.length > 0) throw new InvalidInputError(`tables: ${problems.join('; ')}`);
        return resolved;
      });
    },

    /**
     * VACUUM (ANALYZE[, FULL]) of one table, heartbeating on a timer while it runs (hours on a big
     * table); cancelling the activity cancels the VACUUM.
     */
    async vacuumTable(input: InstanceInput & { table: TableRef; full: boolean }): Promise<VacuumResult> {
      const { schema, table } = input.table;
      return onInstance(input.instanceId, async (client) => {
        const found = await client.query(
          'SELECT 1 FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = $2',
          [schema, table],
        );
        if (found.rowCount === 0) throw new InvalidInputError(`table ${schema}.${table} does not exist`);
        // A VACUUM of a killed worker stops within seconds instead of running on for hours.
        await client.query(`SET client_connection_check_interval = '2s'`);
        const onCancel = await backendCanceller(client, (fn) => onInstance(input.instanceId, fn));
        const started = Date.now();
        await heartbeatWhile(
          async () => {
            // VACUUM FULL holds an ACCESS EXCLUSIVE lock: give up rather than queue every query behind it.
            if (input.full) await client.query(`SET lock_timeout = '10s'`);
            const options = input.full ? 'FULL, ANALYZE' : 'ANALYZE';
            const target = `${client.escapeIdentifier(schema)}.${client.escapeIdentifier(table)}`;
            await client.query(`VACUUM (${options}) ${target}`);
          },
          { details: { schema, table }, onCancel },
        );
        return { schema, table, full: input.full, durationMs: Date.now() - started };
      });
    },

    /** Last (auto)vacuum / analyze and dead tuples per table, unused and vector indexes, autovacuum settings. */
    async maintenanceReport(input: InstanceInput): Promise<MaintenanceReport> {
      return onInstance(input.instanceId, async (client) => ({
        tables: await tableStats(client),
        unusedIndexes: await unusedIndexes(client),
        vectorIndexes: await vectorIndexes(client),
        autovacuum: await autovacuumSettings(client),
        statsSince: await statsSince(client),
      }));
    },
  };
}

async function userTables(client: Client): Promise<TableRef[]> {
  const { rows } = await client.query<TableRef>(
    'SELECT schemaname AS schema, relname AS table FROM pg_stat_user_tables ORDER BY schemaname, relname',
  );
  return rows;
}

async function tableStats(client: Client): Promise<TableMaintenanceStats[]> {
  type Row = Omit<
    TableMaintenanceStats,
    'lastVacuum' | 'lastAutovacuum' | 'lastAnalyze' | 'lastAutoanalyze'
  > & {
    lastVacuum: Date | null;
    lastAutovacuum: Date | null;
    lastAnalyze: Date | null;
    lastAutoanalyze: Date | null;
  };
  const { rows } = await client.query<Row>(
    `SELECT schemaname AS schema, relname AS table,
            n_live_tup::float8 AS "liveTuples", n_dead_tup::float8 AS "deadTuples",
            CASE WHEN n_live_tup + n_dead_tup = 0 THEN 0
                 ELSE round(n_dead_tup::numeric / (n_live_tup + n_dead_tup), 4)::float8 END AS "deadTupleRatio",
            last_vacuum AS "lastVacuum", last_autovacuum AS "lastAutovacuum",
            last_analyze AS "lastAnalyze", last_autoanalyze AS "lastAutoanalyze"
       FROM pg_stat_user_tables
      ORDER BY schemaname, relname`,
  );
  return rows.map((row) => ({
    ...row,
    lastVacuum: iso(row.lastVacuum),
    lastAutovacuum: iso(row.lastAutovacuum),
    lastAnalyze: iso(row.lastAnalyze),
    lastAutoanalyze: iso(row.lastAutoanalyze),
  }));
}

async function unusedIndexes(client: Client): Promise<UnusedIndex[]> {
  const { rows } = await client.query<UnusedIndex>(
    `SELECT s.schemaname AS schema, s.relname AS table, s.indexrelname AS index,
            pg_relation_size(s.indexrelid)::float8 AS "sizeBytes"
       FROM pg_stat_user_indexes s
       JOIN pg_index i ON i.indexrelid = s.indexrelid
      WHERE s.idx_scan = 0
        AND NOT i.indisunique
        AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = s.indexrelid)
      ORDER BY pg_relation_size(s.indexrelid) DESC, s.schemaname, s.indexrelname`,
  );
  return rows;
}

async function vectorIndexes(client: Client): Promise<VectorIndex[]> {
  const { rows } = await client.query<VectorIndex>(
    `SELECT n.nspname AS schema, t.relname AS table, c.relname AS index, am.amname AS method,
            pg_relation_size(c.oid)::float8 AS "sizeBytes", pg_get_indexdef(c.oid) AS definition
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

async function autovacuumSettings(client: Client): Promise<AutovacuumSetting[]> {
  const { rows } = await client.query<{ name: string; setting: string; unit: string | null }>(
    'SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1) ORDER BY name',
    [Object.keys(RECOMMENDED_AUTOVACUUM)],
  );
  return rows.map(({ name, setting, unit }) => {
    const current = `${setting}${unit ?? ''}`;
    const recommended = RECOMMENDED_AUTOVACUUM[name]!;
    return { name, current, recommended, matches: current === recommended };
  });
}

async function statsSince(client: Client): Promise<string | null> {
  const { rows } = await client.query<{ reset: Date | null }>(
    'SELECT stats_reset AS reset FROM pg_stat_database WHERE datname = current_database()',
  );
  return iso(rows[0]?.reset ?? null);
}

function iso(time: Date | null): string | null {
  return time === null ? null : time.toISOString();
}
