/**
 * The typed errors every provider maps its faults to (pure code: workflows use the names in retry
 * policies). An activity that throws one of these fails with `ApplicationFailure.type` = its name.
 * Activities import it too, so it must stay pure: no I/O, no Node built-ins, nothing from workers/,
 * only types from activities/.
 */

export class DbopsError extends Error {
  /** Whether Temporal should retry the activity that threw it. */
  readonly retryable: boolean = false;
  /** The provider's own code when a provider fault was mapped, e.g. `InvalidDBInstanceState`. */
  readonly providerCode: string | undefined;
  constructor(message: string, providerCode?: string) {
    super(message);
    this.providerCode = providerCode;
    this.name = new.target.name;
  }
}

/** The instance, snapshot or export does not exist. */
export class NotFoundError extends DbopsError {}
/** An instance or snapshot with that identifier already exists. */
export class AlreadyExistsError extends DbopsError {}
/** The resource is not in a state that allows the operation (e.g. snapshot of a `creating` instance). */
export class InvalidStateError extends DbopsError {}
/** The instance has deletion protection (a real recovery, or production): dbops never turns it off. */
export class DeletionProtectedError extends InvalidStateError {}
/** Bad input: the message names the field and the rule. */
export class InvalidInputError extends DbopsError {}
/** A point-in-time restore target outside [earliest, latest] restorable time; the message gives the range. */
export class RestoreTimeOutOfRangeError extends InvalidInputError {}
/** Point-in-time restore is not enabled (no backups retained / no WAL archive). */
export class PointInTimeRestoreNotEnabledError extends DbopsError {}
/** An account or provider limit, e.g. the snapshot quota. */
export class QuotaExceededError extends DbopsError {}
/**
 * A condition that passes on its own, to wait out rather than fail on: an instance `backing-up`
 * or `modifying` (RDS refuses snapshots and restores in the nightly backup window), an export
 * source not ready yet, no capacity for the instance class right now. The message names the
 * condition (`waiting: instance x is backing-up ...`). The create and delete calls that meet it
 * retry with a backoff of minutes, bounded by `timeouts.busy` (workflows/lib/recovery-steps.ts).
 */
export class BusyError extends DbopsError {
  override readonly retryable = true;
}
/** Throttling, 5xx, a connection reset: worth retrying. */
export class TransientError extends DbopsError {
  override readonly retryable = true;
}

/** For `retry.nonRetryableErrorTypes`: everything but TransientError fails fast. */
export const NON_RETRYABLE_ERROR_TYPES = [
  NotFoundError.name,
  AlreadyExistsError.name,
  InvalidStateError.name,
  DeletionProtectedError.name,
  InvalidInputError.name,
  RestoreTimeOutOfRangeError.name,
  PointInTimeRestoreNotEnabledError.name,
  QuotaExceededError.name,
];
