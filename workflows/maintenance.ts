/**
 * The runbook's vacuum / analyze routine: a report, one VACUUM per table, a report. VACUUM FULL
 * locks each table it rewrites, so it runs only inside the maintenance window: checked at the
 * start and again before each table; once the window has closed the run stops and reports the
 * tables it skipped.
 */
import { ApplicationFailure, log, patched, proxyActivities } from '@temporalio/workflow';

import type { Activities } from '../activities';
import type { MaintenanceReport, TableRef, VacuumResult } from '../activities/postgres/maintenance';
import { InvalidInputError, InvalidStateError } from './lib/errors';
import { DATABASE_RETRY } from './lib/retry';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from './lib/identifiers';
import { isInsideWindow, parseMaintenanceWindow, type MaintenanceWindow } from './lib/maintenance-window';
import { parseTableName, TABLE_NAME_RULE } from './lib/table-names';

export interface MaintenanceInput {
  /** The instance (found through the ControlPlane); absent: the worker's configured database. */
  instanceId?: string;
  /** `table` or `schema.table`; all user tables when absent or empty. */
  tables?: string[];
  /** VACUUM FULL (rewrites each table under an exclusive lock): only inside the maintenance window. */
  full?: boolean;
}

export interface MaintenanceResult {
  instanceId: string | null;
  full: boolean;
  before: MaintenanceReport;
  vacuumed: VacuumResult[];
  /** VACUUM FULL: the tables left alone because the window had closed (absent in older results). */
  skipped?: TableRef[];
  /** Why the run stopped before its last table (the window closed); absent when it did not. */
  stopped?: string;
  after: MaintenanceReport;
}

const quick = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: DATABASE_RETRY,
});

// One VACUUM may run for hours; the heartbeat tells a live one from a lost one.
const { vacuumTable } = proxyActivities<Activities>({
  startToCloseTimeout: '12 hours',
  heartbeatTimeout: '1 minute',
  retry: DATABASE_RETRY,
});

/**
 * Runs started before the window was checked before each table replay as they ran: every table
 * once the window had been open at the start.
 */
const WINDOW_BEFORE_EACH_TABLE = 'maintenance-window-before-each-table';

/** The runbook's vacuum / analyze routine, one table per activity, with a report before and after. */
export async function maintenance(input: MaintenanceInput = {}): Promise<MaintenanceResult> {
  const full = validate(input);

  let window: MaintenanceWindow | undefined;
  if (full) {
    const configured = await quick.configuredMaintenanceWindow();
    window = parseMaintenanceWindow(configured);
    const now = new Date(); // workflow time: deterministic on replay
    if (window === undefined || !isInsideWindow(window, now)) {
      throw ApplicationFailure.nonRetryable(
        `VACUUM FULL is only allowed inside the maintenance window ${configured} (UTC); it is now ${now.toISOString()}`,
        InvalidStateError.name,
      );
    }
  }
  const recheck = window !== undefined && patched(WINDOW_BEFORE_EACH_TABLE) ? window : undefined;

  const { instanceId } = input;
  const tables = await quick.resolveMaintenanceTables({ instanceId, tables: input.tables });
  const before = await quick.maintenanceReport({ instanceId });
  const vacuumed: VacuumResult[] = [];
  let skipped: TableRef[] = [];
  let stopped: string | undefined;
  for (const [i, table] of tables.entries()) {
    const now = new Date();
    if (recheck !== undefined && !isInsideWindow(recheck, now)) {
      skipped = tables.slice(i);
      stopped =
        `the maintenance window ${recheck.text} (UTC) closed before ${skipped.length} of ${tables.length} ` +
        `tables; it is now ${now.toISOString()}`;
      log.warn(`VACUUM FULL stopped: ${stopped}`, {
        skipped: skipped.map((t) => `${t.schema}.${t.table}`),
      });
      break;
    }
    const result = await vacuumTable({ instanceId, table, full });
    log.info('vacuumed', { table: `${table.schema}.${table.table}`, full, durationMs: result.durationMs });
    vacuumed.push(result);
  }
  const after = await quick.maintenanceReport({ instanceId });
  for (const index of after.unusedIndexes) {
    log.warn('unused index', { index: `${index.schema}.${index.index}`, sizeBytes: index.sizeBytes });
  }
  for (const setting of after.autovacuum.filter((s) => !s.matches)) {
    log.info('autovacuum setting differs from the runbook', { ...setting });
  }
  const result: MaintenanceResult = { instanceId: instanceId ?? null, full, before, vacuumed, after };
  if (recheck !== undefined) result.skipped = skipped;
  if (stopped !== undefined) result.stopped = stopped;
  return result;
}

/** Rejects bad input before any activity runs; returns whether VACUUM FULL was asked for. */
function validate(input: MaintenanceInput): boolean {
  if (input.instanceId !== undefined && !isRdsIdentifier(input.instanceId)) {
    invalid(`instanceId ${JSON.stringify(input.instanceId)} is not valid: ${RDS_IDENTIFIER_RULE}`);
  }
  if (input.tables !== undefined) {
    if (!Array.isArray(input.tables)) invalid('tables must be a list of table names');
    const bad = input.tables.filter((name) => parseTableName(name) === undefined);
    if (bad.length > 0) {
      invalid(
        `tables: ${bad.map((name) => JSON.stringify(name)).join(', ')} not allowed: ${TABLE_NAME_RULE}`,
      );
    }
  }
  if (input.full !== undefined && typeof input.full !== 'boolean') invalid('full must be true or false');
  return input.full === true;
}

function invalid(message: string): never {
  throw ApplicationFailure.nonRetryable(message, InvalidInputError.name);
}
