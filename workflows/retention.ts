/**
 * `retention`: expires manual and pre-migration snapshots by policy, so the ones `backup` and
 * `deployMigration` take do not pile up (and cost) for ever, while what a recovery may need stays.
 * Scheduled daily by default (workers/schedules.ts) and run by `dbops retention [--dry-run]`.
 *
 * 1. Judges every snapshot of the instance (of every instance when none is named)
 *    (activities/recovery/retention.ts). In scope: available snapshots dbops took (`dbops:purpose`
 *    `backup` or `pre-migration`); automated snapshots and manual ones dbops did not make only when
 *    the policy includes them. An in-scope snapshot expires unless it is among the newest
 *    `keepNewest`, younger than `keepDays` days, the instance's newest available snapshot, tagged
 *    `dbops:keep`, or used by a restore in flight (a running restore or DR test, found through
 *    Temporal visibility, or a restore or export the provider sees reading it).
 * 2. Unless it is a dry run, deletes the expired ones one at a time; each deletion checks the keep
 *    tag, the newest snapshot and the restores in flight again right before deleting, and finds a
 *    snapshot already gone (a retry after a lost reply) done.
 * 3. Reports every snapshot: deleted (on a dry run: would delete), kept, or failed, each with why.
 *    A deletion that failed fails the run (`RetentionIncomplete`, the report in its details), so
 *    the schedule's failure shows.
 */
import { ApplicationFailure, isCancellation, log, proxyActivities, workflowInfo } from '@temporalio/workflow';

import type { Activities } from '../activities';
import type { SnapshotVerdict } from '../activities/recovery/retention';
import { NON_RETRYABLE_ERROR_TYPES } from './lib/errors';
import {
  invalidInput,
  optionalBoolean,
  rejectUnknownFields,
  requireIdentifier,
  requireObject,
  trackRecovery,
} from './lib/recovery';
import { failureMessage } from './lib/recovery-steps';
import { DEFAULT_RETENTION, MAX_KEEP_DAYS, type RetentionPolicy } from './lib/retention-policy';

export interface RetentionInput extends Partial<RetentionPolicy> {
  /** Only this instance's snapshots; every instance's when absent. */
  instanceId?: string;
  /** List what would be deleted and delete nothing. */
  dryRun?: boolean;
}

/** One snapshot in the report; `reason` says why it went, stayed, or could not be deleted. */
export type RetainedSnapshot = Omit<SnapshotVerdict, 'expire'>;

export interface RetentionReport {
  workflowId: string;
  instanceId: string | null;
  dryRun: boolean;
  policy: RetentionPolicy;
  startedAt: string;
  finishedAt: string;
  /** Snapshots deleted (or found already gone); on a dry run, those a run would delete. */
  deleted: RetainedSnapshot[];
  kept: RetainedSnapshot[];
  failed: RetainedSnapshot[];
}

const retry = {
  initialInterval: '2 seconds',
  maximumInterval: '1 minute',
  maximumAttempts: 8,
  nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES,
};

const { judgeSnapshots, expireSnapshot } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  // Heartbeats after each instance judged and between the steps of a deletion.
  heartbeatTimeout: '1 minute',
  retry,
});

export async function retention(input?: RetentionInput): Promise<RetentionReport> {
  const { instanceId, dryRun, policy } = validate(input);
  const setStep = trackRecovery('retention', instanceId ?? 'all instances');
  const report: RetentionReport = {
    workflowId: workflowInfo().workflowId,
    instanceId,
    dryRun,
    policy,
    startedAt: new Date().toISOString(),
    finishedAt: '',
    deleted: [],
    kept: [],
    failed: [],
  };

  setStep('judging snapshots');
  const verdicts = await judgeSnapshots({ instanceId, policy });
  const expired: RetainedSnapshot[] = [];
  for (const { expire, ...snapshot } of verdicts) {
    if (!expire) report.kept.push(snapshot);
    else if (dryRun) report.deleted.push(snapshot);
    else expired.push(snapshot);
  }

  for (const [index, snapshot] of expired.entries()) {
    setStep(`deleting snapshots: ${index} of ${expired.length} done`);
    try {
      const { outcome, reason } = await expireSnapshot({ ...snapshot, expire: true });
      (outcome === 'kept' ? report.kept : report.deleted).push({ ...snapshot, reason });
      log.info(`${outcome === 'kept' ? 'keeping' : 'expired'} ${snapshot.snapshotId}: ${reason}`);
    } catch (error) {
      if (isCancellation(error)) throw error;
      report.failed.push({ ...snapshot, reason: `not deleted: ${failureMessage(error)}` });
    }
  }

  report.finishedAt = new Date().toISOString();
  const summary = summarizeRetention(report);
  if (report.failed.length > 0) {
    log.error(`ALERT: ${summary}`, {
      failed: report.failed.map((s) => `${s.snapshotId}: ${s.reason}`),
    });
    throw ApplicationFailure.create({
      message: summary,
      type: 'RetentionIncomplete',
      nonRetryable: true,
      details: [report],
    });
  }
  log.info(summary);
  setStep(dryRun ? 'dry run done' : 'done');
  return report;
}

/** One line for logs and `dbops retention`: `retention deleted 2 snapshots (a, b), kept 5`. */
export function summarizeRetention(report: RetentionReport): string {
  const ids = (list: RetainedSnapshot[]) =>
    list.length === 0 ? '' : ` (${list.map((s) => s.snapshotId).join(', ')})`;
  const snapshots = (n: number) => `${n} snapshot${n === 1 ? '' : 's'}`;
  const deleted = `${report.dryRun ? 'would delete' : 'deleted'} ${snapshots(report.deleted.length)}${ids(report.deleted)}`;
  const failed =
    report.failed.length === 0 ? '' : `, FAILED to delete ${report.failed.length}${ids(report.failed)}`;
  return `${report.dryRun ? 'dry run: retention ' : 'retention '}${deleted}, kept ${report.kept.length}${failed}`;
}

function validate(raw: unknown) {
  const input = raw === undefined ? {} : requireObject(raw);
  rejectUnknownFields(input, [
    'instanceId',
    'keepNewest',
    'keepDays',
    'includeForeign',
    'includeAutomated',
    'dryRun',
  ]);
  const keepNewest = input.keepNewest ?? DEFAULT_RETENTION.keepNewest;
  if (typeof keepNewest !== 'number' || !Number.isInteger(keepNewest) || keepNewest < 1) {
    throw invalidInput(
      `keepNewest ${JSON.stringify(keepNewest)} is not valid: a whole number of at least 1 (the newest snapshot always stays)`,
    );
  }
  const keepDays = input.keepDays ?? DEFAULT_RETENTION.keepDays;
  if (
    typeof keepDays !== 'number' ||
    !Number.isFinite(keepDays) ||
    keepDays < 0 ||
    keepDays > MAX_KEEP_DAYS
  ) {
    throw invalidInput(
      `keepDays ${JSON.stringify(keepDays)} is not valid: a number of days from 0 to ${MAX_KEEP_DAYS}`,
    );
  }
  return {
    instanceId: input.instanceId === undefined ? null : requireIdentifier('instanceId', input.instanceId),
    dryRun: optionalBoolean('dryRun', input.dryRun),
    policy: {
      keepNewest,
      keepDays,
      includeForeign: optionalBoolean('includeForeign', input.includeForeign),
      includeAutomated: optionalBoolean('includeAutomated', input.includeAutomated),
    },
  };
}
