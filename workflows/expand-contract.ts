/**
 * The runbook's multi-phase migration: expand (add the new column) -> backfill (child workflow)
 * -> tighten (NOT NULL through a validated CHECK) -> wait for the `codeDeployed` signal -> contract
 * (drop the old column). Each phase is a child workflow, visible on its own in the UI, and each
 * deploy phase takes its own pre-migration snapshot. A failed phase stops here and leaves the
 * database as the previous phase left it, valid for the code running then.
 */
import {
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  condition,
  defineQuery,
  defineSignal,
  executeChild,
  log,
  patched,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';

import { backfill, type BackfillProgress } from './backfill';
import { deployMigration, type DeployMigrationResult } from './deploy-migration';
import { InvalidInputError } from './lib/errors';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from './lib/identifiers';
import { isPositiveDuration, toMs } from './lib/polling';

export interface ExpandContractInput {
  instanceId: string;
  /** Last migration of each phase; defaults: the runbook's user_id -> user_id_new change. */
  expandMigration?: string;
  tightenMigration?: string;
  contractMigration?: string;
  /** The phase-2 backfill and its parameters. Default `user-id-new`. */
  backfill?: string;
  backfillParams?: unknown;
  batchSize?: number;
  /** How long to wait for `codeDeployed` before giving up (the contract then does not run). */
  codeDeployedTimeout?: string;
  /** How often to log the reminder while waiting. */
  reminderEvery?: string;
}

export type ExpandContractPhase =
  'expand' | 'backfill' | 'tighten' | 'awaiting-code-deploy' | 'contract' | 'done';

export interface ExpandContractResult {
  instanceId: string;
  expand: DeployMigrationResult;
  backfill: BackfillProgress;
  tighten: DeployMigrationResult;
  codeDeployedBy: string;
  contract: DeployMigrationResult;
}

export interface CodeDeployed {
  /** Who deployed (or what: a CI job id), for the record. */
  by: string;
}

export const codeDeployedSignal = defineSignal<[CodeDeployed]>('codeDeployed');
export const expandContractPhaseQuery = defineQuery<ExpandContractPhase>('phase');

/** Runs started before a cancel during a deploy phase ended the run cancelled replay as they ran. */
const ENDS_CANCELLED = 'expand-contract-ends-cancelled';

export async function expandContract(input: ExpandContractInput): Promise<ExpandContractResult> {
  validate(input);
  const { instanceId } = input;
  const id = workflowInfo().workflowId;
  let phase: ExpandContractPhase = 'expand';
  let codeDeployedBy: string | undefined;
  setHandler(expandContractPhaseQuery, () => phase);
  setHandler(codeDeployedSignal, ({ by }) => {
    codeDeployedBy = typeof by === 'string' && by !== '' ? by : 'unknown';
  });

  // A cancel reaches the phase's deploy, which stops its SQL, reverts what it can and fails with
  // its report (DeployFailed, in the child's history): this run then ends cancelled, as asked.
  const deployPhase = async (name: string, target: string) => {
    try {
      return await executeChild(deployMigration, {
        workflowId: `${id}-${name}`,
        args: [{ instanceId, target, phaseOf: 'expandContract' }],
      });
    } catch (error) {
      if (CancellationScope.current().consideredCancelled && patched(ENDS_CANCELLED)) {
        log.warn(
          `expandContract ${id} cancelled in its ${name} phase; the deploy ${id}-${name} reports what it applied`,
        );
        throw new CancelledFailure(`expandContract cancelled in its ${name} phase`);
      }
      throw error;
    }
  };

  const expand = await deployPhase('expand', input.expandMigration ?? '0005_user_id_new_expand');

  phase = 'backfill';
  const filled = await executeChild(backfill, {
    workflowId: `${id}-backfill`,
    args: [
      {
        instanceId,
        name: input.backfill ?? 'user-id-new',
        params: input.backfillParams,
        ...(input.batchSize === undefined ? {} : { batchSize: input.batchSize }),
      },
    ],
  });
  if (filled.state !== 'completed') {
    throw ApplicationFailure.nonRetryable(
      `backfill ended ${filled.state}; not tightening`,
      'BackfillIncomplete',
    );
  }

  phase = 'tighten';
  const tighten = await deployPhase('tighten', input.tightenMigration ?? '0008_user_id_new_set_not_null');

  phase = 'awaiting-code-deploy';
  const timeout = input.codeDeployedTimeout ?? '7 days';
  const deadline = Date.now() + toMs(timeout);
  while (codeDeployedBy === undefined) {
    log.info(
      `expandContract ${id}: deploy the code that uses the new column, then signal codeDeployed ` +
        `(temporal workflow signal --workflow-id ${id} --name codeDeployed --input '{"by":"..."}')`,
    );
    const left = deadline - Date.now();
    if (left <= 0) {
      throw ApplicationFailure.nonRetryable(
        `no codeDeployed signal within ${timeout}: the contract phase did not run; the database stays valid for both old and new code`,
        'CodeDeployTimedOut',
      );
    }
    await condition(
      () => codeDeployedBy !== undefined,
      Math.min(left, toMs(input.reminderEvery ?? '1 hour')),
    );
  }

  phase = 'contract';
  const contract = await deployPhase('contract', input.contractMigration ?? '0009_user_id_new_contract');
  phase = 'done';
  return { instanceId, expand, backfill: filled, tighten, codeDeployedBy, contract };
}

function validate(input: ExpandContractInput): void {
  const bad = (message: string): never => {
    throw ApplicationFailure.nonRetryable(message, InvalidInputError.name);
  };
  if (typeof input !== 'object' || input === null)
    bad('input: expected an object like {"instanceId": "mcp-demo-prod"}');
  if (!isRdsIdentifier(input.instanceId))
    bad(`instanceId: ${JSON.stringify(input.instanceId)} is not ${RDS_IDENTIFIER_RULE}`);
  // Checked here, not first in the children: a bad tighten target or batch size found after the
  // expand phase ran would leave the change half done.
  for (const key of ['expandMigration', 'tightenMigration', 'contractMigration'] as const) {
    const value = input[key];
    if (value !== undefined && (typeof value !== 'string' || !/^[\w-]+$/.test(value)))
      bad(`${key}: ${JSON.stringify(value)} is not a migration name like 0005_user_id_new_expand`);
  }
  if (input.backfill !== undefined && (typeof input.backfill !== 'string' || input.backfill === ''))
    bad(`backfill: ${JSON.stringify(input.backfill)} is not a backfill name`);
  const batchSize = input.batchSize;
  if (batchSize !== undefined && !(Number.isInteger(batchSize) && batchSize >= 1 && batchSize <= 100_000))
    bad(`batchSize: ${JSON.stringify(batchSize)} is not an integer from 1 to 100000`);
  for (const key of ['codeDeployedTimeout', 'reminderEvery'] as const) {
    const value = input[key];
    if (value !== undefined && !isPositiveDuration(value))
      bad(
        `${key}: ${JSON.stringify(value)} is not a duration longer than zero, such as '30 seconds' or '2 hours'`,
      );
  }
}
