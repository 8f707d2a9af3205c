/**
 * Maps AWS SDK faults (RDS and S3) onto the typed errors of `workflows/lib/errors`, so workflows
 * retry what is worth retrying and fail fast, with the resource named, on everything else.
 */
import {
  AlreadyExistsError,
  BusyError,
  DbopsError,
  InvalidInputError,
  InvalidStateError,
  NotFoundError,
  PointInTimeRestoreNotEnabledError,
  QuotaExceededError,
  TransientError,
} from '../../workflows/lib/errors';

/** The error codes the SDK's own retry strategy treats as throttling (and so do we). */
const THROTTLING_CODES = new Set([
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'SlowDown',
  'PriorRequestNotComplete',
]);

/**
 * Refusals that last only while a condition lasts: the instance is backing-up or modifying, the
 * snapshot to export is not ready, the instance class has no capacity in the zone right now.
 */
const BUSY_CODES = new Set([
  'InvalidDBInstanceState',
  'InvalidExportSourceState',
  'InsufficientDBInstanceCapacity',
]);

/** Connection-level failures: the request may never have reached AWS. */
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'TimeoutError',
]);

interface SdkErrorShape {
  name: string;
  /** Node's system error code (ECONNRESET ...) on connection failures. */
  code?: string;
  $metadata?: { httpStatusCode?: number };
}

/**
 * `what` names the resource and the operation, e.g. `snapshot "x" of instance "y"`: it starts every
 * message. A DbopsError passes through unchanged; an error that is not an AWS fault at all
 * (a bug of ours) is rethrown as it is rather than dressed up as one.
 */
export function toDbopsError(error: unknown, what: string): Error {
  if (error instanceof DbopsError) return error;
  if (!(error instanceof Error)) return new Error(`${what}: ${String(error)}`);
  const shape = error as SdkErrorShape;
  // The SDK names modelled faults after their shape (`DBInstanceNotFoundFault`); unmodelled ones
  // keep the wire code. Strip the suffix so both spellings match.
  const code = shape.name.replace(/(Fault|Exception)$/, '');
  const status = shape.$metadata?.httpStatusCode;
  const detail = `${what}: ${error.message} (${code}${status ? `, HTTP ${status}` : ''})`;

  if (THROTTLING_CODES.has(code) || THROTTLING_CODES.has(shape.name) || status === 429) {
    return new TransientError(`${what}: throttled by AWS, retrying later (${code})`);
  }
  if (status !== undefined && status >= 500) return new TransientError(detail);
  if (NETWORK_CODES.has(shape.code ?? '') || NETWORK_CODES.has(shape.name)) {
    return new TransientError(detail);
  }
  if (code === 'PointInTimeRestoreNotEnabled') return new PointInTimeRestoreNotEnabledError(detail, code);
  if (BUSY_CODES.has(code)) return new BusyError(`waiting: ${detail}`, code);
  if (/AlreadyExists/.test(code)) return new AlreadyExistsError(detail, code);
  if (/NotFound|^NoSuch/.test(code)) return new NotFoundError(detail, code);
  if (/^Invalid.*State/.test(code)) return new InvalidStateError(detail, code);
  if (/Quota/.test(code)) return new QuotaExceededError(detail, code);
  if (/^(InvalidParameter|MissingParameter|Validation|InvalidS3Bucket|InvalidRestore)/.test(code)) {
    return new InvalidInputError(detail, code);
  }
  // Any other refusal (access denied, a KMS key we may not use...) will not change by retrying.
  if (status !== undefined && status >= 400) return new InvalidInputError(detail, code);
  return error;
}

/** Runs one AWS call and rethrows its failure as a typed error naming `what`. */
export async function mapAwsErrors<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw toDbopsError(error, what);
  }
}
