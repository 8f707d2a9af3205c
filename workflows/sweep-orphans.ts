/**
 * `sweepOrphans`: deletes the copies no run manages any more. A terminated `drTest` never runs its
 * cleanup, so its production-sized copy would stay until the next month's test; a restore
 * cancelled or terminated while its create call was in flight can leave a copy nobody knows of.
 * Scheduled hourly (workers/schedules.ts) and run by `dbops sweep [--dry-run]`.
 *
 * 1. Finds every instance tagged `dbops:purpose` `dr-test`, `rehearsal` or `restore` and asks
 *    Temporal how its owning run (`dbops:workflow-id`, `dbops:run-id`) stands
 *    (activities/recovery/orphans.ts). A DR or rehearsal copy is an orphan once its owner has
 *    closed in any way; a restore target only when its
 *    owner was cancelled, terminated or timed out (a completed restore's instance is the user's
 *    result, a failed one is kept for inspection). An instance tagged `dbops:keep=true`, one whose
 *    owner still runs and one without owner tags are kept.
 * 2. Deletes the orphans (no final snapshot), all at once, and waits until each is gone; a dry run
 *    deletes nothing. Many long deletions continue as new, carrying what was removed and the waits.
 * 3. Reports what it removed, what it kept and why; a deletion that failed fails the run
 *    (`SweepIncomplete`, the report in its details) so the schedule's failure shows.
 */
import {
  ApplicationFailure,
  condition,
  ContinueAsNew,
  continueAsNew,
  defineQuery,
  isCancellation,
  log,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';

import type { Activities } from '../activities';
import type { OrphanFinding } from '../activities/recovery/orphans';
import { NON_RETRYABLE_ERROR_TYPES } from './lib/errors';
import type { WaitPosition } from './lib/polling';
import {
  invalidInput,
  optionalBoolean,
  rejectUnknownFields,
  requireIsoTime,
  requireObject,
  requireWaitPosition,
  timeouts as parseTimeouts,
  type RecoveryTimeouts,
} from './lib/recovery';
import { OWNER_TAGS } from './lib/owner-tags';
import { deleteOwnedInstance, failureMessage } from './lib/recovery-steps';
import { DbopsOperation } from './lib/search-attributes';

export interface SweepOrphansInput {
  /** List what would be removed and delete nothing. */
  dryRun?: boolean;
  timeouts?: Partial<RecoveryTimeouts>;
  /** Carried over by continue-as-new; not for callers. */
  resume?: SweepResume;
}

/**
 * Where a sweep stood when its run continued as new: the orphans it had removed, and the waits
 * for the deletions it had asked for. The next run finds the orphans again (those being deleted
 * are still listed) and goes on with their waits.
 */
export interface SweepResume {
  startedAt: string;
  removed: SweptInstance[];
  /** By instance id. */
  waits: Record<string, WaitPosition>;
}

/** An instance carrying our tags, with why it was removed, kept, or could not be removed. */
export type SweptInstance = Omit<OrphanFinding, 'orphan'>;

export interface SweepReport {
  workflowId: string;
  dryRun: boolean;
  startedAt: string;
  finishedAt: string;
  /** Orphans deleted; on a dry run, the orphans a sweep would delete. */
  removed: SweptInstance[];
  /** Instances with our tags left alone. */
  kept: SweptInstance[];
  /** Orphans whose deletion failed; `reason` says why. */
  failed: SweptInstance[];
}

export interface SweepProgress {
  operation: 'sweepOrphans';
  /** What the sweep is doing now, e.g. `deleting orphans: 1 of 2 done`. */
  step: string;
  updatedAt: string;
}

/** The same query name as the other recovery workflows: `dbops status` and the CLI read it. */
export const sweepProgressQuery = defineQuery<SweepProgress>('progress');

const { findOrphans } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  // One Temporal describe per tagged instance, heartbeating after each.
  heartbeatTimeout: '1 minute',
  retry: {
    initialInterval: '2 seconds',
    maximumInterval: '1 minute',
    maximumAttempts: 8,
    nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES,
  },
});

export async function sweepOrphans(input?: SweepOrphansInput): Promise<SweepReport> {
  const { dryRun, timeouts, resume } = validate(input);
  let progress: SweepProgress = {
    operation: 'sweepOrphans',
    step: 'starting',
    updatedAt: new Date().toISOString(),
  };
  setHandler(sweepProgressQuery, () => progress);
  const setStep = (step: string) => {
    progress = { ...progress, step, updatedAt: new Date().toISOString() };
    setCurrentDetails(`sweepOrphans: ${step}`);
  };
  upsertSearchAttributes([{ key: DbopsOperation, value: 'sweepOrphans' }]);
  const report: SweepReport = {
    workflowId: workflowInfo().workflowId,
    dryRun,
    startedAt: resume?.startedAt ?? new Date().toISOString(),
    finishedAt: '',
    removed: [...(resume?.removed ?? [])],
    kept: [],
    failed: [],
  };

  setStep('finding instances whose owning run has closed');
  const findings = await findOrphans();
  const orphans: SweptInstance[] = [];
  for (const { orphan, ...instance } of findings) {
    if (!orphan) report.kept.push(instance);
    else if (dryRun) report.removed.push(instance);
    else orphans.push(instance);
  }
  for (const instance of report.kept) log.info(`keeping ${instance.instanceId}: ${instance.reason}`);

  let done = 0;
  // Many deletions at once can fill the history: the sweep then continues as new with them, once
  // every deletion still going has come to a pause between two looks (no call left in flight).
  const waits: Record<string, WaitPosition> = {};
  let paused = 0;
  const carryOver = async (): Promise<never> => {
    paused++;
    await condition(() => paused + done === orphans.length);
    return continueAsNew<typeof sweepOrphans>({
      ...input,
      resume: { startedAt: report.startedAt, removed: report.removed, waits },
    });
  };

  if (orphans.length > 0) setStep(`deleting orphans: 0 of ${orphans.length} done`);
  await Promise.all(
    orphans.map(async (instance) => {
      log.warn(`removing ${instance.instanceId}: ${instance.reason}`);
      const owner = {
        [OWNER_TAGS.workflowId]: instance.owner!.workflowId,
        [OWNER_TAGS.runId]: instance.owner!.runId,
      };
      try {
        const outcome = await deleteOwnedInstance(instance.instanceId, owner, timeouts, {
          resume: resume?.waits[instance.instanceId],
          started: (wait) => {
            waits[instance.instanceId] = wait;
          },
          continueAsNew: carryOver,
        });
        if (outcome === 'not-ours') {
          report.kept.push({
            ...instance,
            reason: 'replaced by an instance of another run before the deletion',
          });
        } else {
          report.removed.push(
            outcome === 'deleted' ? instance : { ...instance, reason: `${instance.reason} (already gone)` },
          );
        }
      } catch (error) {
        if (isCancellation(error) || error instanceof ContinueAsNew) throw error;
        report.failed.push({ ...instance, reason: `not deleted: ${failureMessage(error)}` });
      }
      setStep(`deleting orphans: ${++done} of ${orphans.length} done`);
    }),
  );

  for (const list of [report.removed, report.kept, report.failed]) {
    list.sort((a, b) => a.instanceId.localeCompare(b.instanceId));
  }
  report.finishedAt = new Date().toISOString();
  const summary = summarizeSweep(report);
  if (report.failed.length > 0) {
    log.error(`ALERT: ${summary}`, { failed: report.failed.map((i) => `${i.instanceId}: ${i.reason}`) });
    throw ApplicationFailure.create({
      message: summary,
      type: 'SweepIncomplete',
      nonRetryable: true,
      details: [report],
    });
  }
  log.info(summary);
  setStep(dryRun ? 'dry run done' : 'done');
  return report;
}

/** One line for logs and `dbops sweep`: `sweep removed 2 orphans (a, b), kept 3`, and what failed. */
export function summarizeSweep(report: SweepReport): string {
  const ids = (list: SweptInstance[]) =>
    list.length === 0 ? '' : ` (${list.map((i) => i.instanceId).join(', ')})`;
  const orphans = (n: number) => `${n} orphan${n === 1 ? '' : 's'}`;
  const removed = `${report.dryRun ? 'would remove' : 'removed'} ${orphans(report.removed.length)}${ids(report.removed)}`;
  const failed =
    report.failed.length === 0 ? '' : `, FAILED to remove ${report.failed.length}${ids(report.failed)}`;
  return `${report.dryRun ? 'dry run: sweep ' : 'sweep '}${removed}, kept ${report.kept.length}${failed}`;
}

function validate(raw: unknown) {
  const input = raw === undefined ? {} : requireObject(raw);
  rejectUnknownFields(input, ['dryRun', 'timeouts'], ['resume']);
  return {
    dryRun: optionalBoolean('dryRun', input.dryRun),
    timeouts: parseTimeouts(input.timeouts),
    resume: input.resume === undefined ? undefined : requireResume(input.resume),
  };
}

/** A carried-over sweep, checked as far as it steers the run (a caller has no business here). */
function requireResume(raw: unknown): SweepResume {
  const resume = requireObject(raw);
  requireIsoTime('resume.startedAt', resume.startedAt);
  if (!Array.isArray(resume.removed)) {
    throw invalidInput(`resume.removed ${JSON.stringify(resume.removed)} is not valid: a list`);
  }
  for (const [instanceId, wait] of Object.entries(requireObject(resume.waits))) {
    requireWaitPosition(`resume.waits.${instanceId}`, wait);
  }
  return resume as unknown as SweepResume;
}
