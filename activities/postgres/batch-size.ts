/**
 * Self-tuning batch size: after each batch the size moves toward the one that takes the target
 * time (a batch long enough to amortise its round trip and commit, short enough that its row
 * locks and WAL burst go unnoticed), by at most half or one and a half times per batch so one odd
 * batch does not swing it; a batch that hits its statement or lock timeout halves it. Bounded by
 * the backfill's minimum and maximum. While the application is busy the target may be a shorter
 * one (targetNow), and a pause may follow each batch (contendedPauseMs).
 */

export interface BatchTuning {
  /** The batch duration to aim at, in ms. */
  targetMs: number;
  /**
   * The duration to aim at instead while other sessions are busy (throttle/busy-sessions.ts), when
   * shorter than `targetMs`; unset: always `targetMs`.
   */
  contendedTargetMs?: number;
  /**
   * While other sessions are busy, pause after each batch this many times as long as it took (2:
   * batches run a third of the time), so the application keeps most of the machine; unset or 0:
   * no pause.
   */
  contendedPauseFactor?: number;
  minSize: number;
  maxSize: number;
}

/** Within this fraction of the target, the size stays (no chasing noise). */
const DEADBAND = 0.1;
const MAX_GROWTH = 1.5;
const MAX_SHRINK = 0.5;

const clamp = (size: number, tuning: BatchTuning) =>
  Math.min(Math.max(Math.round(size), tuning.minSize), tuning.maxSize);

/** The size for the next batch, after one of `size` rows took `elapsedMs`. */
export function nextBatchSize(size: number, elapsedMs: number, tuning: BatchTuning): number {
  const ratio = tuning.targetMs / Math.max(elapsedMs, 1);
  if (Math.abs(ratio - 1) <= DEADBAND) return clamp(size, tuning);
  return clamp(size * Math.min(Math.max(ratio, MAX_SHRINK), MAX_GROWTH), tuning);
}

/** The duration batches aim at now: the contended target while other sessions are busy. */
export function targetNow(tuning: BatchTuning, busySessions: number): number {
  if (busySessions === 0 || tuning.contendedTargetMs === undefined) return tuning.targetMs;
  return Math.min(tuning.targetMs, tuning.contendedTargetMs);
}

/** The pause after a batch that took `batchMs`: only while other sessions are busy. */
export function contendedPauseMs(tuning: BatchTuning, busySessions: number, batchMs: number): number {
  if (busySessions === 0) return 0;
  return Math.round(batchMs * (tuning.contendedPauseFactor ?? 0));
}

/** The size after a batch of `size` rows timed out. */
export function shrunkBatchSize(size: number, tuning: BatchTuning): number {
  return clamp(size * MAX_SHRINK, tuning);
}

/**
 * The session limits of tuned batches: a statement ten times over its target is cut short (at
 * least 1 s, at most the backfill's upper bound), and a lock wait a quarter of that (at least
 * 500 ms), then the batch is retried smaller.
 */
export function tunedTimeouts(
  tuning: BatchTuning,
  batchTimeoutMs: number,
): { statementMs: number; lockMs: number } {
  const statementMs = Math.min(Math.max(10 * tuning.targetMs, 1_000), batchTimeoutMs);
  return { statementMs, lockMs: Math.min(Math.max(Math.round(statementMs / 4), 500), statementMs) };
}
