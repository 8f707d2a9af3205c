/**
 * Snapshot retention for the `retention` workflow (workflows/retention.ts): which snapshots a
 * policy expires, with the reason each one stays or goes, and the deletion of one snapshot after
 * the guards are checked again.
 *
 * What a restore in flight uses is found in two places, because neither alone sees every case:
 * - Temporal visibility: the running `snapshotRestore`, `drTest` and `pitrRestore` runs, and in
 *   each run's history its input and the restore calls it has scheduled. This sees dbops' own
 *   restores on both providers, including the moment before the create call (a restore that has
 *   checked its snapshot but not yet asked for the copy), and on aws, where RDS does not say
 *   which snapshot an instance is being restored from. A run that has not yet chosen its snapshot
 *   (a DR test before it lists the snapshots, a point-in-time restore before its create call)
 *   holds every snapshot of its instance until it has.
 * - The provider (ControlPlane.snapshotUsers): what is reading the snapshot now, whoever started
 *   it: exports in progress, and on local the restore jobs (including a point-in-time restore's
 *   base, which the provider, not the workflow, chooses).
 * Owner tags of instances being created alone would not do: they name the run, not the snapshot.
 */
import { Context, heartbeat } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { decodeArrayFromPayloads } from '@temporalio/common/lib/internal-non-workflow';
import type { temporal } from '@temporalio/proto';

import { InvalidStateError, NotFoundError } from '../../workflows/lib/errors';
import { OWNER_TAGS } from '../../workflows/lib/owner-tags';
import type { RetentionPolicy } from '../../workflows/lib/retention-policy';
import type { ControlPlane, SnapshotDescription } from '../control-plane/control-plane';

/** One snapshot with the verdict and why. */
export interface SnapshotVerdict {
  snapshotId: string;
  instanceId: string;
  type: SnapshotDescription['type'];
  /** `dbops:purpose`, null when dbops did not make it. */
  purpose: string | null;
  createdAt: string | null;
  expire: boolean;
  reason: string;
}

export interface ExpireOutcome {
  outcome: 'deleted' | 'already-gone' | 'kept';
  reason: string;
}

/** The snapshots dbops takes and retention may expire. */
const DBOPS_PURPOSES = ['backup', 'pre-migration'];

const RESTORE_TYPES = ['snapshotRestore', 'drTest', 'pitrRestore'];

const DAY_MS = 24 * 60 * 60 * 1000;

/** What the running restores use: single snapshots, and whole instances whose choice is not made yet. */
interface InFlight {
  snapshots: Map<string, string>;
  instances: Map<string, string>;
}

export function createRetentionActivities(controlPlane: ControlPlane) {
  return {
    /**
     * Every snapshot of `instanceId` (of every instance when null) with its verdict under `policy`,
     * newest first per instance. NotFoundError when the named instance does not exist.
     */
    async judgeSnapshots(input: {
      instanceId: string | null;
      policy: RetentionPolicy;
    }): Promise<SnapshotVerdict[]> {
      const instanceIds =
        input.instanceId === null
          ? (await controlPlane.listInstances()).map((i) => i.instanceId).sort()
          : [(await controlPlane.describeInstance(input.instanceId)).instanceId];
      const inFlight = await restoresInFlight(Context.current().client);
      const verdicts: SnapshotVerdict[] = [];
      for (const instanceId of instanceIds) {
        const snapshots = await controlPlane.listSnapshots(instanceId);
        verdicts.push(...(await judge(controlPlane, snapshots, input.policy, inFlight, Date.now())));
        heartbeat({ judged: instanceId });
        Context.current().cancellationSignal.throwIfAborted();
      }
      return verdicts;
    },

    /**
     * Deletes one snapshot the plan expired, after checking again what may have changed since:
     * the keep tag, that it is not now the newest available, and every use by a restore in flight.
     * Safe to repeat: a snapshot already gone (a retry after a lost reply) is `already-gone`; one
     * the provider refuses to delete (an automated backup that goes with its instance) is `kept`.
     */
    async expireSnapshot(verdict: SnapshotVerdict): Promise<ExpireOutcome> {
      const { snapshotId, instanceId } = verdict;
      try {
        const current = await controlPlane.describeSnapshot(snapshotId);
        heartbeat({ snapshotId, step: 'described' });
        const keep = keepTag(current);
        if (keep !== undefined) return { outcome: 'kept', reason: keep };
        const newest = (await controlPlane.listSnapshots(instanceId)).find((s) => s.status === 'available');
        if (newest?.snapshotId === snapshotId) {
          return { outcome: 'kept', reason: 'it is now the newest available snapshot' };
        }
        const inUse = await usedBy(controlPlane, current, await restoresInFlight(Context.current().client));
        heartbeat({ snapshotId, step: 'checked' });
        if (inUse !== undefined) return { outcome: 'kept', reason: inUse };
        Context.current().cancellationSignal.throwIfAborted();
        await controlPlane.deleteSnapshot(snapshotId);
        return { outcome: 'deleted', reason: verdict.reason };
      } catch (error) {
        if (error instanceof NotFoundError) {
          return { outcome: 'already-gone', reason: `${verdict.reason} (already gone)` };
        }
        // E.g. an automated snapshot the policy included: RDS deletes those only with their instance.
        if (error instanceof InvalidStateError) {
          return { outcome: 'kept', reason: `the provider refuses to delete it: ${error.message}` };
        }
        throw error;
      }
    },
  };
}

async function judge(
  controlPlane: ControlPlane,
  snapshots: SnapshotDescription[],
  policy: RetentionPolicy,
  inFlight: InFlight,
  now: number,
): Promise<SnapshotVerdict[]> {
  const newestAvailable = snapshots.find((s) => s.status === 'available')?.snapshotId;
  let inScope = 0;
  const verdicts: SnapshotVerdict[] = [];
  for (const snapshot of snapshots) {
    const verdict = (expire: boolean, reason: string): SnapshotVerdict => ({
      snapshotId: snapshot.snapshotId,
      instanceId: snapshot.instanceId,
      type: snapshot.type,
      purpose: snapshot.tags[OWNER_TAGS.purpose] ?? null,
      createdAt: snapshot.createdAt ?? null,
      expire,
      reason,
    });
    const outOfScope = scopeReason(snapshot, policy);
    if (outOfScope !== undefined) {
      verdicts.push(verdict(false, outOfScope));
      continue;
    }
    const rank = ++inScope;
    const age = snapshot.createdAt === undefined ? 0 : now - Date.parse(snapshot.createdAt);
    const keep =
      keepTag(snapshot) ??
      (snapshot.snapshotId === newestAvailable ? 'the newest available snapshot' : undefined) ??
      (rank <= policy.keepNewest ? `among the newest ${policy.keepNewest} (number ${rank})` : undefined) ??
      (age < policy.keepDays * DAY_MS
        ? `younger than ${policy.keepDays} days (${days(age)} days old)`
        : undefined) ??
      (await usedBy(controlPlane, snapshot, inFlight));
    verdicts.push(
      keep === undefined
        ? verdict(
            true,
            `${days(age)} days old (over ${policy.keepDays}) and not among the newest ${policy.keepNewest}`,
          )
        : verdict(false, keep),
    );
  }
  return verdicts;
}

/** Why the policy does not judge the snapshot at all, or undefined when it does. */
function scopeReason(snapshot: SnapshotDescription, policy: RetentionPolicy): string | undefined {
  if (snapshot.status !== 'available') return `${snapshot.status}: only available snapshots are judged`;
  if (snapshot.type === 'automated' && !policy.includeAutomated) {
    return 'automated: the provider expires it with its backup retention (policy includeAutomated judges it)';
  }
  const purpose = snapshot.tags[OWNER_TAGS.purpose];
  if (snapshot.type === 'manual' && !DBOPS_PURPOSES.includes(purpose ?? '') && !policy.includeForeign) {
    return `not a dbops backup or pre-migration snapshot (${OWNER_TAGS.purpose} ${purpose ?? 'absent'}; policy includeForeign judges it)`;
  }
  return undefined;
}

/** Any `dbops:keep` except `false` keeps a snapshot. */
function keepTag(snapshot: SnapshotDescription): string | undefined {
  const value = snapshot.tags[OWNER_TAGS.keep];
  return value === undefined || value === 'false' ? undefined : `tagged ${OWNER_TAGS.keep}=${value}`;
}

/** Why a restore in flight needs the snapshot, or undefined when none does. */
async function usedBy(
  controlPlane: ControlPlane,
  snapshot: SnapshotDescription,
  inFlight: InFlight,
): Promise<string | undefined> {
  const reason = inFlight.snapshots.get(snapshot.snapshotId) ?? inFlight.instances.get(snapshot.instanceId);
  if (reason !== undefined) return reason;
  const users = await controlPlane.snapshotUsers(snapshot.snapshotId);
  return users.length === 0 ? undefined : `in use: ${users.join('; ')}`;
}

/** The running restore and DR test runs, and what each uses or may still choose. */
async function restoresInFlight(client: Client): Promise<InFlight> {
  const inFlight: InFlight = { snapshots: new Map(), instances: new Map() };
  const types = RESTORE_TYPES.map((type) => `'${type}'`).join(', ');
  const query = `ExecutionStatus = 'Running' AND WorkflowType IN (${types})`;
  for await (const run of client.workflow.list({ query })) {
    const history = await client.workflow.getHandle(run.workflowId, run.runId).fetchHistory();
    const events = history.events ?? [];
    const converter = client.options.loadedDataConverter;
    const [input] = (await decodeArrayFromPayloads(
      converter,
      events[0]?.workflowExecutionStartedEventAttributes?.input?.payloads,
    )) as [RestoreRunInput | undefined];
    const scheduled = await scheduledRestores(converter, events);
    const what = `${run.type} ${run.workflowId} is running`;
    const chosen = [input?.snapshotId, input?.resume?.snapshot?.snapshotId, ...scheduled.fromSnapshot];
    let found = false;
    for (const snapshotId of chosen) {
      if (typeof snapshotId !== 'string') continue;
      inFlight.snapshots.set(snapshotId, `${what} and restores it`);
      found = true;
    }
    // A point-in-time restore's base is the provider's choice, seen by snapshotUsers once asked for.
    const asked = scheduled.pointInTime || (run.type === 'pitrRestore' && input?.resume !== undefined);
    if (!found && !asked && typeof input?.instanceId === 'string') {
      inFlight.instances.set(
        input.instanceId,
        `${what} and has not yet chosen which snapshot of ${input.instanceId} it restores`,
      );
    }
    heartbeat({ restoresInFlight: run.workflowId });
  }
  return inFlight;
}

/** The fields of a restore's or DR test's input that name what it restores. */
interface RestoreRunInput {
  instanceId?: unknown;
  snapshotId?: unknown;
  resume?: { snapshot?: { snapshotId?: unknown } };
}

/** The snapshots of the `restoreFromSnapshot` calls a run scheduled, and whether it asked for a point in time. */
async function scheduledRestores(
  converter: Client['options']['loadedDataConverter'],
  events: temporal.api.history.v1.IHistoryEvent[],
): Promise<{ fromSnapshot: unknown[]; pointInTime: boolean }> {
  const fromSnapshot: unknown[] = [];
  let pointInTime = false;
  for (const event of events) {
    const scheduled = event.activityTaskScheduledEventAttributes;
    const name = scheduled?.activityType?.name;
    if (name === 'restoreToPointInTime') pointInTime = true;
    if (name !== 'restoreFromSnapshot') continue;
    const [snapshotId] = await decodeArrayFromPayloads(converter, scheduled?.input?.payloads);
    fromSnapshot.push(snapshotId);
  }
  return { fromSnapshot, pointInTime };
}

function days(ms: number): string {
  return (ms / DAY_MS).toFixed(1);
}
