/**
 * The runbook's multi-phase migration, as a declared change (activities/postgres/changes) run by
 * name: plan and lint every phase's SQL, then expand (new columns, sync triggers both ways, the
 * new version's schema) -> backfill (child workflow) -> tighten (constraints NOT VALID, then
 * validated) -> wait for `codeDeployed` -> pre-contract snapshot -> contract (triggers and old
 * columns dropped, new ones renamed, one short transaction). Each applied phase is a row of the
 * migrations table. Until the contract starts, the `abort` signal (or cancelling the run) stops the
 * change and drops what expand and tighten added: the table is as it was. Old code and new code
 * both keep working from expand to the end. A run closed before its contract (terminated, or
 * failed and closed) is undone by an abort-only run of the same workflow id (`abortOnly`).
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  sleep,
  condition,
  defineQuery,
  defineSignal,
  executeChild,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';

import type { Activities } from '../activities';
import type { PhaseResult } from '../activities/postgres/changes/activities';
import { backfill, type BackfillProgress } from './backfill';
import { AlreadyExistsError, InvalidInputError, NON_RETRYABLE_ERROR_TYPES } from './lib/errors';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from './lib/identifiers';
import { isPositiveDuration, pollUntil, requireDuration, toMs } from './lib/polling';
import {
  DEFAULT_TIMEOUTS,
  ownerTags,
  preMigrationSnapshotId,
  rejectUnknownFields,
  utcStamp,
} from './lib/recovery';
import { controlPlane, createCalls } from './lib/recovery-steps';

export interface ExpandContractInput {
  instanceId: string;
  /** A change declared in activities/postgres/changes. Default: the runbook's `user-id-bigint`. */
  change?: string;
  /** Rows per backfill batch. Default 1000. */
  batchSize?: number;
  /** How long to wait for `codeDeployed` before giving up (the contract then does not run). */
  codeDeployedTimeout?: string;
  /** How often to log the reminder while waiting. */
  reminderEvery?: string;
  /** Give up waiting for the pre-contract snapshot after this long. Default 2 hours. */
  snapshotTimeout?: string;
  /**
   * Only undo what an earlier, closed run of this workflow id applied (terminated, or failed and
   * closed before its contract): `dbops change abort ID` starts it. Refused once the contract ran.
   */
  abortOnly?: boolean;
}

/** The runbook's change, run when the input names none. */
export const DEFAULT_CHANGE = 'user-id-bigint';

export type ExpandContractStage =
  | 'plan'
  | 'expand'
  | 'backfill'
  | 'tighten'
  | 'awaiting-code-deploy'
  | 'snapshot'
  | 'contract'
  | 'failed'
  | 'done'
  | 'aborting'
  | 'aborted';

export interface ExpandContractProgress {
  instanceId: string;
  change: string;
  stage: ExpandContractStage;
  /** Phases applied so far, in order (each a row `change:<change>:<phase>` of the migrations table). */
  applied: string[];
  /** The new code's schema (`SET search_path TO <it>, public`), once known. */
  versionSchema: string | undefined;
  /** Why the run is `failed`: the phase and its error. */
  error: string | undefined;
}

export interface ExpandContractResult {
  instanceId: string;
  change: string;
  outcome: 'completed' | 'aborted';
  /** The stage the abort stopped, and who asked. */
  abortedIn: ExpandContractStage | undefined;
  abortedBy: string | undefined;
  phases: PhaseResult[];
  backfill: BackfillProgress | undefined;
  codeDeployedBy: string | undefined;
  versionSchema: string | undefined;
  /** Taken before the contract: the contract's dropped columns come back only by restoring it. */
  snapshotId: string | undefined;
  /** Set when a phase failed and the run waited for the abort. */
  error: string | undefined;
}

export interface CodeDeployed {
  /** Who deployed (or what: a CI job id), for the record. */
  by: string;
}

export interface AbortChange {
  by: string;
}

export const codeDeployedSignal = defineSignal<[CodeDeployed]>('codeDeployed');
/** Before the contract: stop and put the table back as it was. Ignored from the contract on. */
export const abortChangeSignal = defineSignal<[AbortChange]>('abort');
export const expandContractProgressQuery = defineQuery<ExpandContractProgress>('progress');
/** The stage alone, as the query of the same name always answered. */
export const expandContractPhaseQuery = defineQuery<ExpandContractStage>('phase');

/** Runs cancelled during a contract that committed anyway completed before; they replay as they ran. */
const CANCELLED_IN_CONTRACT = 'expand-contract-cancelled-in-contract';
/** The pre-contract snapshot is named after its instance (preMigrationSnapshotId). */
const SNAPSHOT_NAMED_BY_INSTANCE = 'pre-migration-snapshot-named-by-instance';

const { planDeclaredChange } = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES },
});

// Index builds may take hours; the phase heartbeats every second, and a cancel reaches its SQL.
const { runChangePhase } = proxyActivities<Activities>({
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '30 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: {
    initialInterval: '1 second',
    maximumAttempts: 10,
    nonRetryableErrorTypes: [...NON_RETRYABLE_ERROR_TYPES, 'ChangePhaseFailed'],
  },
});

export async function expandContract(input: ExpandContractInput): Promise<ExpandContractResult> {
  validate(input);
  const { instanceId } = input;
  const change = input.change ?? DEFAULT_CHANGE;
  const id = workflowInfo().workflowId;
  const progress: ExpandContractProgress = {
    instanceId,
    change,
    stage: 'plan',
    applied: [],
    versionSchema: undefined,
    error: undefined,
  };
  const phases: PhaseResult[] = [];
  let codeDeployedBy: string | undefined;
  let abortedBy: string | undefined;
  let abortedIn: ExpandContractStage | undefined;
  let filled: BackfillProgress | undefined;
  let snapshotId: string | undefined;
  const backfillScope = new CancellationScope();

  // Every handler is set before the first await: a signal sent with the start is not lost.
  setHandler(expandContractProgressQuery, () => progress);
  setHandler(expandContractPhaseQuery, () => progress.stage);
  setHandler(codeDeployedSignal, ({ by }) => {
    codeDeployedBy = typeof by === 'string' && by !== '' ? by : 'unknown';
  });
  setHandler(abortChangeSignal, ({ by }) => {
    if (abortedBy !== undefined) return;
    if (['contract', 'done', 'aborting', 'aborted'].includes(progress.stage)) {
      log.warn(`abort ignored: the change is at ${progress.stage}`);
      return;
    }
    abortedBy = typeof by === 'string' && by !== '' ? by : 'unknown';
    abortedIn = progress.stage;
    log.info(`${id}: abort asked by ${abortedBy} during ${abortedIn}`);
    if (progress.stage === 'backfill') backfillScope.cancel();
  });

  const result = (outcome: ExpandContractResult['outcome']): ExpandContractResult => ({
    instanceId,
    change,
    outcome,
    abortedIn,
    abortedBy,
    phases,
    backfill: filled,
    codeDeployedBy,
    versionSchema: progress.versionSchema,
    snapshotId,
    error: progress.error,
  });
  const phase = async (name: PhaseResult['phase']) => {
    const done = await runChangePhase({ instanceId, change, phase: name });
    phases.push(done);
    progress.applied.push(name);
  };
  const abort = async (): Promise<ExpandContractResult> => {
    progress.stage = 'aborting';
    await CancellationScope.nonCancellable(() => phase('abort'));
    progress.stage = 'aborted';
    return result('aborted');
  };

  if (input.abortOnly === true) {
    // The closed run's phases are recorded under this workflow id: the abort finds and undoes them.
    // Who asked comes with the start (the abort signal); the stage it stopped is the closed run's.
    abortedBy ??= 'abort-only run';
    abortedIn = undefined;
    log.info(`${id}: undoing what an earlier run of ${id} applied of change ${change}`);
    return abort();
  }

  const planned = await planDeclaredChange({ instanceId, change });
  progress.versionSchema = planned.plan.versionSchema;
  if (planned.violations.length > 0) {
    throw ApplicationFailure.nonRetryable(
      `change ${change} blocked by the SQL lint, nothing ran: ` +
        planned.violations.map((v) => `${v.file}:${v.line} ${v.rule}: ${v.message}`).join('; '),
      'ChangeLintFailed',
      planned.violations,
    );
  }
  log.info(`change ${change} plan:\n${planned.text}`);
  // Cancelled before its contract committed, the change is undone as an abort would: what a
  // cancelled run leaves must not hold the table in two versions with nobody to finish it.
  const abortIfCancelled = async (error: unknown): Promise<never> => {
    if (isCancellation(error) && !['plan', 'done', 'aborting', 'aborted'].includes(progress.stage)) {
      abortedIn ??= progress.stage;
      abortedBy ??= 'cancellation';
      await abort();
    }
    throw error;
  };
  try {
    return await applyChange();
  } catch (error) {
    if (isCancellation(error) || ['done', 'aborting', 'aborted'].includes(progress.stage)) {
      return abortIfCancelled(error);
    }
    // A phase failed (or no codeDeployed came in time): the table stays as the last phase left it,
    // valid for old and new code, and the operator decides. Aborting on our own could break new
    // code already reading the change's schema.
    progress.error = `${progress.stage}: ${rootMessage(error)}`;
    progress.stage = 'failed';
    log.error(`change ${change} (${id}) failed in ${progress.error}; undo it with: dbops change abort ${id}`);
    try {
      await condition(() => abortedBy !== undefined);
    } catch (waiting) {
      return abortIfCancelled(waiting);
    }
    return abort();
  }

  async function applyChange(): Promise<ExpandContractResult> {
    if (abortedBy !== undefined) return abort();

    progress.stage = 'expand';
    await phase('expand');
    if (abortedBy !== undefined) return abort();

    if (planned.plan.backfill !== undefined) {
      progress.stage = 'backfill';
      try {
        filled = await backfillScope.run(() =>
          executeChild(backfill, {
            workflowId: `${id}-backfill`,
            args: [
              {
                instanceId,
                name: change,
                ...(input.batchSize === undefined ? {} : { batchSize: input.batchSize }),
              },
            ],
          }),
        );
      } catch (error) {
        if (abortedBy !== undefined && isCancellation(error)) return abort();
        throw error;
      }
      if (abortedBy !== undefined) return abort();
      if (filled.state !== 'completed') {
        throw ApplicationFailure.nonRetryable(
          `backfill ended ${filled.state}; not tightening (old and new code both still work; abort to undo)`,
          'BackfillIncomplete',
        );
      }
    }

    progress.stage = 'tighten';
    await phase('tighten');
    if (abortedBy !== undefined) return abort();

    progress.stage = 'awaiting-code-deploy';
    const timeout = input.codeDeployedTimeout ?? '7 days';
    const deadline = Date.now() + toMs(timeout);
    while (codeDeployedBy === undefined && abortedBy === undefined) {
      log.info(
        `change ${change} (${id}): deploy the code that uses the new version, then signal codeDeployed ` +
          `(dbops change code-deployed ${id} --by NAME), or abort (dbops change abort ${id})`,
      );
      const left = deadline - Date.now();
      if (left <= 0) {
        throw ApplicationFailure.nonRetryable(
          `no codeDeployed signal within ${timeout}: the contract did not run`,
          'CodeDeployTimedOut',
        );
      }
      await condition(
        () => codeDeployedBy !== undefined || abortedBy !== undefined,
        Math.min(left, toMs(input.reminderEvery ?? '1 hour')),
      );
    }
    if (abortedBy !== undefined) return abort();

    progress.stage = 'snapshot';
    snapshotId = await snapshotBeforeContract(instanceId, input.snapshotTimeout ?? '2 hours');
    if (abortedBy !== undefined) return abort();

    progress.stage = 'contract';
    await phase('contract');
    progress.stage = 'done';
    // Cancelled while the contract ran, too late to stop it (it committed): the run ends cancelled
    // as asked, its progress saying the change is complete.
    if (CancellationScope.current().consideredCancelled && patched(CANCELLED_IN_CONTRACT)) {
      log.warn(`${id} cancelled during its contract, which had committed: change ${change} is complete`);
      throw new CancelledFailure(`expandContract cancelled during its contract, which had committed`);
    }
    return result('completed');
  }
}

/**
 * `<instance>-pre-migration-YYYYMMDD-HHMMSS` (UTC, workflow time; runs started before the
 * instance's name led it: `pre-migration-…`; a second later if that id is taken), tagged as this
 * run's: a retry after a lost reply finds it instead of taking another.
 */
async function snapshotBeforeContract(instanceId: string, timeout: string): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    const snapshotId = patched(SNAPSHOT_NAMED_BY_INSTANCE)
      ? preMigrationSnapshotId(instanceId, new Date())
      : `pre-migration-${utcStamp(new Date())}`;
    try {
      await createCalls({ ...DEFAULT_TIMEOUTS, pollInterval: '5 seconds' }).createSnapshot(
        instanceId,
        snapshotId,
        ownerTags('pre-migration', instanceId),
      );
      await pollUntil({
        what: `snapshot ${snapshotId} to be available`,
        describe: () => controlPlane.describeSnapshot(snapshotId),
        isDone: (snapshot) => snapshot.status === 'available',
        failure: (snapshot) => (snapshot.status === 'failed' ? 'the snapshot failed' : undefined),
        interval: '5 seconds',
        timeout,
      });
      return snapshotId;
    } catch (error) {
      const type = (error as { cause?: { type?: string } }).cause?.type;
      if (attempt >= 5 || type !== AlreadyExistsError.name) throw error;
      await sleep('1 second');
    }
  }
}

/** The innermost message: an activity's own, not the "Activity task failed" wrapper. */
function rootMessage(error: unknown): string {
  let current = error as { message?: string; cause?: unknown };
  while ((current.cause as { message?: string } | undefined)?.message !== undefined) {
    current = current.cause as { message?: string; cause?: unknown };
  }
  return current.message ?? String(error);
}

/** Fields of the migration-file version of expandContract. */
const RETIRED_FIELDS = [
  'expandMigration',
  'tightenMigration',
  'contractMigration',
  'backfill',
  'backfillParams',
];

function validate(input: ExpandContractInput): void {
  const bad = (message: string): never => {
    throw ApplicationFailure.nonRetryable(message, InvalidInputError.name);
  };
  if (typeof input !== 'object' || input === null)
    bad('input: expected an object like {"instanceId": "mcp-demo-prod", "change": "user-id-bigint"}');
  const given = input as unknown as Record<string, unknown>;
  // The input of the change as migration files and a separate backfill: refused, naming what replaced it.
  const retired = RETIRED_FIELDS.filter((key) => key in given);
  if (retired.length > 0)
    bad(
      `${retired.join(', ')}: expandContract no longer runs migration files and a separate backfill; ` +
        `the change is declared (activities/postgres/changes) and named by "change". The runbook's ` +
        `user_id change is the declaration ${DEFAULT_CHANGE}: start {"instanceId": "...", "change": "${DEFAULT_CHANGE}"} ` +
        `(dbops change start ${DEFAULT_CHANGE} --instance ID)`,
    );
  // A typo (say `batchsize`) must not run the change with a default instead.
  rejectUnknownFields(given, [
    'instanceId',
    'change',
    'batchSize',
    'codeDeployedTimeout',
    'reminderEvery',
    'snapshotTimeout',
    'abortOnly',
  ]);
  if (!isRdsIdentifier(input.instanceId))
    bad(`instanceId: ${JSON.stringify(input.instanceId)} is not ${RDS_IDENTIFIER_RULE}`);
  // Refused now rather than at the snapshot before the contract, days later.
  preMigrationSnapshotId(input.instanceId, new Date());
  if (
    input.change !== undefined &&
    (typeof input.change !== 'string' || !/^[a-z][a-z0-9-]{0,39}$/.test(input.change))
  )
    bad(`change: ${JSON.stringify(input.change)} is not a change name like user-id-bigint`);
  if (input.abortOnly !== undefined && typeof input.abortOnly !== 'boolean')
    bad(`abortOnly: ${JSON.stringify(input.abortOnly)} is not true or false`);
  const batchSize = input.batchSize;
  if (batchSize !== undefined && !(Number.isInteger(batchSize) && batchSize >= 1 && batchSize <= 100_000))
    bad(`batchSize: ${JSON.stringify(batchSize)} is not an integer from 1 to 100000`);
  for (const [key, max] of Object.entries(DURATION_BOUNDS) as [keyof typeof DURATION_BOUNDS, string][]) {
    const value = input[key];
    if (value === undefined) continue;
    if (!isPositiveDuration(value))
      bad(
        `${key}: ${JSON.stringify(value)} is not a duration longer than zero, such as '30 seconds' or '2 hours'`,
      );
    requireDuration(key, value, max);
  }
}

/** Upper bounds of the waits a caller may set (docs/change-workflows.md). */
const DURATION_BOUNDS = {
  codeDeployedTimeout: '30 days',
  reminderEvery: '1 day',
  snapshotTimeout: '3 days',
} as const;
