/**
 * `snapshotRestore`: restores a snapshot as a NEW instance, waits until it is available and
 * returns its endpoint. The snapshot is checked (exists, available, of the given instance)
 * before anything is created. A long wait continues as new, carrying the restore it waits for
 * (RestoreResume).
 */
import { continueAsNew, isCancellation } from '@temporalio/workflow';

import {
  derivedIdentifier,
  invalidInput,
  ownerTags,
  rejectUnknownFields,
  requireIdentifier,
  requireObject,
  requireRestoreResume,
  requireSnapshotId,
  runOwner,
  secondsBetween,
  timeouts as parseTimeouts,
  trackRecovery,
  utcStamp,
  type RecoveryTimeouts,
  type RestoreResume,
} from './lib/recovery';
import { controlPlane, createCalls, deleteCancelledRestore, waitForAvailable } from './lib/recovery-steps';
import type { RestoreResult } from './pitr-restore';

export interface SnapshotRestoreInput {
  /** A manual snapshot id, or an automated one (`rds:<id>`). */
  snapshotId: string;
  /** When given, the snapshot must be of this instance (guards against restoring the wrong one). */
  instanceId?: string;
  /** The new instance; default `<source instance>-restore-<YYYYMMDD-HHMMSS>` (UTC, workflow start time). */
  targetInstanceId?: string;
  timeouts?: Partial<RecoveryTimeouts>;
  /** Carried over by continue-as-new; not for callers. */
  resume?: RestoreResume;
}

export async function snapshotRestore(input: SnapshotRestoreInput): Promise<RestoreResult> {
  const valid = validate(input);
  const { snapshotId, timeouts } = valid;
  const setStep = trackRecovery('snapshotRestore', valid.instanceId ?? snapshotId);

  let sourceInstanceId: string;
  let targetInstanceId: string;
  let restoredTo: string | null;
  let requestedAt: string;
  const { resume } = valid;
  if (resume === undefined) {
    setStep(`checking snapshot ${snapshotId}`);
    const snapshot = await controlPlane.describeSnapshot(snapshotId);
    if (valid.instanceId !== undefined && snapshot.instanceId !== valid.instanceId) {
      throw invalidInput(
        `snapshotId ${snapshotId} is a snapshot of instance ${snapshot.instanceId}, not of instanceId ${valid.instanceId}`,
      );
    }
    if (snapshot.status !== 'available') {
      throw invalidInput(
        `snapshotId ${snapshotId} is ${snapshot.status}: only an available snapshot can be restored`,
      );
    }
    sourceInstanceId = snapshot.instanceId;
    targetInstanceId =
      valid.targetInstanceId ??
      derivedIdentifier('instanceId', sourceInstanceId, `-restore-${utcStamp(new Date())}`);
    restoredTo = snapshot.createdAt ?? null;
    setStep(`restoring ${snapshotId} as ${targetInstanceId}`);
    requestedAt = new Date().toISOString();
  } else {
    ({ sourceInstanceId, restoredTo, requestedAt } = resume);
    targetInstanceId = valid.targetInstanceId ?? invalidResume();
  }

  const owner = resume?.owner ?? runOwner();
  try {
    if (resume === undefined) {
      await createCalls(timeouts).restoreFromSnapshot(
        snapshotId,
        targetInstanceId,
        ownerTags('restore', sourceInstanceId),
      );
    }
    const restored = await waitForAvailable(
      targetInstanceId,
      timeouts,
      (s) => setStep(`instance ${targetInstanceId} ${s.providerStatus}`),
      {
        resume: resume?.wait,
        continueAsNew: (wait) =>
          continueAsNew<typeof snapshotRestore>({
            ...input,
            targetInstanceId,
            resume: { owner, sourceInstanceId, restoredTo, requestedAt, wait },
          }),
      },
    );
    return {
      sourceInstanceId,
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

function validate(raw: unknown) {
  const input = requireObject(raw);
  rejectUnknownFields(input, ['snapshotId', 'instanceId', 'targetInstanceId', 'timeouts'], ['resume']);
  return {
    snapshotId: requireSnapshotId('snapshotId', input.snapshotId),
    instanceId:
      input.instanceId === undefined ? undefined : requireIdentifier('instanceId', input.instanceId),
    targetInstanceId:
      input.targetInstanceId === undefined
        ? undefined
        : requireIdentifier('targetInstanceId', input.targetInstanceId),
    timeouts: parseTimeouts(input.timeouts),
    resume: input.resume === undefined ? undefined : requireRestoreResume(input.resume),
  };
}

function invalidResume(): never {
  throw invalidInput('resume is carried over by continue-as-new with targetInstanceId: not for callers');
}
