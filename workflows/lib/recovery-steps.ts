/**
 * Steps the recovery workflows share: the activity proxies, waiting for a restored instance to
 * become available, deleting an instance and waiting until it is gone.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  patched,
  proxyActivities,
  proxyLocalActivities,
  sleep,
} from '@temporalio/workflow';

import type { Activities } from '../../activities';
import type { InstanceDescription } from '../../activities/control-plane/control-plane';
import { DeletionProtectedError, InvalidStateError, NON_RETRYABLE_ERROR_TYPES } from './errors';
import { DATABASE_RETRY } from './retry';
import { pollUntil, toMs, type PollOptions } from './polling';
import type { RecoveryTimeouts } from './recovery';

const retry = {
  initialInterval: '2 seconds',
  maximumInterval: '1 minute',
  maximumAttempts: 8,
  nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES,
};

/** ControlPlane calls return at once (the slow part runs on the provider): short timeouts. */
export const controlPlane = proxyActivities<Activities>({ startToCloseTimeout: '2 minutes', retry });

/** The calls that only look (describe, find, list): they change nothing, so repeating one is safe. */
export type Lookups = Pick<
  Activities,
  'describeInstance' | 'findInstance' | 'listSnapshots' | 'findOrphanDrInstances'
>;

/**
 * The same looks as local activities: run by the worker inside the workflow task that asks for
 * them, with no trip through the task queue and no second workflow task for the answer (about
 * 15 ms less per look on a dev server); each answer is a marker in the history. A worker lost
 * during one loses its workflow task, and the worker that takes the task over looks again. The
 * waits between looks stay durable timers.
 */
const localLookups: Lookups = proxyLocalActivities<Activities>({ startToCloseTimeout: '2 minutes', retry });

/** The looks a run makes: local activities, or the activities of runs started before (`local` false). */
export function lookups(local: boolean): Lookups {
  return local ? localLookups : controlPlane;
}

/**
 * Runs started before create and delete calls waited for their cancellation and waited out busy
 * resources replay as they ran: a cancel during a create call went straight on to the cleanup, and
 * a delete refused with InvalidStateError was asked again on a timer.
 */
const WAITING_CREATE_CALLS = 'create-calls-wait-for-cancellation-and-busy-resources';

/** The longest pause between two attempts of a call waiting out a busy resource. */
const MAX_WAIT_INTERVAL_MS = 120_000;

/**
 * For the calls that create or delete (snapshot, restore, export, delete instance). They can meet
 * a condition that passes on its own (BusyError: the instance is backing-up in its backup window,
 * modifying, no capacity right now), and RDS backup and maintenance windows last from 30 minutes
 * to hours: so instead of 8 quick attempts, attempts go on with a backoff growing to 2 minutes
 * until `bound` has passed in all (each attempt names the condition in its log, heartbeat and
 * failure). A retry after a lost reply finds its own resource (owner tags) and carries on.
 * Cancellation waits until the call has ended (WAIT_CANCELLATION_COMPLETED): a cancelled run's
 * cleanup then sees whatever the call created.
 */
export function createCalls(timeouts: RecoveryTimeouts, bound: string = timeouts.busy) {
  const interval = Math.min(toMs(timeouts.pollInterval), MAX_WAIT_INTERVAL_MS);
  return proxyActivities<Activities>({
    startToCloseTimeout: '2 minutes',
    // The call heartbeats while it runs: a worker lost mid-call is noticed in seconds.
    heartbeatTimeout: '30 seconds',
    scheduleToCloseTimeout: bound,
    cancellationType: patched(WAITING_CREATE_CALLS)
      ? ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
      : ActivityCancellationType.TRY_CANCEL,
    retry: {
      initialInterval: interval,
      backoffCoefficient: 2,
      maximumInterval: MAX_WAIT_INTERVAL_MS,
      nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES,
    },
  });
}

/** The DR checks scan tables and run sample queries: longer, heartbeating every second while they run. */
export const checks = proxyActivities<Activities>({
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '1 minute',
  retry: DATABASE_RETRY,
});

/**
 * How a long wait carries over a continue-as-new: where the earlier run left it, and how this run
 * hands it to the next; and how it looks: since when, on a steady cadence (see pollUntil), and
 * with which calls (`look`: the control plane's activities by default).
 */
export interface WaitCarry extends Pick<
  PollOptions<unknown>,
  'resume' | 'continueAsNew' | 'started' | 'since' | 'steady'
> {
  look?: Lookups;
}

export async function waitForAvailable(
  instanceId: string,
  timeouts: RecoveryTimeouts,
  onState: (state: InstanceDescription) => void,
  { look = controlPlane, ...carry }: WaitCarry = {},
): Promise<InstanceDescription & { endpoint: NonNullable<InstanceDescription['endpoint']> }> {
  const state = await pollUntil({
    what: `instance ${instanceId} to be available`,
    describe: () => look.describeInstance(instanceId),
    isDone: (s) => s.status === 'available' && s.endpoint !== undefined,
    failure: (s) =>
      ['failed', 'deleting', 'stopped'].includes(s.status) ? `it is ${s.providerStatus}` : undefined,
    interval: timeouts.pollInterval,
    maxInterval: timeouts.maxPollInterval,
    timeout: timeouts.restore,
    onState,
    ...carry,
  });
  return { ...state, endpoint: state.endpoint! };
}

/**
 * Deletes an instance this run created (its tags carry `owner`) without a final snapshot, and
 * waits until it is gone; an instance with other tags is never touched. Returns what it found.
 */
export async function deleteOwnedInstance(
  instanceId: string,
  owner: Record<string, string>,
  timeouts: RecoveryTimeouts,
  carry: WaitCarry = {},
): Promise<'deleted' | 'absent' | 'not-ours'> {
  const found = await (carry.look ?? controlPlane).findInstance(instanceId);
  if (found === null) return 'absent';
  if (!Object.entries(owner).every(([key, value]) => found.tags[key] === value)) return 'not-ours';
  await deleteInstance(instanceId, timeouts, carry);
  return 'deleted';
}

/**
 * The cleanup of a cancelled restore: deletes the instance this run (or an earlier run of its
 * chain) created. A real recovery on aws is protected from deletion (deletion protection, and the
 * worker's policy): then the run fails saying the instance is kept and how to remove it by hand,
 * rather than ending cancelled as if nothing were left behind.
 */
export async function deleteCancelledRestore(
  instanceId: string,
  owner: Record<string, string>,
  timeouts: RecoveryTimeouts,
): Promise<void> {
  try {
    await CancellationScope.nonCancellable(() => deleteOwnedInstance(instanceId, owner, timeouts));
  } catch (error) {
    if ((error as { cause?: { type?: string } }).cause?.type !== DeletionProtectedError.name) throw error;
    throw ApplicationFailure.nonRetryable(
      `restore cancelled, but the instance ${instanceId} it created is kept: ${failureMessage(error)}. ` +
        `If it is not wanted, remove it by hand: aws rds modify-db-instance --db-instance-identifier ${instanceId} ` +
        `--no-deletion-protection --apply-immediately, then aws rds delete-db-instance --db-instance-identifier ` +
        `${instanceId} --skip-final-snapshot`,
      'RestoreKept',
    );
  }
}

/**
 * Deletes a temporary instance (no final snapshot) and waits until it is gone, both within the
 * deletion timeout. One that cannot be deleted yet (RDS refuses while it is still creating or
 * backing-up) is asked again with the backoff of createCalls. Carried over from an earlier run
 * of the chain, the deletion was asked for already: only the wait goes on.
 */
export async function deleteInstance(
  instanceId: string,
  timeouts: RecoveryTimeouts,
  carry: WaitCarry = {},
): Promise<void> {
  if (carry.resume !== undefined) {
    await waitUntilGone(instanceId, timeouts.deletion, timeouts, carry);
    return;
  }
  const deadline = Date.now() + toMs(timeouts.deletion);
  const options = { skipFinalSnapshot: true, deleteAutomatedBackups: true };
  if (patched(WAITING_CREATE_CALLS)) {
    await createCalls(timeouts, timeouts.deletion).deleteInstance(instanceId, options);
  } else {
    for (;;) {
      try {
        await controlPlane.deleteInstance(instanceId, options);
        break;
      } catch (error) {
        const type = (error as { cause?: { type?: string } }).cause?.type;
        if (type !== InvalidStateError.name || Date.now() >= deadline) throw error;
        await sleep(timeouts.pollInterval);
      }
    }
  }
  await waitUntilGone(
    instanceId,
    Math.max(deadline - Date.now(), toMs(timeouts.pollInterval)),
    timeouts,
    carry,
  );
}

export async function waitUntilGone(
  instanceId: string,
  timeout: string | number,
  timeouts: RecoveryTimeouts,
  { look = controlPlane, ...carry }: WaitCarry = {},
): Promise<void> {
  await pollUntil({
    what: `instance ${instanceId} to be deleted`,
    describe: () => look.findInstance(instanceId),
    isDone: (s) => s === null,
    interval: timeouts.pollInterval,
    maxInterval: timeouts.maxPollInterval,
    timeout,
    ...carry,
  });
}

/** A failure's message for reports: the activity's own message rather than "Activity task failed". */
export function failureMessage(error: unknown): string {
  let current = error as { message?: string; cause?: unknown } | undefined;
  while (current?.cause !== undefined && (current as { cause?: unknown }).cause instanceof Error) {
    current = current.cause as { message?: string; cause?: unknown };
  }
  return current?.message ?? String(error);
}
