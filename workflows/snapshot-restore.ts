/**
 * `snapshotRestore`: restores a snapshot as a NEW instance, waits until it is available and
 * returns its endpoint. The snapshot is checked (exists, available, of the given instance)
 * before anything is created.
 */
import { CancellationScope, isCancellation } from '@temporalio/workflow';

import {
  derivedIdentifier,
  invalidInput,
  ownerTags,
  rejectUnknownFields,
  requireIdentifier,
  requireObject,
  runOwner,
  requireSnapshotId,
  secondsBetween,
  timeouts as parseTimeouts,
  trackRecovery,
  utcStamp,
  type RecoveryTimeouts,
} from './lib/recovery';
import { controlPlane, createCalls, deleteOwnedInstance, waitForAvailable } from './lib/recovery-steps';
import type { RestoreResult } from './pitr-restore';

export interface SnapshotRestoreInput {
  /** A manual snapshot id, or an automated one (`rds:<id>`). */
  snapshotId: string;
  /** When given, the snapshot must be of this instance (guards against restoring the wrong one). */
  instanceId?: string;
  /** The new instance; default `<source instance>-restore-<YYYYMMDD-HHMMSS>` (UTC, workflow start time). */
  targetInstanceId?: string;
  timeouts?: Partial<RecoveryTimeouts>;
}

export async function snapshotRestore(input: SnapshotRestoreInput): Promise<RestoreResult> {
  const valid = validate(input);
  const { snapshotId, timeouts } = valid;
  const setStep = trackRecovery('snapshotRestore', valid.instanceId ?? snapshotId);

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
  const sourceInstanceId = snapshot.instanceId;
  const targetInstanceId =
    valid.targetInstanceId ??
    derivedIdentifier('instanceId', sourceInstanceId, `-restore-${utcStamp(new Date())}`);

  setStep(`restoring ${snapshotId} as ${targetInstanceId}`);
  const requestedAt = new Date().toISOString();
  const owner = runOwner();
  try {
    await createCalls(timeouts).restoreFromSnapshot(
      snapshotId,
      targetInstanceId,
      ownerTags('restore', sourceInstanceId),
    );
    const restored = await waitForAvailable(targetInstanceId, timeouts, (s) =>
      setStep(`instance ${targetInstanceId} ${s.providerStatus}`),
    );
    return {
      sourceInstanceId,
      targetInstanceId,
      endpoint: restored.endpoint,
      restoredTo: snapshot.createdAt ?? null,
      restoreSeconds: secondsBetween(requestedAt, new Date().toISOString()),
    };
  } catch (error) {
    // A cancelled restore leaves nothing behind; a failed one is kept for inspection.
    if (isCancellation(error)) {
      await CancellationScope.nonCancellable(() => deleteOwnedInstance(targetInstanceId, owner, timeouts));
    }
    throw error;
  }
}

function validate(raw: unknown) {
  const input = requireObject(raw);
  rejectUnknownFields(input, ['snapshotId', 'instanceId', 'targetInstanceId', 'timeouts']);
  return {
    snapshotId: requireSnapshotId('snapshotId', input.snapshotId),
    instanceId:
      input.instanceId === undefined ? undefined : requireIdentifier('instanceId', input.instanceId),
    targetInstanceId:
      input.targetInstanceId === undefined
        ? undefined
        : requireIdentifier('targetInstanceId', input.targetInstanceId),
    timeouts: parseTimeouts(input.timeouts),
  };
}
