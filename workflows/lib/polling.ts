/**
 * Waiting for the control plane: describe, sleep on a durable timer, describe again. A worker
 * restart loses nothing, the history shows every look, and every wait is bounded.
 */
import { ApplicationFailure, sleep } from '@temporalio/workflow';

export interface PollOptions<T> {
  /** What we wait for, for messages: "snapshot mcp-demo-manual-20261127-060000 to be available". */
  what: string;
  /** One look at the current state (an activity call). */
  describe: () => Promise<T>;
  /** Done when this returns true. */
  isDone: (state: T) => boolean;
  /** A reason when the state can never become done (e.g. status `failed`). */
  failure?: (state: T) => string | undefined;
  /** Time between looks (Temporal duration, e.g. '10 seconds'). */
  interval: string | number;
  /** Give up after this long (Temporal duration). */
  timeout: string | number;
  /** Called with every state seen, e.g. to update a progress query. */
  onState?: (state: T) => void;
}

export async function pollUntil<T>(options: PollOptions<T>): Promise<T> {
  const deadline = Date.now() + toMs(options.timeout);
  for (;;) {
    const state = await options.describe();
    options.onState?.(state);
    if (options.isDone(state)) return state;
    const failure = options.failure?.(state);
    if (failure !== undefined) {
      throw ApplicationFailure.nonRetryable(`waiting for ${options.what}: ${failure}`, 'WaitFailed');
    }
    if (Date.now() >= deadline) {
      throw ApplicationFailure.nonRetryable(
        `gave up waiting for ${options.what} after ${formatDuration(options.timeout)}; ` +
          `last state: ${JSON.stringify(state)}`,
        'WaitTimedOut',
      );
    }
    await sleep(options.interval);
  }
}

// Durations as Temporal accepts them: a number of ms or a string like '30 minutes'.
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function toMs(duration: string | number): number {
  if (typeof duration === 'number') return duration;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|seconds?|m|minutes?|h|hours?|d|days?)\s*$/i.exec(
    duration,
  );
  if (!match)
    throw ApplicationFailure.nonRetryable(`not a duration: ${JSON.stringify(duration)}`, 'InvalidInputError');
  const unit = match[2]!.toLowerCase();
  const key = unit.startsWith('ms') || unit.startsWith('milli') ? 'ms' : unit[0]!;
  return Number(match[1]) * UNITS[key]!;
}

/** A duration string (e.g. '30 seconds') longer than zero: what a timeout or an interval must be. */
export function isPositiveDuration(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  try {
    return toMs(value) > 0;
  } catch {
    return false;
  }
}

function formatDuration(duration: string | number): string {
  return typeof duration === 'number' ? `${duration / 1000} s` : duration;
}
