/**
 * How activities that talk to the database are retried. A dropped connection fails one attempt
 * (DatabaseConnectionError, retryable); the attempts that follow must outlast what drops it: a
 * crashed backend restarting (seconds), an RDS Multi-AZ failover (one to two minutes). Ten
 * attempts from 2 s doubling to 30 s span about four minutes. Pure: workflows and tests import it.
 */
import type { RetryPolicy } from '@temporalio/common';

import { NON_RETRYABLE_ERROR_TYPES } from './errors';

export const DATABASE_RETRY: RetryPolicy = {
  initialInterval: '2 seconds',
  backoffCoefficient: 2,
  maximumInterval: '30 seconds',
  maximumAttempts: 10,
  nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES,
};
