import { ApplicationFailure, log, proxyActivities } from '@temporalio/workflow';

import type { Activities } from '../activities';
import type { MaintenanceReport, VacuumResult } from '../activities/postgres/maintenance';
import { InvalidInputError, InvalidStateError } from './lib/errors';
import { DATABASE_RETRY } from './lib/retry';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from './lib/identifiers';
import { isInsideWindow, parseMaintenanceWindow } from './lib/maintenance-window';
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

/** The runbook's vacuum / analyze routine, one table per activity, with a report before and after. */
export async function maintenance(input: MaintenanceInput = {}): Promise<MaintenanceResult> {
  const full = validate(input);

  if (full) {
    const configured = await quick.configuredMaintenanceWindow();
    const window = parseMaintenanceWindow(configured);
    const now = new Date(); // workflow time: deterministic on replay
    if (window === undefined || !isInsideWindow(window, now)) {
      throw ApplicationFailure.nonRetryable(
        `VACUUM FULL is only allowed inside the maintenance window ${configured} (UTC); it is now ${now.toISOString()}`,
        InvalidStateError.name,
      );
    }
  }

  const { instanceId } = input;
  const tables = await quick.resolveMaintenanceTables({ instanceId, tables: input.tables });
  const before = await quick.maintenanceReport({ instanceId });
  const vacuumed: VacuumResult[] = [];
  for (const table of tables) {
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
  return { instanceId: instanceId ?? null, full, before, vacuumed, after };
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
