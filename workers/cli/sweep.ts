/**
 * `dbops sweep [--dry-run] [--json]`: runs the orphan sweep (workflows/sweep-orphans.ts) now,
 * instead of waiting for its hourly schedule, and prints one line per instance it removed or kept
 * with the reason, then a summary line. Exit 1 when an orphan could not be deleted.
 */

import { sweepOrphans } from '../../workflows';
import { utcStamp } from '../../workflows/lib/recovery';
import { summarizeSweep, type SweepReport } from '../../workflows/sweep-orphans';
import { loadConfig } from '../config';
import {
  type CommandGroup,
  explainFailure,
  parse,
  pollTimeouts,
  print,
  reportOfFailure,
  runWithProgress,
  withTemporal,
} from './common';

export const sweep: CommandGroup = {
  usage: `  sweep [--dry-run] [--json]         delete DR copies and restore targets whose run has ended
                                     (--dry-run: list them only), saying why for each instance`,
  commands: { sweep: sweepCommand },
};

async function sweepCommand(args: string[]): Promise<number> {
  const options = parse('sweep', args, { 'dry-run': { type: 'boolean' }, json: { type: 'boolean' } });
  const dryRun = options['dry-run'] ?? false;
  const json = options.json ?? false;
  const config = loadConfig();
  const workflowId = `sweep-orphans-${utcStamp(new Date())}`;
  let report: SweepReport;
  try {
    report = await withTemporal(config, (client) =>
      runWithProgress(
        client,
        workflowId,
        () =>
          client.workflow.start(sweepOrphans, {
            taskQueue: config.temporal.taskQueue,
            workflowId,
            staticSummary: `Orphan sweep${dryRun ? ' (dry run)' : ''}`,
            args: [{ dryRun, timeouts: pollTimeouts(config) }],
          }),
        json,
      ),
    );
  } catch (error) {
    // A sweep that could not delete every orphan carries its report: print it, then exit 1.
    const carried = reportOfFailure<SweepReport>(error, 'SweepIncomplete');
    if (carried === undefined) return explainFailure(Promise.reject(error as Error));
    report = carried;
  }
  const rows = [
    ...report.removed.map((i) => [i.instanceId, dryRun ? 'would remove' : 'removed', i.reason]),
    ...report.failed.map((i) => [i.instanceId, 'FAILED', i.reason]),
    ...report.kept.map((i) => [i.instanceId, 'kept', i.reason]),
  ];
  if (json || rows.length > 0) print(json, report, [['INSTANCE', 'ACTION', 'REASON'], ...rows]);
  if (!json) console.log(`${rows.length > 0 ? '\n' : ''}${summarizeSweep(report)}`);
  return report.failed.length > 0 ? 1 : 0;
}
