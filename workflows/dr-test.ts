/**
 * `drTest`: the monthly disaster-recovery test of the runbook. Restores the newest available
 * snapshot of an instance to `<instance>-dr-test-<YYYYMMDD>`, checks that the copy is a usable
 * replacement (activities/postgres/dr-checks.ts), ALWAYS deletes the copy (success, failed check,
 * activity failure, cancellation: the cleanup runs in a non-cancellable scope), and reports the
 * RPO (snapshot age), the RTO (restore duration) and every check, as its result and as JSON and
 * Markdown files. A point-in-time drill (`pointInTime`: a time, or `random` inside the restorable
 * window) restores through the provider's point-in-time restore instead, which proves the log
 * chain, and measures on the copy how close to the target its data reaches (the RPO heartbeat).
 * A run first removes the copies that crashed runs left behind (orphans). A long
 * wait continues as new with the copy and the report so far (DrTestResume); the last run of the
 * chain deletes the copy.
 */
import {
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  ContinueAsNew,
  continueAsNew,
  isCancellation,
  log,
  metricMeter,
  patched,
  workflowInfo,
} from '@temporalio/workflow';

import type {
  Endpoint,
  InstanceDescription,
  SnapshotDescription,
} from '../activities/control-plane/control-plane';
import type { DrCheck } from '../activities/postgres/dr-checks';
import { PointInTimeRestoreNotEnabledError, RestoreTimeOutOfRangeError } from './lib/errors';
import { recordDrTest } from './lib/metrics';
import {
  derivedIdentifier,
  invalidInput,
  numberInRange,
  ownerTags,
  rejectUnknownFields,
  requireIdentifier,
  requireIsoTime,
  requireObject,
  requireOwner,
  requireWaitPosition,
  runOwner,
  secondsBetween,
  timeouts as parseTimeouts,
  trackRecovery,
  utcDate,
  type DrTestReport,
  type PointInTimeDrill,
  type RecoveryTimeouts,
} from './lib/recovery';
import { DR_PURPOSE, OWNER_TAGS } from './lib/owner-tags';
import { toMs, type WaitPosition } from './lib/polling';
import {
  checks as checkActivities,
  controlPlane,
  createCalls,
  deleteInstance,
  deleteOwnedInstance,
  failureMessage,
  lookups,
  waitForAvailable,
  waitUntilGone,
  type WaitCarry,
} from './lib/recovery-steps';

export interface DrTestInput {
  instanceId: string;
  /** Minimum recall@10 of each HNSW index against exact search (default 0.9). */
  minRecall?: number;
  /** Stored embeddings used as query vectors for recall (default 20). */
  sampleQueries?: number;
  /** `hnsw.ef_search` for the recall queries (default 100). */
  efSearch?: number;
  /**
   * What to restore: `latest-snapshot` (default) the newest available snapshot; `random` a point
   * chosen at random inside the source's restorable window; or an ISO-8601 time inside it.
   */
  pointInTime?: string;
  /** A point-in-time drill fails when the copy's data ends further than this before the target (default 120). */
  rpoLimitSeconds?: number;
  timeouts?: Partial<RecoveryTimeouts>;
  /** Carried over by continue-as-new; not for callers. */
  resume?: DrTestResume;
}

/**
 * Where a DR test stood when its run continued as new: its copy's name, the report so far, and
 * the wait it was in (for another test's copy to be gone, or for its own copy to be available).
 */
export type DrTestResume = DrTestWait & {
  target: string;
  report: DrTestReport;
  /** The run that restored the copy: the copy's owner tags name it. */
  owner: Record<string, string>;
};

/** The wait a DR test hands over: for another test's copy to be gone, or for its own restore. */
type DrTestWait = { wait: WaitPosition } & (
  | { step: 'other-test'; other: string }
  | { step: 'restore'; snapshot: SnapshotDescription | null; requestedAt: string }
);

/** Runs started before a DR test waited for another one using the copy's name replay as they ran. */
const WAIT_FOR_OTHER_TEST = 'dr-test-waits-for-another-test';

/** Runs started before a cancel during the cleanup ended the run cancelled replay as they ran. */
const LATE_CANCEL = 'dr-test-cancel-during-cleanup';

/** Runs started before a DR test could restore to a point in time replay as they ran. */
const POINT_IN_TIME_DRILL = 'dr-test-point-in-time';

/**
 * Runs started before a DR test looked (describe, find, list) through local activities, its waits
 * on a steady cadence from the request, replay as they ran.
 */
const QUICK_LOOKS = 'dr-test-local-looks-on-a-steady-cadence';

export async function drTest(input: DrTestInput): Promise<DrTestReport> {
  const valid = validate(input);
  const { instanceId, timeouts, resume } = valid;
  const setStep = trackRecovery('drTest', instanceId);
  const quick = patched(QUICK_LOOKS);
  const look = lookups(quick);
  const looks = { look, steady: quick };
  const started = new Date();
  const { workflowId } = workflowInfo();
  const target = resume?.target ?? valid.target;
  const owner = resume?.owner ?? runOwner();
  const report: DrTestReport = resume?.report ?? {
    instanceId,
    workflowId,
    ok: false,
    startedAt: started.toISOString(),
    finishedAt: started.toISOString(),
    snapshot: null,
    rpoSeconds: null,
    rtoSeconds: null,
    temporaryInstanceId: target,
    temporaryInstanceDeleted: false,
    orphansRemoved: [],
    checks: [],
    error: null,
    reportLocations: [],
  };
  // A point in time is chosen, and checked against the window, before anything is changed.
  if (resume === undefined && valid.pointInTime !== 'latest-snapshot' && patched(POINT_IN_TIME_DRILL)) {
    setStep(`checking the restorable window of ${instanceId}`);
    report.pointInTime = choosePoint(await look.describeInstance(instanceId), valid.pointInTime);
    // What a disaster at the start would have lost: the age of the latest restorable time then.
    report.rpoSeconds = Math.max(0, secondsBetween(report.pointInTime.window.latest, report.startedAt)!);
  }
  const point = report.pointInTime;
  // The next run of the chain goes on with the same copy and report, and cleans up at its end.
  const carryOver = (next: DrTestWait) =>
    continueAsNew<typeof drTest>({ ...input, resume: { ...next, target, report, owner } });

  let cancelled: Error | undefined;
  // A cancel that arrives during the cleanup (which cannot be cancelled) still ends the run
  // cancelled once the copy is gone; the report then says so.
  const root = CancellationScope.current();
  const noteLateCancel = () => {
    if (cancelled !== undefined || !root.consideredCancelled || !patched(LATE_CANCEL)) return;
    cancelled = new CancelledFailure('the DR test was cancelled');
    report.error ??= 'the DR test was cancelled';
  };
  try {
    let snapshot: SnapshotDescription | null;
    let requestedAt: string;
    if (resume?.step === 'restore') ({ snapshot, requestedAt } = resume);
    else {
      if (resume === undefined) {
        setStep('removing orphans of earlier runs');
        for (const orphan of await look.findOrphanDrInstances(instanceId)) {
          log.warn(`removing ${orphan}: a DR test instance no running workflow owns`, { instanceId });
          await deleteInstance(orphan, timeouts, looks);
          report.orphansRemoved.push(orphan);
        }
      }
      // The copy's name may still be taken: by an earlier run of the same day deleting its copy, or by
      // another DR test of this instance that is running now (the schedule's while one started by
      // hand runs; orphans are gone by now, so a DR copy of this source left here has a running
      // owner). Wait until it is gone, then test. Anything else of that name is not ours to touch.
      const existing = resume === undefined ? await look.findInstance(target) : null;
      const otherTest =
        resume?.step === 'other-test'
          ? resume.other
          : existing !== null && isDrCopyOf(existing.tags, instanceId) && patched(WAIT_FOR_OTHER_TEST)
            ? (existing.tags[OWNER_TAGS.workflowId] ?? 'of unknown id')
            : undefined;
      if (existing !== null && existing.status !== 'deleting' && otherTest === undefined) {
        throw ApplicationFailure.nonRetryable(
          `instance ${target} already exists (${existing.providerStatus}) and is not a DR test copy of ${instanceId}: ` +
            `it is not tagged ${OWNER_TAGS.purpose}=${DR_PURPOSE} with ${OWNER_TAGS.source}=${instanceId}`,
          'InvalidStateError',
        );
      }
      if (otherTest !== undefined) {
        setStep(`waiting for the DR test ${otherTest} to finish with ${target}`);
        // As long as that test may take: its restore, its checks (at most an hour), its cleanup.
        const longest = toMs(timeouts.restore) + toMs('1 hour') + toMs(timeouts.deletion);
        await waitUntilGone(target, longest, timeouts, {
          resume: resume?.wait,
          continueAsNew: (wait) => carryOver({ step: 'other-test', other: otherTest, wait }),
          ...looks,
        });
      } else if (existing !== null) await waitUntilGone(target, timeouts.deletion, timeouts, looks);

      if (point !== undefined) {
        setStep(`restoring ${instanceId} to ${point.target} as ${target}`);
        snapshot = null;
        requestedAt = new Date().toISOString();
        await createCalls(timeouts).restoreToPointInTime(
          instanceId,
          target,
          { time: point.target },
          ownerTags(DR_PURPOSE, instanceId),
        );
      } else {
        setStep('finding the newest available snapshot');
        const newest = (await look.listSnapshots(instanceId)).find((s) => s.status === 'available');
        if (newest === undefined) {
          throw ApplicationFailure.nonRetryable(
            `instance ${instanceId} has no available snapshot to test: take one with dbops backup --instance ${instanceId}`,
            'NoSnapshot',
          );
        }
        snapshot = newest;
        report.snapshot = {
          snapshotId: snapshot.snapshotId,
          type: snapshot.type,
          createdAt: snapshot.createdAt,
          sizeBytes: snapshot.sizeBytes,
        };
        report.rpoSeconds = secondsBetween(snapshot.createdAt, report.startedAt);

        setStep(`restoring ${snapshot.snapshotId} as ${target}`);
        requestedAt = new Date().toISOString();
        await createCalls(timeouts).restoreFromSnapshot(
          snapshot.snapshotId,
          target,
          ownerTags(DR_PURPOSE, instanceId),
        );
      }
    }
    const restored = await waitForAvailable(
      target,
      timeouts,
      (s) => setStep(`instance ${target} ${s.providerStatus}`),
      {
        resume: resume?.step === 'restore' ? resume.wait : undefined,
        continueAsNew: (wait) => carryOver({ step: 'restore', snapshot, requestedAt, wait }),
        // The looks count from the request, as the restore time (RTO) does.
        since: quick ? Date.parse(requestedAt) : undefined,
        ...looks,
      },
    );
    report.rtoSeconds = secondsBetween(requestedAt, new Date().toISOString());

    setStep(`checking ${target}`);
    try {
      const result = await checkActivities.runDrChecks({
        endpoint: restored.endpoint,
        expectedRowCounts: snapshot?.tableRowCounts ?? null,
        expectedContentHashes: snapshot?.tableContentHashes ?? null,
        sampleQueries: valid.sampleQueries,
        minRecall: valid.minRecall,
        efSearch: valid.efSearch,
      });
      report.checks.push(...result.checks);
    } catch (error) {
      if (isCancellation(error)) throw error;
      // The checks could not even connect: that is the connectivity check failing.
      report.checks.push({ name: 'connectivity', status: 'failed', detail: failureMessage(error) });
    }
    if (point !== undefined) {
      setStep(`measuring how close to ${point.target} the data of ${target} reaches`);
      report.checks.push(await measureRpo(point, restored.endpoint, valid.rpoLimitSeconds));
    }
  } catch (error) {
    // Continued as new: the next run of the chain waits on and deletes the copy at its end.
    if (error instanceof ContinueAsNew) throw error;
    if (isCancellation(error)) cancelled = error as Error;
    report.error = isCancellation(error) ? 'the DR test was cancelled' : failureMessage(error);
  }

  await CancellationScope.nonCancellable(async () => {
    setStep(`deleting ${target}`);
    report.checks.push(await cleanup(target, owner, timeouts, looks));
    report.temporaryInstanceDeleted = report.checks.at(-1)!.status === 'passed';
    noteLateCancel();
    report.finishedAt = new Date().toISOString();
    report.ok = report.error === null && report.checks.every((check) => check.status !== 'failed');
    setStep('writing the report');
    try {
      report.reportLocations = await controlPlane.writeDrReport(report);
    } catch (error) {
      log.error(`the DR report could not be written: ${failureMessage(error)}`, { instanceId });
    }
  });
  noteLateCancel();
  if (cancelled !== undefined) throw cancelled;

  recordDrTest(metricMeter, {
    instanceId,
    success: report.ok,
    // 0 when the restore never completed: the success gauge says 0 then too.
    rtoSeconds: report.rtoSeconds ?? 0,
    finishedAt: new Date(report.finishedAt),
  });
  const summary = summarize(report);
  if (!report.ok) {
    log.error(`ALERT: ${summary}`, { instanceId, workflowId, reportLocations: report.reportLocations });
    throw ApplicationFailure.create({
      message: summary,
      type: 'DrTestFailed',
      nonRetryable: true,
      details: [report],
    });
  }
  log.info(summary, { instanceId, reportLocations: report.reportLocations });
  setStep('passed');
  return report;
}

/** A DR test's copy of `instanceId` (its tags say so). */
function isDrCopyOf(tags: Record<string, string>, instanceId: string): boolean {
  return tags[OWNER_TAGS.purpose] === DR_PURPOSE && tags[OWNER_TAGS.source] === instanceId;
}

/** The cleanup as a check of its own: a copy left running is a finding (cost, exposure). */
async function cleanup(
  target: string,
  owner: Record<string, string>,
  timeouts: RecoveryTimeouts,
  looks: WaitCarry,
): Promise<DrCheck> {
  try {
    const outcome = await deleteOwnedInstance(target, owner, timeouts, looks);
    const detail = {
      deleted: `temporary instance ${target} deleted`,
      absent: `temporary instance ${target} was never created`,
      'not-ours': `instance ${target} belongs to another run: left alone`,
    }[outcome];
    return { name: 'cleanup', status: 'passed', detail };
  } catch (error) {
    return {
      name: 'cleanup',
      status: 'failed',
      detail: `temporary instance ${target} may still exist: ${failureMessage(error)} (the next DR test removes it)`,
    };
  }
}

function summarize(report: DrTestReport): string {
  const failed = report.checks.filter((check) => check.status === 'failed');
  const head = `DR test of ${report.instanceId} ${report.ok ? 'passed' : 'FAILED'}`;
  const point = report.pointInTime;
  const snapshot =
    point !== undefined
      ? `point in time ${point.target}, data to within ${point.dataWithinSeconds ?? '?'} s of it`
      : report.snapshot === null
        ? 'no snapshot'
        : `snapshot ${report.snapshot.snapshotId}`;
  const timing = `RPO ${report.rpoSeconds ?? '?'} s, RTO ${report.rtoSeconds ?? '?'} s`;
  const problems = [
    ...(report.error === null ? [] : [report.error]),
    ...failed.map((check) => `${check.name}: ${check.detail}`),
  ];
  return `${head} (${snapshot}, ${timing})${problems.length > 0 ? `: ${problems.join('; ')}` : ''}`;
}

function validate(raw: unknown) {
  const input = requireObject(raw);
  rejectUnknownFields(
    input,
    ['instanceId', 'minRecall', 'sampleQueries', 'efSearch', 'pointInTime', 'rpoLimitSeconds', 'timeouts'],
    ['resume'],
  );
  const instanceId = requireIdentifier('instanceId', input.instanceId);
  const sampleQueries = numberInRange('sampleQueries', input.sampleQueries, 20, 1, 1000);
  if (!Number.isInteger(sampleQueries)) {
    throw invalidInput(`sampleQueries ${sampleQueries} is not valid: a whole number from 1 to 1000`);
  }
  return {
    instanceId,
    target: derivedIdentifier('instanceId', instanceId, `-dr-test-${utcDate(new Date())}`),
    minRecall: numberInRange('minRecall', input.minRecall, 0.9, 0, 1),
    sampleQueries,
    efSearch: Math.round(numberInRange('efSearch', input.efSearch, 100, 1, 1000)),
    pointInTime: requirePointInTime(input.pointInTime),
    rpoLimitSeconds: numberInRange('rpoLimitSeconds', input.rpoLimitSeconds, 120, 1, 86_400),
    timeouts: parseTimeouts(input.timeouts),
    resume: input.resume === undefined ? undefined : requireResume(input.resume),
  };
}

/** A carried-over position, checked as far as it steers the run (a caller has no business here). */
function requireResume(raw: unknown): DrTestResume {
  const resume = requireObject(raw);
  requireIdentifier('resume.target', resume.target);
  requireOwner('resume.owner', resume.owner);
  requireObject(resume.report);
  requireWaitPosition('resume.wait', resume.wait);
  if (resume.step === 'restore') {
    if (resume.snapshot !== null) requireObject(resume.snapshot);
    requireIsoTime('resume.requestedAt', resume.requestedAt);
  } else if (resume.step !== 'other-test' || typeof resume.other !== 'string') {
    throw invalidInput(`resume.step ${JSON.stringify(resume.step)} is not valid: other-test or restore`);
  }
  return resume as unknown as DrTestResume;
}

/** `latest-snapshot` (the default), `random`, or an ISO-8601 time normalized to UTC. */
export function requirePointInTime(value: unknown): string {
  if (value === undefined || value === 'latest-snapshot' || value === 'random')
    return value ?? 'latest-snapshot';
  if (typeof value !== 'string' || !/^\d{4}-/.test(value)) {
    throw invalidInput(
      `pointInTime ${JSON.stringify(value)} is not valid: latest-snapshot, random, or an ISO-8601 time with a zone, e.g. 2026-01-31T12:00:00Z`,
    );
  }
  return requireIsoTime('pointInTime', value);
}

/**
 * The drill's target: the time asked for, refused outside the source's restorable window (naming
 * it), or a point chosen inside it with the workflow's deterministic random numbers.
 */
function choosePoint(source: InstanceDescription, requested: string): PointInTimeDrill {
  const { instanceId, earliestRestorableTime: earliest, latestRestorableTime: latest } = source;
  if (earliest === undefined || latest === undefined) {
    throw ApplicationFailure.nonRetryable(
      `instance ${instanceId} cannot be tested at a point in time: it has no restorable window (no backup retained yet)`,
      PointInTimeRestoreNotEnabledError.name,
    );
  }
  if (requested !== 'random' && (requested < earliest || requested > latest)) {
    throw ApplicationFailure.nonRetryable(
      `pointInTime ${requested} is outside the restorable window of instance ${instanceId}: ${earliest} to ${latest}; nothing was changed`,
      RestoreTimeOutOfRangeError.name,
    );
  }
  const from = Date.parse(earliest);
  const target =
    requested === 'random'
      ? new Date(from + Math.floor(Math.random() * (Date.parse(latest) - from))).toISOString()
      : requested;
  return { requested, target, window: { earliest, latest }, newestHeartbeat: null, dataWithinSeconds: null };
}

/** The `rpo` check; the measurement goes into the drill's part of the report. */
async function measureRpo(
  point: PointInTimeDrill,
  endpoint: Endpoint,
  limitSeconds: number,
): Promise<DrCheck> {
  try {
    const measured = await checkActivities.measureRpo({ endpoint, target: point.target, limitSeconds });
    point.newestHeartbeat = measured.newestHeartbeat;
    point.dataWithinSeconds = measured.dataWithinSeconds;
    return measured.check;
  } catch (error) {
    if (isCancellation(error)) throw error;
    return {
      name: 'rpo',
      status: 'failed',
      detail: `the RPO could not be measured: ${failureMessage(error)}`,
    };
  }
}
