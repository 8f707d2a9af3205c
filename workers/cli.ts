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
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
} from '@temporalio/client';

import {
  backfill,
  backup,
  deployMigration,
  drTest,
  healthCheck,
  maintenance,
  pitrRestore,
  snapshotRestore,
} from '../workflows';
import {
  backfillProgressQuery,
  cancelBackfillSignal,
  configureBackfillUpdate,
  pauseBackfillSignal,
  resumeBackfillSignal,
  type BackfillProgress,
} from '../workflows/backfill';
import {
  approveUpdate,
  deployProgressQuery,
  type DeployMigrationResult,
} from '../workflows/deploy-migration';
import { InvalidInputError } from '../workflows/lib/errors';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from '../workflows/lib/identifiers';
import { progressQuery, utcDate, utcStamp, type DrTestReport } from '../workflows/lib/recovery';
import type { RestoreResult } from '../workflows/pitr-restore';
import { backfillProgressLine } from './backfill-progress';
import { runCodecServer } from './codec-server';
import { loadConfig, type Config } from './config';
import { applySchedules, listSchedules } from './schedules';
import { connectClient } from './temporal-connection';

class UsageError extends Error {}

const USAGE = `usage: dbops <command> [options]

commands:
  instances [--json]                 instances with their status and endpoint
  snapshots --instance ID [--json]   snapshots of an instance, newest first
  schedules apply|list [--json]      create or update the recurring operations / show them
  maintenance [--instance ID] [--table T]... [--full] [--json]
                                     vacuum / analyze (all tables unless named) and report
  health [--instance ID] [--json]    the runbook's health checks; exit 3 on a critical finding
                                     (without --instance: the worker's configured database)
  backup --instance ID [--export] [--json]
                                     manual snapshot (and export), waited for until done
  restore --instance ID --to <ISO-8601|latest> [--target NEW_ID] [--json]
  restore --snapshot SNAPSHOT [--instance ID] [--target NEW_ID] [--json]
                                     restore as a new instance: to a point in time, or a snapshot
  dr-test --instance ID [--json]     restore the newest snapshot to a temporary instance, check
                                     it, delete it, report RPO / RTO; exit 1 when a check fails
  deploy --instance ID [--target MIGRATION] [--approve-as NAME] [--json]
                                     lint, snapshot, (approve,) migrate, verify; a production
                                     instance waits for approval (given at once by --approve-as)
  backfill [start] NAME --instance ID [--params JSON] [--batch-size N] [--delay-ms N] [--detach] [--json]
                                     run a backfill defined in the repository, with a progress bar
  backfill pause|resume|cancel WORKFLOW_ID
  backfill set WORKFLOW_ID [--batch-size N] [--delay-ms N] [--json]
                                     change a running backfill's batch size / delay
  status WORKFLOW_ID [--json]        follow a workflow (a backfill as a progress bar) until it
                                     ends; --json: its status and progress once
  codec-server                       decode encrypted payloads for the Web UI and the Temporal
                                     CLI until Ctrl-C (see docs/security.md)`;

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
  const { connection, client } = await connectClient(config.temporal);
  try {
    return await fn(client);
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

/** Recovery workflows on a local provider settle in seconds: look more often than on RDS. */
function pollTimeouts(config: Config): { pollInterval: string } | undefined {
  return config.provider === 'local' ? { pollInterval: '1 second' } : undefined;
}

/**
 * Starts a recovery workflow and waits for its result, printing its progress (the workflow's
 * `progress` query) to stderr whenever it changes, unless `quiet`.
 */
async function runWithProgress<T>(
  client: Client,
  workflowId: string,
  start: () => Promise<{ result(): Promise<T> }>,
  quiet: boolean,
): Promise<T> {
  const handle = await start();
  if (!quiet) console.error(`started ${workflowId}`);
  const result = handle.result();
  let last = '';
  for (;;) {
    const settled = await Promise.race([
      result.then(
        () => true,
        () => true,
      ),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), 2000)),
    ]);
    if (settled) return result;
    const progress = await client.workflow
      .getHandle(workflowId)
      .query(progressQuery)
      .catch(() => undefined);
    if (!quiet && progress !== undefined && progress.step !== last) {
      last = progress.step;
      console.error(`[${new Date().toISOString().slice(11, 19)}] ${progress.step}`);
    }
  }
}

async function backupCommand(args: string[]): Promise<void> {
  const options = parse('backup', args, {
    instance: { type: 'string' },
    export: { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const instanceId = instanceOption(options.instance);
  if (instanceId === undefined) throw new UsageError('dbops backup: --instance ID is required');
  const config = loadConfig();
  const workflowId = `backup-${instanceId}-${utcStamp(new Date())}`;
  const result = await withTemporal(config, (client) =>
    explainFailure(
      runWithProgress(
        client,
        workflowId,
        () =>
          client.workflow.start(backup, {
            taskQueue: config.temporal.taskQueue,
            workflowId,
            staticSummary: `Backup of ${instanceId}${options.export ? ' with export' : ''}`,
            args: [{ instanceId, export: options.export ?? false, timeouts: pollTimeouts(config) }],
          }),
        options.json ?? false,
      ),
    ),
  );
  const size = result.sizeBytes === null ? '-' : `${(result.sizeBytes / 1024 / 1024).toFixed(1)} MiB`;
  print(options.json, result, [
    ['SNAPSHOT', 'CREATED', 'SIZE', 'SECONDS', 'EXPORT'],
    [
      result.snapshotId,
      result.snapshotCreatedAt ?? '-',
      size,
      String(result.snapshotSeconds ?? '-'),
      result.export === null ? '-' : `${result.export.status} ${result.export.destination}`,
    ],
  ]);
}

async function restore(args: string[]): Promise<void> {
  const options = parse('restore', args, {
    instance: { type: 'string' },
    to: { type: 'string' },
    snapshot: { type: 'string' },
    target: { type: 'string' },
    json: { type: 'boolean' },
  });
  const instanceId = instanceOption(options.instance);
  if ((options.to === undefined) === (options.snapshot === undefined)) {
    throw new UsageError('dbops restore: give exactly one of --to <ISO-8601|latest> or --snapshot SNAPSHOT');
  }
  if (options.to !== undefined && instanceId === undefined) {
    throw new UsageError('dbops restore --to: --instance ID is required (the instance to restore from)');
  }
  const config = loadConfig();
  const timeouts = pollTimeouts(config);
  const workflowId = `restore-${instanceId ?? options.snapshot}-${utcStamp(new Date())}`;
  const result: RestoreResult = await withTemporal(config, (client) =>
    explainFailure(
      runWithProgress(
        client,
        workflowId,
        () =>
          options.snapshot !== undefined
            ? client.workflow.start(snapshotRestore, {
                taskQueue: config.temporal.taskQueue,
                workflowId,
                staticSummary: `Restore of snapshot ${options.snapshot} as a new instance`,
                args: [
                  { snapshotId: options.snapshot, instanceId, targetInstanceId: options.target, timeouts },
                ],
              })
            : client.workflow.start(pitrRestore, {
                taskQueue: config.temporal.taskQueue,
                workflowId,
                staticSummary: `Point-in-time restore of ${instanceId} to ${options.to}`,
                args: [
                  {
                    instanceId: instanceId!,
                    restoreTime: options.to!,
                    targetInstanceId: options.target,
                    timeouts,
                  },
                ],
              }),
        options.json ?? false,
      ),
    ),
  );
  const e = result.endpoint;
  print(options.json, result, [
    ['INSTANCE', 'ENDPOINT', 'RESTORED TO', 'SECONDS'],
    [
      result.targetInstanceId,
      `${e.user}@${e.host}:${e.port}/${e.database}`,
      result.restoredTo ?? '-',
      String(result.restoreSeconds ?? '-'),
    ],
  ]);
}

async function drTestCommand(args: string[]): Promise<number> {
  const options = parse('dr-test', args, { instance: { type: 'string' }, json: { type: 'boolean' } });
  const instanceId = instanceOption(options.instance);
  if (instanceId === undefined) throw new UsageError('dbops dr-test: --instance ID is required');
  const config = loadConfig();
  const workflowId = `dr-test-${instanceId}-${utcDate(new Date())}`;
  let report: DrTestReport;
  try {
    report = await withTemporal(config, (client) =>
      runWithProgress(
        client,
        workflowId,
        () =>
          client.workflow.start(drTest, {
            taskQueue: config.temporal.taskQueue,
            workflowId,
            staticSummary: `DR test of ${instanceId}: restore the newest snapshot, check it, delete it`,
            args: [{ instanceId, timeouts: pollTimeouts(config) }],
          }),
        options.json ?? false,
      ),
    );
  } catch (error) {
    // A failed DR test carries its report: print it like a passed one, then exit 1.
    const cause = error instanceof WorkflowFailedError ? error.cause : undefined;
    if (!(cause instanceof ApplicationFailure) || cause.type !== 'DrTestFailed') {
      return explainFailure(Promise.reject(error as Error));
    }
    report = cause.details?.[0] as DrTestReport;
  }
  printDrReport(options.json ?? false, report);
  return report.ok ? 0 : 1;
}

function printDrReport(json: boolean, report: DrTestReport): void {
  print(json, report, [
    ['CHECK', 'RESULT', 'DETAIL'],
    ...report.checks.map((c) => [c.name, c.status, c.detail.split('\n')[0]!]),
  ]);
  if (json) return;
  console.log(
    `\nDR test of ${report.instanceId}: ${report.ok ? 'PASSED' : 'FAILED'}` +
      `\n  snapshot ${report.snapshot?.snapshotId ?? 'none'}, RPO ${report.rpoSeconds ?? '?'} s, RTO ${report.rtoSeconds ?? '?'} s` +
      (report.error === null ? '' : `\n  error: ${report.error}`) +
      report.reportLocations.map((location) => `\n  report: ${location}`).join(''),
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `--flag N` as an integer (its range is the workflow's to check, naming the field). */
function integerOption(command: string, flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value))
    throw new UsageError(`dbops ${command}: --${flag} ${JSON.stringify(value)} is not an integer`);
  return Number(value);
}

/** The first argument as the required positional `what`, e.g. a workflow id. */
function positional(command: string, what: string, args: string[]): [string, string[]] {
  const [value, ...rest] = args;
  if (value === undefined || value.startsWith('-'))
    throw new UsageError(`dbops ${command}: ${what} is required`);
  return [value, rest];
}

/** Waits for `result`, calling `look` every second meanwhile. */
async function whileRunning<T>(result: Promise<T>, look: () => Promise<void>): Promise<T> {
  for (;;) {
    const settled = await Promise.race([
      result.then(
        () => true,
        () => true,
      ),
      sleep(1000).then(() => false),
    ]);
    if (settled) return result;
    await look();
  }
}

const clock = () => new Date().toISOString().slice(11, 19);

async function deploy(args: string[]): Promise<void> {
  const options = parse('deploy', args, {
    instance: { type: 'string' },
    target: { type: 'string' },
    'approve-as': { type: 'string' },
    json: { type: 'boolean' },
  });
  const instanceId = instanceOption(options.instance);
  if (instanceId === undefined) throw new UsageError('dbops deploy: --instance ID is required');
  const approveAs = options['approve-as'];
  if (approveAs !== undefined && approveAs.trim() === '') {
    throw new UsageError('dbops deploy: --approve-as needs the name of who approves');
  }
  const config = loadConfig();
  const workflowId = `deploy-${instanceId}-${utcStamp(new Date())}`;
  const quiet = options.json ?? false;
  const result: DeployMigrationResult = await withTemporal(config, async (client) => {
    const handle = await client.workflow.start(deployMigration, {
      taskQueue: config.temporal.taskQueue,
      workflowId,
      args: [{ instanceId, target: options.target }],
    });
    if (!quiet) console.error(`started ${workflowId}`);
    let stage = '';
    return explainFailure(
      whileRunning(handle.result(), async () => {
        const progress = await handle.query(deployProgressQuery).catch(() => undefined);
        if (progress === undefined || progress.stage === stage) return;
        stage = progress.stage;
        if (!quiet) console.error(`[${clock()}] ${stage}`);
        if (stage !== 'awaiting-approval') return;
        if (approveAs === undefined) {
          // Said even with --json: nothing moves until someone approves.
          console.error(
            `${instanceId} is production: approve with  temporal workflow update execute --workflow-id ${workflowId} --name approve --input '{"approvedBy":"NAME"}'`,
          );
        } else {
          await handle.executeUpdate(approveUpdate, { args: [{ approvedBy: approveAs }] });
        }
      }),
    );
  });
  print(options.json, result, [
    ['MIGRATION', 'OUTCOME'],
    ...result.applied.map((name) => [name, 'applied']),
    ...result.heldBack.map((name) => [name, 'held back']),
  ]);
  if (options.json) return;
  console.log(`\n${result.status} on ${instanceId}; pre-migration snapshot ${result.snapshotId ?? '-'}`);
  if (result.approvedBy !== undefined) console.log(`approved by ${result.approvedBy}`);
  if (result.rollout !== undefined) console.log(`rollout hook ${result.rollout.hook}: done`);
}

/** `dbops backfill [start] NAME ... | pause|resume|cancel|set WORKFLOW_ID ...` */
async function backfillCommand(args: string[]): Promise<void> {
  const [action, ...rest] = args;
  if (action === 'start') return backfillStart(rest);
  if (action === 'pause' || action === 'resume' || action === 'cancel') return backfillSignal(action, rest);
  if (action === 'set') return backfillSet(rest);
  if (action !== undefined && !action.startsWith('-')) return backfillStart(args);
  throw new UsageError('dbops backfill: expected start NAME, pause, resume, cancel or set');
}

async function backfillStart(args: string[]): Promise<void> {
  const [name, rest] = positional('backfill start', 'NAME (a backfill defined in the repository)', args);
  const options = parse('backfill start', rest, {
    instance: { type: 'string' },
    params: { type: 'string' },
    'batch-size': { type: 'string' },
    'delay-ms': { type: 'string' },
    detach: { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const instanceId = instanceOption(options.instance);
  if (instanceId === undefined) throw new UsageError('dbops backfill start: --instance ID is required');
  let params: unknown;
  try {
    params = options.params === undefined ? undefined : JSON.parse(options.params);
  } catch (error) {
    throw new UsageError(`dbops backfill start: --params is not JSON: ${(error as Error).message}`);
  }
  const batchSize = integerOption('backfill start', 'batch-size', options['batch-size']);
  const delayMs = integerOption('backfill start', 'delay-ms', options['delay-ms']);
  const config = loadConfig();
  // One run of a backfill per instance at a time: the id says which.
  const workflowId = `backfill-${name}-${instanceId}`;
  const final = await withTemporal(config, async (client) => {
    const handle = await client.workflow
      .start(backfill, {
        taskQueue: config.temporal.taskQueue,
        workflowId,
        args: [{ instanceId, name, params, batchSize, delayMs }],
      })
      .catch((error: Error) => {
        if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
        throw new Error(`${workflowId} is already running; see dbops status ${workflowId}`);
      });
    if (options.detach) return undefined;
    if (!options.json) console.error(`started ${workflowId}`);
    let last = '';
    return explainFailure(
      whileRunning(handle.result(), async () => {
        const progress = await handle.query(backfillProgressQuery).catch(() => undefined);
        const line = progress === undefined ? '' : backfillProgressLine(progress);
        if (!options.json && line !== last) console.error(line);
        last = line;
      }),
    );
  });
  if (final === undefined) {
    print(options.json, { workflowId }, [['WORKFLOW'], [workflowId]]);
    return;
  }
  if (options.json) console.log(JSON.stringify(final, null, 2));
  else console.log(backfillProgressLine(final));
}

/** The backfill `workflowId`, running; anything else is a clear error. */
async function runningBackfill(client: Client, workflowId: string, action: string) {
  const handle = client.workflow.getHandle<typeof backfill>(workflowId);
  const description = await handle.describe().catch((error: Error) => {
    if (error instanceof WorkflowNotFoundError) throw new Error(`no workflow ${workflowId}`);
    throw error;
  });
  if (description.type !== 'backfill') {
    throw new InvalidInputError(`${workflowId} is a ${description.type} workflow, not a backfill`);
  }
  if (description.status.name !== 'RUNNING') {
    throw new Error(`${workflowId} is ${description.status.name}; nothing to ${action}`);
  }
  return handle;
}

async function backfillSignal(action: 'pause' | 'resume' | 'cancel', args: string[]): Promise<void> {
  const [workflowId, rest] = positional(`backfill ${action}`, 'WORKFLOW_ID', args);
  parse(`backfill ${action}`, rest, {});
  const signal = { pause: pauseBackfillSignal, resume: resumeBackfillSignal, cancel: cancelBackfillSignal }[
    action
  ];
  await withTemporal(loadConfig(), async (client) =>
    (await runningBackfill(client, workflowId, action)).signal(signal),
  );
  console.log(
    `${action} sent to ${workflowId}${action === 'resume' ? '' : ' (takes effect after the current chunk)'}`,
  );
}

async function backfillSet(args: string[]): Promise<void> {
  const [workflowId, rest] = positional('backfill set', 'WORKFLOW_ID', args);
  const options = parse('backfill set', rest, {
    'batch-size': { type: 'string' },
    'delay-ms': { type: 'string' },
    json: { type: 'boolean' },
  });
  const change = {
    batchSize: integerOption('backfill set', 'batch-size', options['batch-size']),
    delayMs: integerOption('backfill set', 'delay-ms', options['delay-ms']),
  };
  if (change.batchSize === undefined && change.delayMs === undefined) {
    throw new UsageError('dbops backfill set: give --batch-size N and/or --delay-ms N');
  }
  const settings = await withTemporal(loadConfig(), async (client) => {
    const handle = await runningBackfill(client, workflowId, 'set');
    try {
      return await handle.executeUpdate(configureBackfillUpdate, { args: [change] });
    } catch (error) {
      const cause = error instanceof WorkflowUpdateFailedError ? error.cause : undefined;
      if (cause instanceof ApplicationFailure && cause.type === InvalidInputError.name) {
        throw new InvalidInputError(cause.message);
      }
      throw error;
    }
  });
  print(options.json, settings, [
    ['BATCH SIZE', 'DELAY MS'],
    [String(settings.batchSize), String(settings.delayMs)],
  ]);
}

interface WorkflowStatus {
  workflowId: string;
  workflowType: string;
  status: string;
  /** The workflow's `progress` query, when it has one and it answers. */
  progress: unknown;
}

async function workflowStatus(client: Client, workflowId: string): Promise<WorkflowStatus> {
  const handle = client.workflow.getHandle(workflowId);
  const description = await handle.describe().catch((error: Error) => {
    if (error instanceof WorkflowNotFoundError) throw new Error(`no workflow ${workflowId}`);
    throw error;
  });
  const progress: unknown = await handle.query('progress').catch(() => undefined);
  return { workflowId, workflowType: description.type, status: description.status.name, progress };
}

/** A backfill as its progress bar; another workflow as its type, status and step (or stage). */
function statusLine({ workflowType, status, progress }: WorkflowStatus): string {
  if (workflowType === 'backfill' && progress !== undefined) {
    return backfillProgressLine(progress as BackfillProgress);
  }
  const where = progress as { step?: unknown; stage?: unknown } | undefined;
  const step = where?.step ?? where?.stage;
  return `${workflowType} ${status}${typeof step === 'string' ? `: ${step}` : ''}`;
}

/** Follows a workflow until it closes (`--json`: once); exit 1 when it failed. */
async function status(args: string[]): Promise<number> {
  const [workflowId, rest] = positional('status', 'WORKFLOW_ID', args);
  const { json } = parse('status', rest, { json: { type: 'boolean' } });
  const final = await withTemporal(loadConfig(), async (client) => {
    if (json) return workflowStatus(client, workflowId);
    let last = '';
    for (;;) {
      const now = await workflowStatus(client, workflowId);
      const line = statusLine(now);
      // A terminal redraws one line; a pipe gets a line per change.
      if (process.stdout.isTTY) process.stdout.write(`\r\x1b[K${line}`);
      else if (line !== last) console.log(line);
      last = line;
      if (now.status !== 'RUNNING') {
        if (process.stdout.isTTY) process.stdout.write('\n');
        return now;
      }
      await sleep(1000);
    }
  });
  if (json) console.log(JSON.stringify(final, null, 2));
  else if (final.workflowType === 'backfill') console.log(`${workflowId}: ${final.status}`);
  return ['RUNNING', 'COMPLETED', 'CONTINUED_AS_NEW'].includes(final.status) ? 0 : 1;
}

async function codecServer(args: string[]): Promise<void> {
  parse('codec-server', args, {});
  await runCodecServer(loadConfig());
}

const commands: Record<string, (args: string[]) => Promise<void | number>> = {
  instances,
  snapshots,
  schedules,
  maintenance: maintenanceCommand,
  health,
  backup: backupCommand,
  restore,
  'dr-test': drTestCommand,
  deploy,
  backfill: backfillCommand,
  status,
  'codec-server': codecServer,
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
