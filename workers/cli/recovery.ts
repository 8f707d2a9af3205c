/**
 * `dbops backup`, `dbops restore` and `dbops dr-test`: the recovery workflows, waited for with
 * their progress on stderr and their result as a table (or `--json`).
 */

import { backup, drTest, pitrRestore, snapshotRestore } from '../../workflows';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from '../../workflows/lib/identifiers';
import { utcDate, utcStamp, type DrTestReport } from '../../workflows/lib/recovery';
import type { RestoreResult } from '../../workflows/pitr-restore';
import { loadConfig } from '../config';
import { drTestRun, type DrTestRun } from '../dr-test-run';
import { FLEET_FLAGS, fleetCommand, fleetOptions } from '../fleet-run';
import {
  type CommandGroup,
  explainFailure,
  instanceOption,
  parse,
  pollTimeouts,
  print,
  reportOfFailure,
  runWithProgress,
  UsageError,
  withTemporal,
} from './common';

export const recovery: CommandGroup = {
  usage: `  backup --instance ID [--export] [--json]
                                     manual snapshot (and export), waited for until done
  restore --instance ID --to <ISO-8601|latest> [--target NEW_ID] [--json]
  restore --snapshot SNAPSHOT [--instance ID] [--target NEW_ID] [--json]
                                     restore as a new instance: to a point in time, or a snapshot
  dr-test --instance ID [--region R] [--point-in-time random|<ISO-8601>] [--json]
                                     restore the newest snapshot to a temporary instance, check
                                     it, delete it, report RPO / RTO; exit 1 when a check fails.
                                     --region R: in region R, by the worker serving the task queue
                                     <task queue>-R, from the backups replicated there.
                                     --point-in-time: restore to that time (or a random one) of
                                     the restorable window instead, and measure how close to it
                                     the copy's data reaches (the RPO heartbeat)
  dr-test --all [--tag K=V] [--concurrency N] [--point-in-time random|<ISO-8601>] [--json]
                                     the DR test of every managed instance (or of those tagged
                                     K=V), N at a time (default 3), with one summary; exit 1
                                     when one of them fails`,
  commands: { backup: backupCommand, restore, 'dr-test': drTestCommand },
};

async function backupCommand(args: string[]): Promise<void> {
  const options = parse('backup', args, {
    instance: { type: 'string' },
    export: { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const instanceId = instanceOption(options.instance);
  if (instanceId === undefined) throw new UsageError('dbops backup: --instance ID is required');
  const config = loadConfig();
  const stamp = utcStamp(new Date());
  const workflowId = `backup-${instanceId}-${stamp}`;
  // Named with the run's own stamp: two requests a second apart are two runs with a snapshot each,
  // even when both runs start within the same second of the server's clock (the workflow's
  // default name is stamped with its start time). A name too long is left to the workflow to refuse.
  const snapshotId = `${instanceId}-manual-${stamp}`;
  const result = await withTemporal(config, (client) =>
    explainFailure(
      runWithProgress(
        client,
        workflowId,
        () =>
          client.workflow.start(backup, {
            taskQueue: config.temporal.taskQueue,
            workflowId,
            // The same request within the same second joins the first; a later one takes its own snapshot.
            workflowIdConflictPolicy: 'USE_EXISTING',
            staticSummary: `Backup of ${instanceId}${options.export ? ' with export' : ''}`,
            args: [
              {
                instanceId,
                ...(isRdsIdentifier(snapshotId) ? { snapshotId } : {}),
                export: options.export ?? false,
                timeouts: pollTimeouts(config),
              },
            ],
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
  if (options.target !== undefined && !isRdsIdentifier(options.target)) {
    throw new UsageError(
      `dbops restore: --target ${JSON.stringify(options.target)} is not valid: ${RDS_IDENTIFIER_RULE}`,
    );
  }
  // A named target is one restore: a second request for it joins the running one. Without a
  // target, each request restores to its own new instance (named from its start time).
  const workflowId =
    options.target === undefined
      ? `restore-${instanceId ?? options.snapshot}-${utcStamp(new Date())}`
      : `restore-as-${options.target}`;
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
                workflowIdConflictPolicy: 'USE_EXISTING',
                staticSummary: `Restore of snapshot ${options.snapshot} as a new instance`,
                args: [
                  { snapshotId: options.snapshot, instanceId, targetInstanceId: options.target, timeouts },
                ],
              })
            : client.workflow.start(pitrRestore, {
                taskQueue: config.temporal.taskQueue,
                workflowId,
                workflowIdConflictPolicy: 'USE_EXISTING',
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
  const options = parse('dr-test', args, {
    instance: { type: 'string' },
    region: { type: 'string' },
    'point-in-time': { type: 'string' },
    json: { type: 'boolean' },
    ...FLEET_FLAGS,
  });
  const fleetRun = fleetOptions('dr-test', options);
  if (fleetRun !== undefined) {
    if (options.instance !== undefined || options.region !== undefined) {
      throw new UsageError('dbops dr-test: --all goes without --instance and --region');
    }
    // Checked by the workflow, as for one instance: a bad value starts nothing.
    return fleetCommand(
      'drTest',
      { ...fleetRun, pointInTime: options['point-in-time'] },
      options.json ?? false,
    );
  }
  const instanceId = instanceOption(options.instance);
  if (instanceId === undefined) throw new UsageError('dbops dr-test: --instance ID is required (or --all)');
  // Checked by the workflow, with the source's restorable window: a bad value changes nothing.
  const pointInTime = options['point-in-time'];
  const region = options.region;
  if (region !== undefined && !/^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d+$/.test(region)) {
    throw new UsageError(
      `dbops dr-test: --region ${JSON.stringify(region)} is not an AWS region such as us-west-2`,
    );
  }
  const config = loadConfig();
  let report: DrTestReport;
  try {
    report = await withTemporal(config, async (client) => {
      const request = {
        taskQueue: config.temporal.taskQueue,
        instanceId,
        timeouts: pollTimeouts(config),
        pointInTime,
      };
      const run =
        region === undefined ? await drTestRun(client, request) : regionalDrTestRun(client, request, region);
      return runWithProgress(client, run.workflowId, run.start, options.json ?? false);
    });
  } catch (error) {
    // A failed DR test carries its report: print it like a passed one, then exit 1.
    const carried = reportOfFailure<DrTestReport>(error, 'DrTestFailed');
    if (carried === undefined) return explainFailure(Promise.reject(error as Error));
    report = carried;
  }
  printDrReport(options.json ?? false, report);
  return report.ok ? 0 : 1;
}

/**
 * The DR test in another region (the backup region, after or before the loss of the primary's):
 * run by the worker there, which serves `<task queue>-<region>` with that region's settings, and
 * under its own workflow id, so it neither joins nor blocks the DR test of the primary's region.
 */
function regionalDrTestRun(
  client: Parameters<typeof drTestRun>[0],
  request: Parameters<typeof drTestRun>[1],
  region: string,
): DrTestRun {
  const { instanceId, timeouts, pointInTime } = request;
  const workflowId = `dr-test-${instanceId}-${region}-${utcDate(new Date())}`;
  return {
    workflowId,
    start: () =>
      client.workflow.start(drTest, {
        taskQueue: `${request.taskQueue}-${region}`,
        workflowId,
        workflowIdConflictPolicy: 'USE_EXISTING',
        staticSummary: `DR test of ${instanceId} in ${region}: restore its replicated backups, check them, delete the copy`,
        args: [{ instanceId, timeouts, ...(pointInTime === undefined ? {} : { pointInTime }) }],
      }),
  };
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
      (report.pointInTime === undefined
        ? ''
        : `\n  point in time ${report.pointInTime.target}: data to within ${report.pointInTime.dataWithinSeconds ?? '?'} s of it`) +
      (report.error === null ? '' : `\n  error: ${report.error}`) +
      report.reportLocations.map((location) => `\n  report: ${location}`).join(''),
  );
}
