/**
 * `dbops retention [--instance ID] [--keep-newest N] [--keep-days D] [--dry-run] [--json]`: runs
 * snapshot retention (workflows/retention.ts) now, with the configured policy and these flags over
 * it, and prints one line per snapshot with what happened to it and why, then a summary line.
 * `--dry-run` deletes nothing and lists the same verdicts. Exit 1 when a deletion failed.
 */

import { retention as retentionWorkflow } from '../../workflows';
import { utcStamp } from '../../workflows/lib/recovery';
import { MAX_KEEP_DAYS } from '../../workflows/lib/retention-policy';
import { summarizeRetention, type RetentionReport } from '../../workflows/retention';
import { loadConfig } from '../config';
import {
  type CommandGroup,
  explainFailure,
  instanceOption,
  integerOption,
  parse,
  print,
  reportOfFailure,
  runWithProgress,
  UsageError,
  withTemporal,
} from './common';

export const retention: CommandGroup = {
  usage: `  retention [--instance ID] [--keep-newest N] [--keep-days D] [--dry-run] [--json]
                                     delete backup and pre-migration snapshots the policy
                                     expires (--dry-run: list them only), saying why each
                                     other snapshot stays; flags override the configured policy`,
  commands: { retention: retentionCommand },
};

async function retentionCommand(args: string[]): Promise<number> {
  const options = parse('retention', args, {
    instance: { type: 'string' },
    'keep-newest': { type: 'string' },
    'keep-days': { type: 'string' },
    'dry-run': { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const instanceId = instanceOption(options.instance);
  const keepNewest = integerOption('retention', 'keep-newest', options['keep-newest']);
  if (keepNewest !== undefined && keepNewest < 1) {
    throw new UsageError(
      `dbops retention: --keep-newest ${keepNewest} is not valid: at least 1 (the newest snapshot always stays)`,
    );
  }
  const keepDays = integerOption('retention', 'keep-days', options['keep-days']);
  if (keepDays !== undefined && (keepDays < 0 || keepDays > MAX_KEEP_DAYS)) {
    throw new UsageError(`dbops retention: --keep-days ${keepDays} is not valid: from 0 to ${MAX_KEEP_DAYS}`);
  }
  const dryRun = options['dry-run'] ?? false;
  const json = options.json ?? false;
  const config = loadConfig();
  const configured = config.operations.retention;
  const workflowId = `retention-${instanceId ?? 'all'}-${utcStamp(new Date())}`;
  let report: RetentionReport;
  try {
    report = await withTemporal(config, (client) =>
      runWithProgress(
        client,
        workflowId,
        () =>
          client.workflow.start(retentionWorkflow, {
            taskQueue: config.temporal.taskQueue,
            workflowId,
            staticSummary: `Snapshot retention of ${instanceId ?? 'every instance'}${dryRun ? ' (dry run)' : ''}`,
            args: [
              {
                keepNewest: keepNewest ?? configured.keepNewest,
                keepDays: keepDays ?? configured.keepDays,
                includeForeign: configured.includeForeign,
                includeAutomated: configured.includeAutomated,
                ...(instanceId === undefined ? {} : { instanceId }),
                dryRun,
              },
            ],
          }),
        json,
      ),
    );
  } catch (error) {
    // A run that could not delete every expired snapshot carries its report: print it, then exit 1.
    const carried = reportOfFailure<RetentionReport>(error, 'RetentionIncomplete');
    if (carried === undefined) return explainFailure(Promise.reject(error as Error));
    report = carried;
  }
  const row = (action: string) => (s: RetentionReport['kept'][number]) => [
    s.snapshotId,
    s.instanceId,
    s.createdAt ?? '-',
    action,
    s.reason,
  ];
  const rows = [
    ...report.deleted.map(row(dryRun ? 'would delete' : 'deleted')),
    ...report.failed.map(row('FAILED')),
    ...report.kept.map(row('kept')),
  ];
  if (json || rows.length > 0) {
    print(json, report, [['SNAPSHOT', 'INSTANCE', 'CREATED', 'ACTION', 'REASON'], ...rows]);
  }
  if (!json) console.log(`${rows.length > 0 ? '\n' : ''}${summarizeRetention(report)}`);
  return report.failed.length > 0 ? 1 : 0;
}
