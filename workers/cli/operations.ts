/**
 * `dbops schedules`, `dbops maintenance` and `dbops health`: the recurring operations and the two
 * checks an operator runs by hand, each run as its workflow on the worker.
 */
import { healthCheck, maintenance } from '../../workflows';
import { utcStamp } from '../../workflows/lib/recovery';
import { loadConfig } from '../config';
import { FLEET_FLAGS, fleetCommand, fleetOptions } from '../fleet-run';
import { applySchedules, listSchedules } from '../schedules';
import {
  explainFailure,
  instanceOption,
  parse,
  print,
  UsageError,
  withTemporal,
  type CommandGroup,
} from './common';

export const operations: CommandGroup = {
  usage: `  schedules apply|list [--json]      create or update the recurring operations / show them
  maintenance [--instance ID] [--table T]... [--full] [--json]
                                     vacuum / analyze (all tables unless named) and report
  health [--instance ID] [--json]    the runbook's health checks; exit 3 on a critical finding
                                     (without --instance: the worker's configured database)
  maintenance --all [--tag K=V] [--concurrency N] [--json]
  health --all [--tag K=V] [--concurrency N] [--json]
                                     the same over every managed instance (or those tagged
                                     K=V), N at a time (default 3), with one summary; exit 1
                                     when one fails (health: a critical finding counts)`,
  commands: { schedules, maintenance: maintenanceCommand, health },
};

async function schedules(args: string[]): Promise<void> {
  const [action, ...rest] = args;
  const { json } = parse('schedules', rest, { json: { type: 'boolean' } });
  const config = loadConfig();
  if (action === 'apply') {
    const applied = await withTemporal(config, (client) =>
      applySchedules(client, {
        taskQueue: config.temporal.taskQueue,
        instanceId: config.instanceId,
        ...config.operations,
      }),
    );
    print(json, applied, [['SCHEDULE', 'OUTCOME'], ...applied.map((s) => [s.scheduleId, s.outcome])]);
  } else if (action === 'list') {
    const listed = await withTemporal(config, listSchedules);
    print(json, listed, [
      ['SCHEDULE', 'WORKFLOW', 'PAUSED', 'NEXT RUN'],
      ...listed.map((s) => [s.scheduleId, s.workflowType ?? '-', String(s.paused), s.nextRuns[0] ?? '-']),
    ]);
  } else {
    throw new UsageError('dbops schedules: expected apply or list');
  }
}

async function maintenanceCommand(args: string[]): Promise<void | number> {
  const options = parse('maintenance', args, {
    instance: { type: 'string' },
    table: { type: 'string', multiple: true },
    full: { type: 'boolean' },
    json: { type: 'boolean' },
    ...FLEET_FLAGS,
  });
  const fleetRun = fleetOptions('maintenance', options);
  if (fleetRun !== undefined) {
    if (options.instance !== undefined || options.table !== undefined || options.full !== undefined) {
      throw new UsageError('dbops maintenance: --all goes without --instance, --table and --full');
    }
    return fleetCommand('maintenance', fleetRun, options.json ?? false);
  }
  const config = loadConfig();
  const instanceId = instanceOption(options.instance);
  const result = await withTemporal(config, (client) =>
    explainFailure(
      client.workflow.execute(maintenance, {
        taskQueue: config.temporal.taskQueue,
        workflowId: `maintenance-${instanceId ?? 'configured'}-${utcStamp(new Date())}`,
        // The same command twice within a second: the second waits for the first's result.
        workflowIdConflictPolicy: 'USE_EXISTING',
        args: [{ instanceId, tables: options.table, full: options.full ?? false }],
      }),
    ),
  );
  const before = new Map(result.before.tables.map((t) => [`${t.schema}.${t.table}`, t]));
  print(options.json, result, [
    ['TABLE', 'DEAD BEFORE', 'DEAD AFTER', 'LAST VACUUM', 'LAST AUTOVACUUM'],
    ...result.after.tables.map((t) => {
      const name = `${t.schema}.${t.table}`;
      return [
        name,
        `${((before.get(name)?.deadTupleRatio ?? 0) * 100).toFixed(1)}%`,
        `${(t.deadTupleRatio * 100).toFixed(1)}%`,
        t.lastVacuum ?? '-',
        t.lastAutovacuum ?? '-',
      ];
    }),
  ]);
  if (!options.json) {
    if (result.stopped !== undefined) {
      const skipped = (result.skipped ?? []).map((t) => `${t.schema}.${t.table}`).join(', ');
      console.log(`VACUUM FULL stopped: ${result.stopped}; not vacuumed: ${skipped}`);
    }
    for (const index of result.after.unusedIndexes) {
      console.log(
        `unused index: ${index.schema}.${index.index} on ${index.table} (${index.sizeBytes} bytes)`,
      );
    }
    for (const setting of result.after.autovacuum.filter((s) => !s.matches)) {
      console.log(`${setting.name} = ${setting.current}; the runbook recommends ${setting.recommended}`);
    }
  }
}

async function health(args: string[]): Promise<number> {
  const options = parse('health', args, {
    instance: { type: 'string' },
    json: { type: 'boolean' },
    ...FLEET_FLAGS,
  });
  const fleetRun = fleetOptions('health', options);
  if (fleetRun !== undefined) {
    if (options.instance !== undefined) throw new UsageError('dbops health: --all goes without --instance');
    return fleetCommand('healthCheck', fleetRun, options.json ?? false);
  }
  const config = loadConfig();
  const instanceId = instanceOption(options.instance);
  const result = await withTemporal(config, (client) =>
    explainFailure(
      client.workflow.execute(healthCheck, {
        taskQueue: config.temporal.taskQueue,
        workflowId: `health-check-${instanceId ?? 'configured'}-${utcStamp(new Date())}`,
        // The same command twice within a second: the second waits for the first's result.
        workflowIdConflictPolicy: 'USE_EXISTING',
        args: [{ instanceId }],
      }),
    ),
  );
  print(options.json, result, [
    ['SEVERITY', 'CHECK', 'FINDING'],
    ...result.findings.map((f) => [f.severity, f.check, f.message]),
  ]);
  return result.status === 'critical' ? 3 : 0;
}
