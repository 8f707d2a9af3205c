/**
 * The typed errors every provider maps its faults to (pure code: workflows use the names in retry
 * policies). An activity that throws one of these fails with `ApplicationFailure.type` = its name.
 * Activities import it too, so it must stay pure: no I/O, no Node built-ins, nothing from workers/,
 * only types from activities/.
 */

export class DbopsError extends Error {
  /** Whether Temporal should retry the activity that threw it. */
  readonly retryable: boolean = false;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The instance, snapshot or export does not exist. */
export class NotFoundError extends DbopsError {}
/** An instance or snapshot with that identifier already exists. */
export class AlreadyExistsError extends DbopsError {}
/** The resource is not in a state that allows the operation (e.g. snapshot of a `creating` instance). */
export class InvalidStateError extends DbopsError {}
/** Bad input: the message names the field and the rule. */
export class InvalidInputError extends DbopsError {}
/** A point-in-time restore target outside [earliest, latest] restorable time; the message gives the range. */
export class RestoreTimeOutOfRangeError extends InvalidInputError {}
/** Point-in-time restore is not enabled (no backups retained / no WAL archive). */
export class PointInTimeRestoreNotEnabledError extends DbopsError {}
/** An account or provider limit, e.g. the snapshot quota. */
export class QuotaExceededError extends DbopsError {}
/** Throttling, 5xx, a connection reset: worth retrying. */
export class TransientError extends DbopsError {
  override readonly retryable = true;
}

/** For `retry.nonRetryableErrorTypes`: everything but TransientError fails fast. */
export const NON_RETRYABLE_ERROR_TYPES = [
  NotFoundError.name,
  AlreadyExistsError.name,
  InvalidStateError.name,
  InvalidInputError.name,
  RestoreTimeOutOfRangeError.name,
  PointInTimeRestoreNotEnabledError.name,
  QuotaExceededError.name,
];
