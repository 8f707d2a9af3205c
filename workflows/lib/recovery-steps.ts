/**
 * Steps the recovery workflows share: the activity proxies, waiting for a restored instance to
 * become available, deleting an instance and waiting until it is gone.
 */
import { proxyActivities, sleep } from '@temporalio/workflow';

import type { Activities } from '../../activities';
import type { InstanceDescription } from '../../activities/control-plane/control-plane';
import { InvalidStateError, NON_RETRYABLE_ERROR_TYPES } from './errors';
import { pollUntil, toMs } from './polling';
import type { RecoveryTimeouts } from './recovery';

const retry = {
  initialInterval: '2 seconds',
  maximumInterval: '1 minute',
  maximumAttempts: 8,
  nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES,
};

/** ControlPlane calls return at once (the slow part runs on the provider): short timeouts. */
export const controlPlane = proxyActivities<Activities>({ startToCloseTimeout: '2 minutes', retry });

/** The DR checks scan tables and run sample queries: longer, heartbeating after each check. */
export const checks = proxyActivities<Activities>({
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '5 minutes',
  retry: { ...retry, maximumAttempts: 3 },
});

export async function waitForAvailable(
  instanceId: string,
  timeouts: RecoveryTimeouts,
  onState: (state: InstanceDescription) => void,
): Promise<InstanceDescription & { endpoint: NonNullable<InstanceDescription['endpoint']> }> {
  const state = await pollUntil({
    what: `instance ${instanceId} to be available`,
    describe: () => controlPlane.describeInstance(instanceId),
    isDone: (s) => s.status === 'available' && s.endpoint !== undefined,
    failure: (s) =>
      ['failed', 'deleting', 'stopped'].includes(s.status) ? `it is ${s.providerStatus}` : undefined,
    interval: timeouts.pollInterval,
    timeout: timeouts.restore,
    onState,
  });
  return { ...state, endpoint: state.endpoint! };
}

/**
 * Deletes an instance this run created (its tags carry `owner`) without a final snapshot, and
 * waits until it is gone; an instance with other tags is never touched. One that cannot be
 * deleted yet (RDS refuses while it is still creating) is asked again after each poll interval
 * until the deletion timeout. Returns what it found.
 */
export async function deleteOwnedInstance(
  instanceId: string,
  owner: Record<string, string>,
  timeouts: RecoveryTimeouts,
): Promise<'deleted' | 'absent' | 'not-ours'> {
  const found = await controlPlane.findInstance(instanceId);
  if (found === null) return 'absent';
  if (!Object.entries(owner).every(([key, value]) => found.tags[key] === value)) return 'not-ours';
  await deleteInstance(instanceId, timeouts);
  return 'deleted';
}

/** Deletes a temporary instance (no final snapshot) and waits until it is gone. */
export async function deleteInstance(instanceId: string, timeouts: RecoveryTimeouts): Promise<void> {
  const deadline = Date.now() + toMs(timeouts.deletion);
  for (;;) {
    try {
      await controlPlane.deleteInstance(instanceId, {
        skipFinalSnapshot: true,
        deleteAutomatedBackups: true,
      });
      break;
    } catch (error) {
      const type = (error as { cause?: { type?: string } }).cause?.type;
      if (type !== InvalidStateError.name || Date.now() >= deadline) throw error;
      await sleep(timeouts.pollInterval);
    }
  }
  await waitUntilGone(instanceId, Math.max(deadline - Date.now(), toMs(timeouts.pollInterval)), timeouts);
}

export async function waitUntilGone(
  instanceId: string,
  timeout: string | number,
  timeouts: RecoveryTimeouts,
): Promise<void> {
  await pollUntil({
    what: `instance ${instanceId} to be deleted`,
    describe: () => controlPlane.findInstance(instanceId),
    isDone: (s) => s === null,
    interval: timeouts.pollInterval,
    timeout,
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
