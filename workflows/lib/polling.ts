/**
 * Waiting for the control plane: describe, sleep on a durable timer, describe again. A worker
 * restart loses nothing, the history shows every look, and every wait is bounded.
 *
 * The looks back off: the pause after a look is a tenth of the time waited so far, at least the
 * poll interval and at most the longest pause (default 15 minutes). A state is so seen at most
 * about a tenth of the wait late (a restore's RTO stays true to ~10 %), and a 48-hour wait costs
 * a few hundred looks instead of thousands. A look costs ~11 history events (activity and timer),
 * so a wait whose workflow can carry it over continues as new once the run's history is long
 * (Temporal suggests it, or HISTORY_EVENTS_PER_RUN): the next run of the chain goes on with the
 * same wait, its backoff and its deadline, from where this one stopped.
 *
 * A wait can keep a steady cadence (`steady`): each pause then counts from when the previous look
 * was due rather than from its answer, so the time a look takes (its workflow task, the provider's
 * answer) does not add up from look to look; and a wait may count from when what it waits for was
 * asked (`since`, e.g. the restore request). Its tenth look then comes ten pauses after the
 * request, not ten pauses plus the time of ten looks.
 */
import { ApplicationFailure, patched, sleep, workflowInfo } from '@temporalio/workflow';

import { InvalidInputError } from './errors';

/** Where a wait stands, in workflow time (epoch ms): what a run carries over to the next. */
export interface WaitPosition {
  /** When the wait began: the pause between looks grows with the time waited since. */
  since: number;
  /** When it gives up. */
  deadline: number;
}

export interface PollOptions<T> {
  /** What we wait for, for messages: "snapshot mcp-demo-manual-20261127-060000 to be available". */
  what: string;
  /** One look at the current state (an activity call). */
  describe: () => Promise<T>;
  /** Done when this returns true. */
  isDone: (state: T) => boolean;
  /** A reason when the state can never become done (e.g. status `failed`). */
  failure?: (state: T) => string | undefined;
  /** The first and shortest pause between looks (Temporal duration, e.g. '10 seconds'). */
  interval: string | number;
  /** The longest pause between looks; default MAX_POLL_INTERVAL. */
  maxInterval?: string | number;
  /** Give up after this long (Temporal duration). */
  timeout: string | number;
  /**
   * When the wait began, in workflow time (epoch ms), if before now: e.g. when the restore it
   * waits for was requested. Its deadline and its looks count from it. Default: now.
   */
  since?: number;
  /** Each pause counts from when the previous look was due, not from its answer (see above). */
  steady?: boolean;
  /** The wait as an earlier run of this workflow's chain left it: go on with it. */
  resume?: WaitPosition;
  /**
   * Continues the workflow as new, carrying this wait (it throws, as `continueAsNew` does). Given,
   * the wait hands over to a new run once the history is long; not given, it runs to its end in
   * this run (only for waits whose timeout bounds their history, e.g. a deletion).
   */
  continueAsNew?: (wait: WaitPosition) => Promise<never>;
  /** Told where the wait stands when it begins: a workflow running several waits carries them all. */
  started?: (wait: WaitPosition) => void;
  /** Called with every state seen, e.g. to update a progress query. */
  onState?: (state: T) => void;
}

/** The longest pause between two looks unless a run says otherwise. */
export const MAX_POLL_INTERVAL = '15 minutes';

/**
 * A run continues as new at this many history events, unless Temporal suggests it earlier (at
 * 4,096 events or 4 MB by default): a worker that picks the run up replays a short history.
 */
export const HISTORY_EVENTS_PER_RUN = 2_000;

/**
 * Runs started before waits backed off and continued as new replay as they ran: a look every
 * `interval`, the whole wait in one run.
 */
const BACKOFF = 'polling-backs-off-and-continues-as-new';

export async function pollUntil<T>(options: PollOptions<T>): Promise<T> {
  const current = patched(BACKOFF);
  const since = Math.min(options.since ?? Date.now(), Date.now());
  const wait = options.resume ?? { since, deadline: since + toMs(options.timeout) };
  options.started?.(wait);
  // When the next look is due, on a steady cadence: a resumed wait keeps its backoff from now on.
  let due = options.resume === undefined ? wait.since : Date.now();
  for (;;) {
    const state = await options.describe();
    options.onState?.(state);
    if (options.isDone(state)) return state;
    const failure = options.failure?.(state);
    if (failure !== undefined) {
      throw ApplicationFailure.nonRetryable(`waiting for ${options.what}: ${failure}`, 'WaitFailed');
    }
    if (Date.now() >= wait.deadline) {
      throw ApplicationFailure.nonRetryable(
        `gave up waiting for ${options.what} after ${formatDuration(options.timeout)}; ` +
          `last state: ${JSON.stringify(state)}`,
        'WaitTimedOut',
      );
    }
    if (!current) {
      await sleep(options.interval);
      continue;
    }
    if (options.continueAsNew !== undefined && historyIsLong()) await options.continueAsNew(wait);
    if (options.steady !== true) {
      await sleep(nextPause(options, wait));
      continue;
    }
    due = nextDue(options, wait, due);
    await sleep(Math.min(due, wait.deadline) - Date.now());
  }
}

/**
 * When the look after the one due at `due` is due: a pause later, the pause as nextPause reckons it
 * from `due`. A look answered so late that this has passed is followed by the next after half a
 * pause, so looks never come back to back.
 */
function nextDue(
  options: Pick<PollOptions<unknown>, 'interval' | 'maxInterval'>,
  wait: WaitPosition,
  due: number,
): number {
  const pause = Math.min(
    Math.max((due - wait.since) / 10, toMs(options.interval)),
    toMs(options.maxInterval ?? MAX_POLL_INTERVAL),
  );
  return Math.max(due + pause, Date.now() + pause / 2);
}

/** A tenth of the time waited, within [interval, maxInterval], and never past the deadline. */
function nextPause(
  options: Pick<PollOptions<unknown>, 'interval' | 'maxInterval'>,
  wait: WaitPosition,
): number {
  const now = Date.now();
  const pause = Math.min(
    Math.max((now - wait.since) / 10, toMs(options.interval)),
    toMs(options.maxInterval ?? MAX_POLL_INTERVAL),
  );
  // The last look falls on the deadline (timers fire to the second).
  return Math.max(Math.min(pause, wait.deadline - now), 1_000);
}

/** Whether this run should hand over to a new one (Temporal suggests it, or our own bound). */
export function historyIsLong(): boolean {
  const { continueAsNewSuggested, historyLength } = workflowInfo();
  return continueAsNewSuggested || historyLength >= HISTORY_EVENTS_PER_RUN;
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

/**
 * A caller's duration (a timeout, an interval) checked against its upper bound: a typo such as
 * '2000 hours' would otherwise keep a run waiting for months. Refused with an InvalidInputError
 * that names the field and the bound.
 */
export function requireDuration(field: string, value: unknown, max: string): string {
  if (!isPositiveDuration(value)) {
    throw ApplicationFailure.nonRetryable(
      `${field} ${JSON.stringify(value)} is not valid: a duration such as '30 seconds' or '2 hours'`,
      InvalidInputError.name,
    );
  }
  if (toMs(value) > toMs(max)) {
    throw ApplicationFailure.nonRetryable(
      `${field} ${JSON.stringify(value)} is too long: at most ${max}`,
      InvalidInputError.name,
    );
  }
  return value;
}

function formatDuration(duration: string | number): string {
  return typeof duration === 'number' ? `${duration / 1000} s` : duration;
}
