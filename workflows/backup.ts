/**
 * `backup`: a manual snapshot of an instance, waited for until available, then optionally
 * exported (RDS export task to S3 / local SQL export) and waited for until complete. A long wait
 * continues as new, carrying what was requested and the wait (BackupResume).
 */
import { continueAsNew, metricMeter } from '@temporalio/workflow';

import type {
  ExportDestination,
  ExportStatus,
  SnapshotDescription,
} from '../activities/control-plane/control-plane';
import { recordBackupSucceeded } from './lib/metrics';
import { pollUntil, type WaitPosition } from './lib/polling';
import {
  derivedIdentifier,
  invalidInput,
  ownerTags,
  rejectUnknownFields,
  requireIdentifier,
  requireIsoTime,
  requireObject,
  requireWaitPosition,
  secondsBetween,
  timeouts as parseTimeouts,
  trackRecovery,
  utcStamp,
  type RecoveryTimeouts,
} from './lib/recovery';
import { controlPlane, createCalls } from './lib/recovery-steps';

export interface BackupInput {
  instanceId: string;
  /** Default `<instanceId>-manual-<YYYYMMDD-HHMMSS>` (UTC, workflow start time). */
  snapshotId?: string;
  /** `true`: to the configured exports bucket; or a destination of its own. */
  export?: boolean | Partial<ExportDestination>;
  timeouts?: Partial<RecoveryTimeouts>;
  /** Carried over by continue-as-new; not for callers. */
  resume?: BackupResume;
}

/** Where a backup stood when its run continued as new: what it requested, and its wait. */
export type BackupResume =
  | { step: 'snapshot'; requestedAt: string; wait: WaitPosition }
  | {
      step: 'export';
      /** The result so far: the snapshot is available. */
      result: BackupResult;
      destination: ExportDestination;
      exportRequestedAt: string;
      wait: WaitPosition;
    };

export interface BackupResult {
  instanceId: string;
  snapshotId: string;
  snapshotCreatedAt: string | null;
  sizeBytes: number | null;
  /** From the snapshot request until it was available. */
  snapshotSeconds: number | null;
  export: {
    exportId: string;
    destination: string;
    status: ExportStatus;
    exportSeconds: number | null;
  } | null;
}

export async function backup(input: BackupInput): Promise<BackupResult> {
  const valid = validate(input);
  const setStep = trackRecovery('backup', valid.instanceId);
  const { instanceId, snapshotId, timeouts, resume } = valid;
  // The next run of the chain goes on where this one stands; the snapshot id is fixed by now.
  const carryOver = (next: BackupResume) =>
    continueAsNew<typeof backup>({ ...input, snapshotId, resume: next });
  const create = createCalls(timeouts);

  let result: BackupResult;
  if (resume?.step === 'export') result = resume.result;
  else {
    let requestedAt: string;
    if (resume === undefined) {
      setStep(`requesting snapshot ${snapshotId}`);
      requestedAt = new Date().toISOString();
      await create.createSnapshot(instanceId, snapshotId, ownerTags('backup', instanceId));
    } else requestedAt = resume.requestedAt;
    const snapshot: SnapshotDescription = await pollUntil({
      what: `snapshot ${snapshotId} to be available`,
      describe: () => controlPlane.describeSnapshot(snapshotId),
      isDone: (s) => s.status === 'available',
      failure: (s) => (s.status === 'failed' || s.status === 'deleting' ? `it is ${s.status}` : undefined),
      interval: timeouts.pollInterval,
      maxInterval: timeouts.maxPollInterval,
      timeout: timeouts.snapshot,
      onState: (s) => setStep(`snapshot ${snapshotId} ${s.status} (${s.percentProgress}%)`),
      resume: resume?.wait,
      continueAsNew: (wait) => carryOver({ step: 'snapshot', requestedAt, wait }),
    });
    result = {
      instanceId,
      snapshotId,
      snapshotCreatedAt: snapshot.createdAt ?? null,
      sizeBytes: snapshot.sizeBytes ?? null,
      snapshotSeconds: secondsBetween(requestedAt, new Date().toISOString()),
      export: null,
    };
  }
  if (valid.export === undefined) {
    recordBackupSucceeded(metricMeter, instanceId, new Date());
    return result;
  }

  const exportId = valid.export.exportId;
  let destination: ExportDestination;
  let exportRequestedAt: string;
  if (resume?.step === 'export') ({ destination, exportRequestedAt } = resume);
  else {
    destination =
      valid.export.bucket === undefined
        ? { ...(await controlPlane.defaultExportDestination(instanceId)), ...definedPrefix(valid.export) }
        : { bucket: valid.export.bucket, prefix: valid.export.prefix ?? `exports/${instanceId}` };
    setStep(`exporting ${snapshotId} as ${exportId}`);
    exportRequestedAt = new Date().toISOString();
    await create.startExport(exportId, snapshotId, destination);
  }
  const exported = await pollUntil({
    what: `export ${exportId} to complete`,
    describe: () => controlPlane.describeExport(exportId),
    isDone: (s) => s.status === 'complete',
    failure: (s) =>
      s.status === 'failed' || s.status === 'canceled'
        ? `it is ${s.status}: ${s.failureCause ?? 'no cause given'}`
        : undefined,
    interval: timeouts.pollInterval,
    maxInterval: timeouts.maxPollInterval,
    timeout: timeouts.export,
    onState: (s) => setStep(`export ${exportId} ${s.status} (${s.percentProgress}%)`),
    resume: resume?.step === 'export' ? resume.wait : undefined,
    continueAsNew: (wait) => carryOver({ step: 'export', result, destination, exportRequestedAt, wait }),
  });
  recordBackupSucceeded(metricMeter, instanceId, new Date());
  return {
    ...result,
    export: {
      exportId,
      destination: exported.destination,
      status: exported.status,
      exportSeconds: secondsBetween(exportRequestedAt, new Date().toISOString()),
    },
  };
}

function definedPrefix(destination: Partial<ExportDestination>): Partial<ExportDestination> {
  return destination.prefix === undefined ? {} : { prefix: destination.prefix };
}

function validate(raw: unknown) {
  const input = requireObject(raw);
  rejectUnknownFields(input, ['instanceId', 'snapshotId', 'export', 'timeouts'], ['resume']);
  const instanceId = requireIdentifier('instanceId', input.instanceId);
  const snapshotId =
    input.snapshotId === undefined
      ? derivedIdentifier('instanceId', instanceId, `-manual-${utcStamp(new Date())}`)
      : requireIdentifier('snapshotId', input.snapshotId);
  let exportTo: Partial<ExportDestination> | undefined;
  if (input.export === true) exportTo = {};
  else if (typeof input.export === 'object' && input.export !== null && !Array.isArray(input.export)) {
    const given = input.export as Record<string, unknown>;
    rejectUnknownFields(given, ['bucket', 'prefix']);
    for (const field of ['bucket', 'prefix'] as const) {
      if (given[field] !== undefined && (typeof given[field] !== 'string' || given[field] === '')) {
        throw invalidInput(
          `export.${field} ${JSON.stringify(given[field])} is not valid: a non-empty string`,
        );
      }
    }
    exportTo = given;
  } else if (input.export !== undefined && input.export !== false) {
    throw invalidInput(
      `export ${JSON.stringify(input.export)} is not valid: true, false or { bucket?, prefix? }`,
    );
  }
  return {
    instanceId,
    snapshotId,
    export:
      exportTo === undefined
        ? undefined
        : { ...exportTo, exportId: derivedIdentifier('snapshotId', snapshotId, '-export') },
    timeouts: parseTimeouts(input.timeouts),
    resume: input.resume === undefined ? undefined : requireResume(input.resume),
  };
}

/** A carried-over position, checked as far as it steers the run (a caller has no business here). */
function requireResume(raw: unknown): BackupResume {
  const resume = requireObject(raw);
  requireWaitPosition('resume.wait', resume.wait);
  if (resume.step === 'snapshot') requireIsoTime('resume.requestedAt', resume.requestedAt);
  else if (resume.step === 'export') {
    requireIsoTime('resume.exportRequestedAt', resume.exportRequestedAt);
    requireObject(resume.result);
    requireObject(resume.destination);
  } else {
    throw invalidInput(`resume.step ${JSON.stringify(resume.step)} is not valid: snapshot or export`);
  }
  return resume as unknown as BackupResume;
}
