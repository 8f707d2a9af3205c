/**
 * Heartbeats on a timer while an activity's work runs, so one long statement (a VACUUM, a backfill
 * batch, a count on a cold restored volume) never looks like a lost worker, and lets the work hear
 * the activity's cancellation so it can stop its SQL instead of running on unseen.
 *
 * Temporal delivers a cancellation to an activity only through a heartbeat's answer: work that
 * does not heartbeat while it waits can neither be told apart from a dead worker nor be cancelled.
 */
import { Context } from '@temporalio/activity';
import type { Client } from 'pg';

/**
 * Default time between two heartbeats. A heartbeat is cheap: the SDK sends the latest one to the
 * server at most every HEARTBEAT_THROTTLE (and every 80% of the heartbeat timeout).
 */
export const HEARTBEAT_EVERY_MS = 1_000;

/**
 * The worker's `maxHeartbeatThrottleInterval`. A cancellation reaches an activity only in the
 * server's answer to a heartbeat, and by default the SDK sends them only every 80% of the
 * heartbeat timeout (24 s for a 30 s timeout): a cancelled statement would often run to its own
 * timeout first. Every activity's heartbeat timeout is set well above this.
 */
export const HEARTBEAT_THROTTLE = '5 seconds';

export interface HeartbeatOptions {
  /**
   * What each heartbeat carries: a value, or a function called at every beat (e.g. the latest
   * checkpoint, which a retry reads back from `Context.current().info.heartbeatDetails`).
   */
  details?: unknown;
  /** Milliseconds between two heartbeats. Default HEARTBEAT_EVERY_MS. */
  everyMs?: number;
  /**
   * Called once if the activity is cancelled while the work runs, e.g. the function returned by
   * `backendCanceller`. It is awaited before `heartbeatWhile` settles; a failure is logged.
   */
  onCancel?: () => unknown;
}

/**
 * Runs `work`, heartbeating at once and then every `everyMs` until it settles. `work` receives the
 * activity's cancellation signal: check `signal.aborted` between statements. When the activity is
 * cancelled and the work fails (its statement was cancelled), this throws the activity's
 * CancelledFailure, so Temporal records a cancellation and not a failure to retry; work that
 * finishes anyway returns its result.
 */
export async function heartbeatWhile<T>(
  work: (signal: AbortSignal) => Promise<T>,
  options: HeartbeatOptions = {},
): Promise<T> {
  const context = Context.current();
  const signal = context.cancellationSignal;
  const { details, onCancel } = options;
  const beat = () =>
    context.heartbeat(typeof details === 'function' ? (details as () => unknown)() : details);
  let cancelling: Promise<void> | undefined;
  const cancel = () => {
    cancelling = (async () => {
      try {
        await onCancel?.();
      } catch (error) {
        context.log.warn('could not cancel the running work', { error: (error as Error).message });
      }
    })();
  };

  // A local activity has no heartbeat (the workflow task it runs in stands for it): no beats.
  const local = context.info.isLocal;
  if (!local) beat();
  const timer = local ? undefined : setInterval(beat, options.everyMs ?? HEARTBEAT_EVERY_MS);
  if (signal.aborted) cancel();
  else signal.addEventListener('abort', cancel, { once: true });
  try {
    return await work(signal);
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    throw error;
  } finally {
    clearInterval(timer);
    signal.removeEventListener('abort', cancel);
    await cancelling;
  }
}

/**
 * An `onCancel` that cancels whatever statement `client` is running: `pg_cancel_backend` of its
 * backend, sent from a second connection opened with `connect`. The statement fails with
 * "canceling statement due to user request" and its transaction rolls back. Pair it with a
 * `signal.aborted` check before each statement: a cancel that lands between two statements
 * cancels nothing.
 */
export async function backendCanceller(
  client: Client,
  connect: (fn: (other: Client) => Promise<unknown>) => Promise<unknown>,
): Promise<() => Promise<void>> {
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const pid = rows[0]!.pid;
  return async () => {
    await connect((other) => other.query('SELECT pg_cancel_backend($1)', [pid]));
  };
}
