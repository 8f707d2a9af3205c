/**
 * What the recovery workflows (backup, pitrRestore, snapshotRestore, drTest) share: input
 * validation at the edge, timeouts with defaults, identifiers from workflow time, the progress
 * query, search attributes, the owner tags of what they create, and the DR report's shape. Pure code: safe in the workflow sandbox.
 * It uses the workflow API, so activities import only its types; the tag names they share with the
 * workflows live in ./owner-tags.
 */
import {
  ApplicationFailure,
  defineQuery,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';

import type { DrCheck } from '../../activities/postgres/dr-checks';
import type { SnapshotDescription } from '../../activities/control-plane/control-plane';
import { InvalidInputError } from './errors';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from './identifiers';
import { OWNER_TAGS, type OwnerPurpose } from './owner-tags';
import { MAX_POLL_INTERVAL, requireDuration, toMs, type WaitPosition } from './polling';
import { DbopsInstance, DbopsOperation } from './search-attributes';

export interface RecoveryTimeouts {
  /** The first and shortest pause between two looks at an instance, snapshot or export (Temporal duration). */
  pollInterval: string;
  /** The longest pause between two looks: the pause grows to it as the wait goes on. */
  maxPollInterval: string;
  /** A snapshot to become available. */
  snapshot: string;
  /** An export to complete. */
  export: string;
  /** A restored instance to become available. */
  restore: string;
  /** A deleted instance to disappear (DR cleanup, orphans). */
  deletion: string;
  /**
   * A create, restore or export call to wait out a busy resource in all (the instance is
   * backing-up in its backup window, modifying, or the instance class has no capacity).
   */
  busy: string;
}

export const DEFAULT_TIMEOUTS: RecoveryTimeouts = {
  pollInterval: '10 seconds',
  maxPollInterval: MAX_POLL_INTERVAL,
  snapshot: '2 hours',
  export: '12 hours',
  restore: '3 hours',
  deletion: '1 hour',
  busy: '4 hours',
};

/**
 * The longest each may be set to (docs/workflows.md gives the reasons): beyond, a typo such as
 * '300 hours' would keep a run and what it created waiting for weeks.
 */
export const TIMEOUT_BOUNDS: RecoveryTimeouts = {
  pollInterval: '15 minutes',
  maxPollInterval: '1 hour',
  snapshot: '3 days',
  export: '3 days',
  restore: '2 days',
  deletion: '6 hours',
  busy: '1 day',
};

export function invalidInput(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, InvalidInputError.name);
}

export function requireObject(input: unknown): Record<string, unknown> {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw invalidInput(`input ${JSON.stringify(input)} is not valid: expected a JSON object`);
  }
  return input as Record<string, unknown>;
}

/**
 * Refuses fields the workflow does not know: a typo must not silently fall back to a default.
 * `carried` fields (what a run hands the next when it continues as new) are accepted but not
 * offered in the message: they are not for callers.
 */
export function rejectUnknownFields(
  input: Record<string, unknown>,
  known: string[],
  carried: string[] = [],
): void {
  const unknown = Object.keys(input).filter((key) => !known.includes(key) && !carried.includes(key));
  if (unknown.length > 0) {
    throw invalidInput(`unknown input field ${unknown.join(', ')}: expected only ${known.join(', ')}`);
  }
}

export function requireIdentifier(field: string, value: unknown): string {
  if (!isRdsIdentifier(value)) {
    throw invalidInput(`${field} ${JSON.stringify(value)} is not valid: ${RDS_IDENTIFIER_RULE}`);
  }
  return value.toLowerCase();
}

/** A snapshot id as given: manual (an RDS identifier) or automated (`rds:<identifier>`). */
export function requireSnapshotId(field: string, value: unknown): string {
  if (typeof value === 'string' && value.startsWith('rds:') && isRdsIdentifier(value.slice(4))) return value;
  if (!isRdsIdentifier(value)) {
    throw invalidInput(
      `${field} ${JSON.stringify(value)} is not valid: ${RDS_IDENTIFIER_RULE} (automated snapshots: rds:<id>)`,
    );
  }
  return value;
}

const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/;

/** An ISO-8601 time with its offset, normalized to UTC. */
export function requireIsoTime(field: string, value: unknown): string {
  if (typeof value !== 'string' || !ISO_TIME.test(value) || Number.isNaN(Date.parse(value))) {
    throw invalidInput(
      `${field} ${JSON.stringify(value)} is not valid: an ISO-8601 time with a zone, e.g. 2026-01-31T12:00:00Z`,
    );
  }
  return new Date(value).toISOString();
}

/** An owner carried over by continue-as-new: the owner tags of the run that created something. */
export function requireOwner(field: string, value: unknown): Record<string, string> {
  const owner = requireObject(value);
  for (const key of [OWNER_TAGS.workflowId, OWNER_TAGS.runId]) {
    if (typeof owner[key] !== 'string' || owner[key] === '') {
      throw invalidInput(
        `${field}["${key}"] ${JSON.stringify(owner[key])} is not valid: a workflow or run id`,
      );
    }
  }
  return owner as Record<string, string>;
}

/** A wait carried over by continue-as-new (workflow times in epoch ms). */
export function requireWaitPosition(field: string, value: unknown): WaitPosition {
  const wait = requireObject(value);
  for (const key of ['since', 'deadline']) {
    if (typeof wait[key] !== 'number' || !Number.isFinite(wait[key])) {
      throw invalidInput(
        `${field}.${key} ${JSON.stringify(wait[key])} is not valid: a time in epoch milliseconds`,
      );
    }
  }
  return wait as unknown as WaitPosition;
}

/** Where a restore stood when its run continued as new: requested, waiting for the new instance. */
export interface RestoreResume {
  /** The run that requested the restore: the new instance's owner tags name it. */
  owner: Record<string, string>;
  sourceInstanceId: string;
  /** What the result's `restoredTo` says (fixed when the restore was requested). */
  restoredTo: string | null;
  requestedAt: string;
  wait: WaitPosition;
}

/** A carried-over restore, checked as far as it steers the run (a caller has no business here). */
export function requireRestoreResume(raw: unknown): RestoreResume {
  const resume = requireObject(raw);
  requireOwner('resume.owner', resume.owner);
  requireIdentifier('resume.sourceInstanceId', resume.sourceInstanceId);
  if (resume.restoredTo !== null) requireIsoTime('resume.restoredTo', resume.restoredTo);
  requireIsoTime('resume.requestedAt', resume.requestedAt);
  requireWaitPosition('resume.wait', resume.wait);
  return resume as unknown as RestoreResume;
}

export function optionalBoolean(field: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean')
    throw invalidInput(`${field} ${JSON.stringify(value)} is not valid: true or false`);
  return value;
}

export function numberInRange(
  field: string,
  value: unknown,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw invalidInput(`${field} ${JSON.stringify(value)} is not valid: a number from ${min} to ${max}`);
  }
  return value;
}

/**
 * The defaults with the given overrides, each a Temporal duration such as '30 minutes' no longer
 * than its bound in TIMEOUT_BOUNDS.
 */
export function timeouts(value: unknown): RecoveryTimeouts {
  if (value === undefined) return DEFAULT_TIMEOUTS;
  const given = requireObject(value);
  rejectUnknownFields(given, Object.keys(DEFAULT_TIMEOUTS));
  const result = { ...DEFAULT_TIMEOUTS };
  for (const [name, duration] of Object.entries(given)) {
    const field = name as keyof RecoveryTimeouts;
    result[field] = requireDuration(`timeouts.${name}`, duration, TIMEOUT_BOUNDS[field]);
  }
  if (toMs(result.pollInterval) > toMs(result.maxPollInterval)) {
    throw invalidInput(
      `timeouts.pollInterval ${JSON.stringify(result.pollInterval)} is longer than timeouts.maxPollInterval ` +
        `${JSON.stringify(result.maxPollInterval)}: the first pause between looks cannot exceed the longest`,
    );
  }
  return result;
}

const pad = (n: number) => String(n).padStart(2, '0');

/** `YYYYMMDD` in UTC. */
export function utcDate(date: Date): string {
  return `${date.getUTCFullYear()}${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())}`;
}

/**
 * `YYYYMMDD-HHMMSS` in UTC. The runbook writes `%Y%m%d_%H%M%S`, but RDS identifiers allow no
 * underscore, so a hyphen separates date and time.
 */
export function utcStamp(date: Date): string {
  return `${utcDate(date)}-${pad(date.getUTCHours())}${pad(date.getUTCMinutes())}${pad(date.getUTCSeconds())}`;
}

/**
 * A pre-migration snapshot's id, `<instance>-pre-migration-YYYYMMDD-HHMMSS` (UTC): under the
 * instance's own name, so it falls under the worker's IAM operations prefix (which lets the worker
 * take it and retention expire it), and two instances' deploys in one second never collide.
 * Refuses an instance id too long to carry the suffix.
 */
export function preMigrationSnapshotId(instanceId: string, at: Date): string {
  return derivedIdentifier('instanceId', instanceId, `-pre-migration-${utcStamp(at)}`);
}

/** Rejects an identifier that a suffix would make too long, naming the field the user gave. */
export function derivedIdentifier(field: string, base: string, suffix: string): string {
  const id = `${base}${suffix}`;
  if (!isRdsIdentifier(id)) {
    throw invalidInput(
      `${field} ${JSON.stringify(base)} is too long: ${JSON.stringify(id)} must be an RDS identifier (${RDS_IDENTIFIER_RULE})`,
    );
  }
  return id;
}

export interface Progress {
  operation: string;
  instanceId: string;
  /** What the workflow is doing now, e.g. `waiting for instance x to be available (creating)`. */
  step: string;
  updatedAt: string;
}

/** `dbops` and the Web UI read where a recovery workflow is. */
export const progressQuery = defineQuery<Progress>('progress');

/** Tags the run for the Web UI (search attributes) and returns a setter for its progress. */
export function trackRecovery(operation: string, instanceId: string): (step: string) => void {
  upsertSearchAttributes([
    { key: DbopsInstance, value: instanceId },
    { key: DbopsOperation, value: operation },
  ]);
  let progress: Progress = { operation, instanceId, step: 'starting', updatedAt: new Date().toISOString() };
  setHandler(progressQuery, () => progress);
  return (step) => {
    if (step === progress.step) return;
    progress = { ...progress, step, updatedAt: new Date().toISOString() };
    setCurrentDetails(`${operation} ${instanceId}: ${step}`);
  };
}

export function secondsBetween(from: string | undefined, to: string | undefined): number | null {
  if (from === undefined || to === undefined) return null;
  return Math.round((Date.parse(to) - Date.parse(from)) / 100) / 10;
}

/**
 * The owning run (workflow id and run id): what a provider compares to call a resource ours. A run
 * that continues as new carries its owner to the next run of its chain (which so still owns what
 * the earlier run created), and the sweeper follows the chain from the run the tags name.
 */
export function runOwner(): Record<string, string> {
  const { workflowId, runId } = workflowInfo();
  return { [OWNER_TAGS.workflowId]: workflowId, [OWNER_TAGS.runId]: runId };
}

/** Every tag a resource created by this run carries: its owner, why it exists, and from which instance. */
export function ownerTags(purpose: OwnerPurpose, sourceInstanceId?: string): Record<string, string> {
  return {
    ...runOwner(),
    [OWNER_TAGS.purpose]: purpose,
    ...(sourceInstanceId === undefined ? {} : { [OWNER_TAGS.source]: sourceInstanceId }),
  };
}

export interface DrTestReport {
  instanceId: string;
  workflowId: string;
  ok: boolean;
  startedAt: string;
  finishedAt: string;
  snapshot: Pick<SnapshotDescription, 'snapshotId' | 'type' | 'createdAt' | 'sizeBytes'> | null;
  /** Age of the snapshot's data when the test started: what a disaster then would have lost. */
  rpoSeconds: number | null;
  /** From the restore request until the restored instance was available. */
  rtoSeconds: number | null;
  temporaryInstanceId: string;
  temporaryInstanceDeleted: boolean;
  orphansRemoved: string[];
  checks: DrCheck[];
  /** Why the test could not finish its checks (an activity or wait failed), else null. */
  error: string | null;
  /** Where the report was written (filled in after writing). */
  reportLocations: string[];
  /** A point-in-time drill's target and measured RPO; absent when the newest snapshot was restored. */
  pointInTime?: PointInTimeDrill;
}

/** What a point-in-time DR test restored to, and how close to it the copy's data reaches. */
export interface PointInTimeDrill {
  /** What was asked for: `random`, or the ISO time given. */
  requested: string;
  /** The time the copy was restored to. */
  target: string;
  /** The source's restorable window when the test started. */
  window: { earliest: string; latest: string };
  /** The copy's newest RPO heartbeat, null when it has none or it was not measured. */
  newestHeartbeat: string | null;
  /** Target minus newest heartbeat: the data reaches to within this many seconds of the target. */
  dataWithinSeconds: number | null;
}
