/**
 * `pitrRestore`: restores an instance as it was at a point in time (or at its latest restorable
 * time) as a NEW instance, waits until it is available and returns its endpoint. The target time
 * is checked against the source's restorable range before anything is created. A long wait
 * continues as new, carrying the restore it waits for (RestoreResume).
 */
import { ApplicationFailure, continueAsNew, isCancellation, patched } from '@temporalio/workflow';

import type { Endpoint, InstanceDescription } from '../activities/control-plane/control-plane';
import { PointInTimeRestoreNotEnabledError, RestoreTimeOutOfRangeError } from './lib/errors';
import {
  derivedIdentifier,
  invalidInput,
  ownerTags,
  rejectUnknownFields,
  requireIdentifier,
  requireIsoTime,
  requireObject,
  requireRestoreResume,
  runOwner,
  secondsBetween,
  timeouts as parseTimeouts,
  trackRecovery,
  utcStamp,
  type RecoveryTimeouts,
  type RestoreResume,
} from './lib/recovery';
import { controlPlane, createCalls, deleteCancelledRestore, waitForAvailable } from './lib/recovery-steps';

export interface PitrRestoreInput {
  /** The source instance. */
  instanceId: string;
  /** ISO-8601 time with a zone (e.g. `2026-01-31T12:00:00Z`), or `latest`. */
  restoreTime: string;
  /** The new instance; default `<instanceId>-pitr-<YYYYMMDD-HHMMSS>` (UTC, workflow start time). */
  targetInstanceId?: string;
  timeouts?: Partial<RecoveryTimeouts>;
  /** Carried over by continue-as-new; not for callers. */
  resume?: RestoreResume;
}

export interface RestoreResult {
  sourceInstanceId: string;
  targetInstanceId: string;
  endpoint: Endpoint;
  /**
   * The time the data is as of: the requested time, the source's latest restorable time when
   * `latest` was asked for, or the snapshot's time for a snapshot restore.
   */
  restoredTo: string | null;
  /** From the restore request until the new instance was available. */
  restoreSeconds: number | null;
}

/** Runs started before a restore could read the backups of a source that is gone replay as they ran. */
const RESTORE_WITHOUT_SOURCE = 'pitr-restore-without-source-instance';

export async function pitrRestore(input: PitrRestoreInput): Promise<RestoreResult> {
  const { instanceId, restoreTime, targetInstanceId, timeouts, resume } = validate(input);
  const setStep = trackRecovery('pitrRestore', instanceId);
  let requestedAt: string;
  let restoredTo: string | null;
  if (resume === undefined) {
    setStep(`checking the restorable range of ${instanceId}`);
    // No such instance (deleted, or this worker is in the backup region): the provider restores its
    // retained or replicated automated backups, and checks their window itself.
    const source = patched(RESTORE_WITHOUT_SOURCE)
      ? await controlPlane.findInstance(instanceId)
      : await controlPlane.describeInstance(instanceId);
    if (source === null) restoredTo = restoreTime === 'latest' ? null : restoreTime;
    else restoredTo = checkRestorable(source, restoreTime);
    setStep(`restoring ${instanceId} to ${restoreTime} as ${targetInstanceId}`);
    requestedAt = new Date().toISOString();
  } else ({ requestedAt, restoredTo } = resume);

  const owner = resume?.owner ?? runOwner();
  try {
    if (resume === undefined) {
      await createCalls(timeouts).restoreToPointInTime(
        instanceId,
        targetInstanceId,
        restoreTime === 'latest' ? 'latest' : { time: restoreTime },
        ownerTags('restore', instanceId),
      );
    }
    const restored = await waitForAvailable(
      targetInstanceId,
      timeouts,
      (s) => setStep(`instance ${targetInstanceId} ${s.providerStatus}`),
      {
        resume: resume?.wait,
        continueAsNew: (wait) =>
          continueAsNew<typeof pitrRestore>({
            ...input,
            targetInstanceId,
            resume: { owner, sourceInstanceId: instanceId, restoredTo, requestedAt, wait },
          }),
      },
    );
    return {
      sourceInstanceId: instanceId,
      targetInstanceId,
      endpoint: restored.endpoint,
      restoredTo,
      restoreSeconds: secondsBetween(requestedAt, new Date().toISOString()),
    };
  } catch (error) {
    // A cancelled restore leaves nothing behind (what an earlier run of the chain created
    // included); a failed one is kept for inspection.
    if (isCancellation(error)) {
      await deleteCancelledRestore(targetInstanceId, owner, timeouts);
    }
    throw error;
  }
}

/** The time the restore will be as of; refuses a source without a window, or a time outside it. */
function checkRestorable(source: InstanceDescription, restoreTime: string): string {
  const { instanceId, earliestRestorableTime: earliest, latestRestorableTime: latest } = source;
  if (earliest === undefined || latest === undefined) {
    throw ApplicationFailure.nonRetryable(
      `instance ${instanceId} cannot be restored to a point in time: it has no restorable range (no backup retained yet)`,
      PointInTimeRestoreNotEnabledError.name,
    );
  }
  if (restoreTime !== 'latest' && (restoreTime < earliest || restoreTime > latest)) {
    throw ApplicationFailure.nonRetryable(
      `restoreTime ${restoreTime} is outside the restorable range of instance ${instanceId}: ${earliest} to ${latest}`,
      RestoreTimeOutOfRangeError.name,
    );
  }
  return restoreTime === 'latest' ? latest : restoreTime;
}

function validate(raw: unknown) {
  const input = requireObject(raw);
  rejectUnknownFields(input, ['instanceId', 'restoreTime', 'targetInstanceId', 'timeouts'], ['resume']);
  const instanceId = requireIdentifier('instanceId', input.instanceId);
  const restoreTime =
    input.restoreTime === 'latest' ? 'latest' : requireIsoTime('restoreTime', input.restoreTime);
  const targetInstanceId =
    input.targetInstanceId === undefined
      ? derivedIdentifier('instanceId', instanceId, `-pitr-${utcStamp(new Date())}`)
      : requireIdentifier('targetInstanceId', input.targetInstanceId);
  if (targetInstanceId === instanceId) {
    throw invalidInput(
      `targetInstanceId must differ from instanceId ${instanceId}: a restore never overwrites its source`,
    );
  }
  return {
    instanceId,
    restoreTime,
    targetInstanceId,
    timeouts: parseTimeouts(input.timeouts),
    resume: input.resume === undefined ? undefined : requireRestoreResume(input.resume),
  };
}
