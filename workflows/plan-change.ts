/**
 * Every phase's SQL of a declared change on an instance, with squawk's verdict, before anything
 * runs (`dbops plan CHANGE`). Reads the catalog only; changes nothing.
 */
import { ApplicationFailure, proxyActivities } from '@temporalio/workflow';

import type { Activities } from '../activities';
import type { PlannedChange } from '../activities/postgres/changes/activities';
import { InvalidInputError, NON_RETRYABLE_ERROR_TYPES } from './lib/errors';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from './lib/identifiers';
import { rejectUnknownFields } from './lib/recovery';

export interface PlanChangeInput {
  instanceId: string;
  change: string;
}

const { planDeclaredChange } = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES },
});

export async function planChange(input: PlanChangeInput): Promise<PlannedChange> {
  if (typeof input !== 'object' || input === null || !isRdsIdentifier(input.instanceId)) {
    throw ApplicationFailure.nonRetryable(
      `instanceId: ${JSON.stringify(input?.instanceId)} is not ${RDS_IDENTIFIER_RULE}`,
      InvalidInputError.name,
    );
  }
  rejectUnknownFields(input as unknown as Record<string, unknown>, ['instanceId', 'change']);
  if (typeof input.change !== 'string' || !/^[a-z][a-z0-9-]{0,39}$/.test(input.change)) {
    throw ApplicationFailure.nonRetryable(
      `change: ${JSON.stringify(input.change)} is not a change name like user-id-bigint`,
      InvalidInputError.name,
    );
  }
  return planDeclaredChange(input);
}
