/**
 * `dbops`: the command line of the ControlPlane of the configured provider. One function per
 * command in `commands`; to add one, write `async function name(args: string[])` and list it there.
 * `--json` prints the description objects of the ControlPlane interface as a JSON array (stable:
 * scripts rely on it, see docs/local-provider.md). Exit codes: 0 done, 1 failed, 2 usage error
 * (unknown command or flag, missing or invalid argument), 3 `health` found a critical problem.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

import type { InstanceDescription, SnapshotDescription } from '../activities/control-plane/control-plane';
import { createControlPlane } from '../activities/control-plane';
import {
  ActivityFailure,
  ApplicationFailure,
  Client,
  Connection,
  WorkflowFailedError,
} from '@temporalio/client';

import { healthCheck, maintenance } from '../workflows';
import { InvalidInputError } from '../workflows/lib/errors';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from '../workflows/lib/identifiers';
import { loadConfig, type Config } from './config';
import { applySchedules, listSchedules } from './schedules';

class UsageError extends Error {}

const USAGE = `usage: dbops <command> [options]

commands:
  instances [--json]                 instances with their status and endpoint
  snapshots --instance ID [--json]   snapshots of an instance, newest first
  schedules apply|list [--json]      create or update the recurring operations / show them
  maintenance [--instance ID] [--table T]... [--full] [--json]
                                     vacuum / analyze (all tables unless named) and report
  health [--instance ID] [--json]    the runbook's health checks; exit 3 on a critical finding
                                     (without --instance: the worker's configured database)`;

/** parseArgs with our flags; an unknown flag or a stray argument is a usage error. */
function parse<T extends NonNullable<ParseArgsConfig['options']>>(
  command: string,
  args: string[],
  options: T,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError(`dbops ${command}: ${(error as Error).message}`);
  }
}

function print(json: boolean | undefined, value: unknown, table: string[][]): void {
  if (json) {
    console.log(JSON.stringify(value, null, 2));
    return;
  }
  const widths = table[0]!.map((_, column) => Math.max(...table.map((row) => row[column]!.length)));
  for (const row of table)
    console.log(
      row
        .map((cell, column) => cell.padEnd(widths[column]!))
        .join('  ')
        .trimEnd(),
    );
}

async function instances(args: string[]): Promise<void> {
  const { json } = parse('instances', args, { json: { type: 'boolean' } });
  const list: InstanceDescription[] = await createControlPlane(loadConfig()).listInstances();
  print(json, list, [
    ['INSTANCE', 'STATUS', 'ENDPOINT', 'ENGINE', 'LATEST RESTORABLE'],
    ...list.map((i) => [
      i.instanceId,
      i.status,
      i.endpoint ? `${i.endpoint.user}@${i.endpoint.host}:${i.endpoint.port}/${i.endpoint.database}` : '-',
      i.engineVersion,
      i.latestRestorableTime ?? '-',
    ]),
  ]);
}

async function snapshots(args: string[]): Promise<void> {
  const { json, instance } = parse('snapshots', args, {
    json: { type: 'boolean' },
    instance: { type: 'string' },
  });
  if (instance === undefined) throw new UsageError('dbops snapshots: --instance ID is required');
  const list: SnapshotDescription[] = await createControlPlane(loadConfig()).listSnapshots(instance);
  print(json, list, [
    ['SNAPSHOT', 'TYPE', 'STATUS', 'CREATED', 'SIZE'],
    ...list.map((s) => [
      s.snapshotId,
      s.type,
      s.status,
      s.createdAt ?? '-',
      s.sizeBytes === undefined ? '-' : `${(s.sizeBytes / 1024 / 1024).toFixed(1)} MiB`,
    ]),
  ]);
}

/** Runs `fn` with a client of the configured Temporal server. */
async function withTemporal<T>(config: Config, fn: (client: Client) => Promise<T>): Promise<T> {
  const connection = await Connection.connect({ address: config.temporal.address });
  try {
    return await fn(new Client({ connection, namespace: config.temporal.namespace }));
  } finally {
    await connection.close();
  }
}

/** A failed workflow reported by its root cause; bad input stays a usage error (exit 2). */
async function explainFailure<T>(run: Promise<T>): Promise<T> {
  try {
    return await run;
  } catch (error) {
    if (!(error instanceof WorkflowFailedError)) throw error;
    const cause = error.cause instanceof ActivityFailure ? error.cause.cause : error.cause;
    if (cause instanceof ApplicationFailure && cause.type === InvalidInputError.name) {
      throw new InvalidInputError(cause.message);
    }
    throw new Error(cause?.message ?? error.message);
  }
}

/** `--instance ID`: that instance, found through the ControlPlane; absent: the worker's configured database. */
function instanceOption(instance: string | undefined): string | undefined {
  if (instance !== undefined && !isRdsIdentifier(instance)) {
    throw new UsageError(`--instance ${JSON.stringify(instance)} is not valid: ${RDS_IDENTIFIER_RULE}`);
  }
  return instance;
}

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

async function maintenanceCommand(args: string[]): Promise<void> {
  const options = parse('maintenance', args, {
    instance: { type: 'string' },
    table: { type: 'string', multiple: true },
    full: { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const config = loadConfig();
  const instanceId = instanceOption(options.instance);
  const result = await withTemporal(config, (client) =>
    explainFailure(
      client.workflow.execute(maintenance, {
        taskQueue: config.temporal.taskQueue,
        workflowId: `maintenance-${instanceId ?? 'configured'}-${Date.now()}`,
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
  const options = parse('health', args, { instance: { type: 'string' }, json: { type: 'boolean' } });
  const config = loadConfig();
  const instanceId = instanceOption(options.instance);
  const result = await withTemporal(config, (client) =>
    explainFailure(
      client.workflow.execute(healthCheck, {
        taskQueue: config.temporal.taskQueue,
        workflowId: `health-check-${instanceId ?? 'configured'}-${Date.now()}`,
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

const commands: Record<string, (args: string[]) => Promise<void | number>> = {
  instances,
  snapshots,
  schedules,
  maintenance: maintenanceCommand,
  health,
};

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined) {
    console.error(USAGE);
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE);
    return 0;
  }
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  try {
    if (command === undefined) throw new UsageError(`dbops: unknown command ${JSON.stringify(name)}`);
    return (await command(args)) ?? 0;
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`${error.message}\n\n${USAGE}`);
      return 2;
    }
    // A bad argument value (e.g. an invalid identifier) is a usage error too.
    if (error instanceof InvalidInputError) {
      console.error(`dbops ${name}: ${error.message}`);
      return 2;
    }
    const failure = error as Error;
    console.error(`dbops ${name} failed: ${failure.name}: ${failure.message}`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (error: Error) => {
    console.error(error.message);
    process.exitCode = 1;
  },
);
