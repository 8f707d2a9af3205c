/**
 * The runbook's production deployment, made safe: lint the pending migrations, rehearse them on a
 * copy restored from a pre-migration snapshot (production by default: what each did, its locks,
 * rewrites, index builds, WAL, or its failure, shown to the approver; the copy always deleted),
 * wait for approval on production, take a pre-migration snapshot just before migrating, migrate
 * under the migration lock, verify, run the rollout hook. On failure it reverts what it applied where every step is
 * reversible; otherwise it stops and names the snapshot and the point in time to restore, with the
 * commands. It never restores on its own.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  condition,
  defineQuery,
  defineUpdate,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  workflowInfo,
  type ActivityOptions,
} from '@temporalio/workflow';

import type { Activities } from '../activities';
import type { SnapshotDescription } from '../activities/control-plane/control-plane';
import type { RolloutResult } from '../activities/postgres/deploy';
import type {
  HeldBack,
  LintViolation,
  MigrateSettings,
  VerifyResult,
} from '../activities/postgres/migrations';
import type { MigrationRehearsal, RehearsalRun } from '../activities/postgres/rehearsal';
import { AlreadyExistsError, InvalidInputError, NON_RETRYABLE_ERROR_TYPES } from './lib/errors';
import {
  isRdsIdentifier,
  isRolloutHookName,
  RDS_IDENTIFIER_RULE,
  ROLLOUT_HOOK_NAME_RULE,
} from './lib/identifiers';
import { REHEARSAL_PURPOSE } from './lib/owner-tags';
import { isPositiveDuration, pollUntil } from './lib/polling';
import {
  DEFAULT_TIMEOUTS,
  ownerTags,
  preMigrationSnapshotId,
  runOwner,
  utcStamp,
  type RecoveryTimeouts,
} from './lib/recovery';
import { createCalls, deleteOwnedInstance, failureMessage, waitForAvailable } from './lib/recovery-steps';

export interface DeployMigrationInput {
  instanceId: string;
  /** Migrate up to and including this migration (default: every pending one). */
  target?: string;
  /** Ask for approval; default: when the instance is tagged Environment=production. */
  requireApproval?: boolean;
  /** How long to wait for the `approve` update (Temporal duration). Default 24 hours. */
  approvalTimeout?: string;
  /** Name of a rollout hook configured on the worker, run after a verified migration. */
  rolloutHook?: string;
  /** Another deploy holds the migration lock: wait for it (default) or fail at once. */
  whenLocked?: 'wait' | 'fail';
  lockWaitSeconds?: number;
  lockTimeoutMs?: number;
  statementTimeoutMs?: number;
  lockTimeoutAttempts?: number;
  /** Give up waiting for the snapshot after this long (Temporal duration). Default 2 hours. */
  snapshotTimeout?: string;
  /**
   * Rehearse the planned migrations on a temporary copy restored from the pre-migration snapshot,
   * before the approval and before production is touched. Default: when the instance is tagged
   * Environment=production.
   */
  rehearse?: boolean;
}

export type DeployStatus = 'migrated' | 'nothing-to-apply';

export interface DeployMigrationResult {
  instanceId: string;
  status: DeployStatus;
  snapshotId: string | undefined;
  applied: string[];
  heldBack: string[];
  /** Why each of `heldBack` waits; absent in results of runs started before it was reported. */
  whyHeldBack?: HeldBack[];
  approvedBy: string | undefined;
  verify: VerifyResult | undefined;
  rollout: RolloutResult | undefined;
  /** The rehearsal on a copy, when the deploy rehearsed; absent in results of older runs. */
  rehearsal?: RehearsalReport;
}

/** What a rehearsal did on its copy of production: every planned migration, measured. */
export interface RehearsalReport extends RehearsalRun {
  ok: boolean;
  /** The copy's id, and the snapshot it was restored from. */
  copyInstanceId: string;
  snapshotId: string;
  /** The copy is gone (or was never created): checked after the cleanup. */
  copyDeleted: boolean;
  /** Why the rehearsal failed (a migration's error, or the copy's restore), or null. */
  error: string | null;
}

/**
 * What a failed or cancelled deploy reports (the failure's details, and its message in words).
 * `applied` and `reverted` are read from the database after the failure, never remembered.
 */
export interface DeployFailure {
  instanceId: string;
  stage: 'lint' | 'rehearsal' | 'approval' | 'migrate';
  lintViolations: LintViolation[];
  snapshotId: string | undefined;
  /** Applied by this deploy (recorded in the migrations table as applied by this run) when it failed. */
  applied: string[];
  /** Of `applied`, those migrated down again. */
  reverted: string[];
  /** Set when the database could not be put back by reverting: what to run, by a human. */
  restoreCommand: string | undefined;
  /**
   * With `restoreCommand`: the point-in-time restore to the last whole second before the
   * migration began (input of `pitrRestore`, and the `dbops restore --to` command). It keeps what
   * was written between the snapshot and the migration. Absent in reports of older runs.
   */
  pitrRestore?: PitrRestoreAdvice;
  /** With stage `rehearsal`: the rehearsal's report. */
  rehearsal?: RehearsalReport;
  error: string;
}

export interface PitrRestoreAdvice {
  /** The `pitrRestore` workflow's input. */
  input: { instanceId: string; restoreTime: string; targetInstanceId: string };
  command: string;
}

export interface Approval {
  approvedBy: string;
}

export interface DeployProgress {
  stage:
    | 'lint'
    | 'snapshot'
    | 'rehearse'
    | 'awaiting-approval'
    | 'migrate'
    | 'verify'
    | 'rollout'
    | 'revert'
    | 'done';
  snapshotId: string | undefined;
  toApply: string[];
  /** Once the deploy has rehearsed: what the migrations did on the copy. */
  rehearsal?: RehearsalReport;
}

export const approveUpdate = defineUpdate<string, [Approval]>('approve');
export const deployProgressQuery = defineQuery<DeployProgress>('progress');

const quick = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES },
});

// Waiting for the lock or building an index may take long: the step heartbeats every few seconds,
// so a lost worker is noticed within the heartbeat timeout and a cancel reaches the running SQL.
// On cancel the workflow waits for the step to have stopped its SQL before it reads what is applied.
// The rehearsal applies the same migrations on its copy: under the same options.
const MIGRATION_STEP: ActivityOptions = {
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '20 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { maximumAttempts: 3, nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES },
};
const { runMigrationStep, rehearseMigrations } = proxyActivities<Activities>(MIGRATION_STEP);

/**
 * The copy's restore, wait and deletion: the recovery workflows' timeouts, looked at more often at
 * first (someone waits to approve); the looks back off as the wait goes on.
 */
const COPY_TIMEOUTS: RecoveryTimeouts = { ...DEFAULT_TIMEOUTS, pollInterval: '2 seconds' };

const { runRolloutHook } = proxyActivities<Activities>({
  startToCloseTimeout: '15 minutes',
  retry: { maximumAttempts: 1 },
});

/**
 * Runs started before the snapshot moved after the approval replay as they ran: snapshot, then
 * approval (a wait of up to a day that the snapshot's restore would have lost).
 */
const SNAPSHOT_AFTER_APPROVAL = 'deploy-migration-snapshot-after-approval';

/** Runs started before deploys rehearsed replay as they ran: no rehearsal. */
const REHEARSAL = 'deploy-migration-rehearsal';
/** The pre-migration snapshot is named after its instance (preMigrationSnapshotId). */
const SNAPSHOT_NAMED_BY_INSTANCE = 'pre-migration-snapshot-named-by-instance';

export async function deployMigration(input: DeployMigrationInput): Promise<DeployMigrationResult> {
  const settings = validate(input);
  const { instanceId } = input;
  const progress: DeployProgress = { stage: 'lint', snapshotId: undefined, toApply: [] };
  setHandler(deployProgressQuery, () => progress);
  // Every handler is set before the first await: an update that arrives early is validated, not lost.
  let approvedBy: string | undefined;
  setHandler(
    approveUpdate,
    ({ approvedBy: who }) => {
      approvedBy = who;
      return `approved by ${who}`;
    },
    {
      validator: ({ approvedBy: who }) => {
        if (typeof who !== 'string' || who.trim() === '') throw new Error('approvedBy: name who approves');
        if (progress.stage !== 'awaiting-approval')
          throw new Error(`not waiting for approval (stage ${progress.stage})`);
      },
    },
  );

  const fail = (failure: Omit<DeployFailure, 'instanceId'>): never => {
    throw ApplicationFailure.nonRetryable(describe(instanceId, failure), 'DeployFailed', {
      instanceId,
      ...failure,
    });
  };
  const none = { lintViolations: [], applied: [], reverted: [], restoreCommand: undefined };

  const { plan, violations } = await quick.planMigrationDeploy({
    instanceId,
    target: input.target,
  });
  progress.toApply = plan.toApply;
  if (violations.length > 0) {
    return fail({ ...none, stage: 'lint', lintViolations: violations, snapshotId: undefined, error: 'lint' });
  }
  if (plan.toApply.length === 0) {
    return {
      instanceId,
      status: 'nothing-to-apply',
      snapshotId: undefined,
      applied: [],
      heldBack: plan.heldBack,
      whyHeldBack: plan.whyHeldBack,
      approvedBy: undefined,
      verify: undefined,
      rollout: undefined,
    };
  }

  const snapshotTimeout = input.snapshotTimeout ?? '2 hours';
  const snapshotNow = async () => {
    progress.stage = 'snapshot';
    const snapshot = await takeSnapshot(instanceId, snapshotTimeout, (id) => {
      progress.snapshotId = id;
    });
    return snapshot.snapshotId;
  };
  const afterApproval = patched(SNAPSHOT_AFTER_APPROVAL);
  let snapshotId = afterApproval ? undefined : await snapshotNow();

  const instance = await quick.describeInstance(instanceId);
  const production = instance.tags.Environment?.toLowerCase() === 'production';
  const approvalNeeded = input.requireApproval ?? production;
  let rehearsal: RehearsalReport | undefined;
  if ((input.rehearse ?? production) && patched(REHEARSAL)) {
    snapshotId ??= await snapshotNow();
    progress.stage = 'rehearse';
    rehearsal = await rehearseOnCopy(instanceId, snapshotId, plan.toApply, settings);
    progress.rehearsal = rehearsal;
    // The Web UI shows it on the run's page, under the approval's wait.
    setCurrentDetails(rehearsalSummary(rehearsal));
    if (!rehearsal.ok) {
      return fail({ ...none, stage: 'rehearsal', snapshotId, rehearsal, error: rehearsal.error ?? 'failed' });
    }
  }
  if (approvalNeeded) {
    progress.stage = 'awaiting-approval';
    const timeout = input.approvalTimeout ?? '24 hours';
    log.info(`deploy to ${instanceId} waits for approval (update "approve")`, {
      timeout,
      toApply: plan.toApply,
    });
    if (!(await condition(() => approvedBy !== undefined, timeout))) {
      return fail({
        ...none,
        stage: 'approval',
        snapshotId,
        error: `no approval within ${timeout}; nothing was migrated`,
      });
    }
    // The rehearsal's snapshot is as old as the wait: the one to restore is taken now.
    if (rehearsal !== undefined) snapshotId = await snapshotNow();
  }
  snapshotId ??= await snapshotNow();

  let applied: string[] = [];
  let verify: VerifyResult | undefined;
  let rollout: RolloutResult | undefined;
  // Workflow time when the migrate step is scheduled: the step starts after it.
  const migrationStart = new Date();
  try {
    progress.stage = 'migrate';
    applied = await runMigrationStep({ instanceId, direction: 'up', names: plan.toApply, settings });
    progress.stage = 'verify';
    verify = await quick.verifyMigrationDeploy({
      instanceId,
      expected: [...plan.alreadyApplied, ...plan.toApply],
      touched: plan.toApply,
    });
    if (verify.invalidIndexes.length > 0) {
      throw ApplicationFailure.nonRetryable(
        `invalid indexes left behind: ${verify.invalidIndexes.join(', ')}`,
      );
    }
    if (input.rolloutHook !== undefined) {
      progress.stage = 'rollout';
      rollout = await runRolloutHook({ hook: input.rolloutHook, instanceId, applied });
    }
  } catch (error) {
    // A cancelled deploy still reads, reverts and reports: that work must not be cancelled too.
    const failure = await CancellationScope.nonCancellable(() =>
      undoAfterFailure(error, { instanceId, plan, settings, snapshotId, migrationStart, progress }),
    );
    return fail(failure);
  }
  progress.stage = 'done';
  return {
    instanceId,
    status: 'migrated',
    snapshotId,
    applied,
    heldBack: plan.heldBack,
    whyHeldBack: plan.whyHeldBack,
    approvedBy,
    verify,
    rollout,
    ...(rehearsal === undefined ? {} : { rehearsal }),
  };
}

/**
 * Restores `snapshotId` as a temporary copy named after this run, rehearses `names` on it, and
 * ALWAYS deletes the copy (success, failed migration, failed restore, cancel: the cleanup runs in a
 * non-cancellable scope and finds the copy by its owner tags; a run that never gets there leaves a
 * copy the orphan sweeper and the next DR test remove). Production is never connected to.
 */
async function rehearseOnCopy(
  instanceId: string,
  snapshotId: string,
  names: string[],
  settings: Partial<MigrateSettings>,
): Promise<RehearsalReport> {
  const copyInstanceId = rehearsalCopyId(instanceId);
  const owner = runOwner();
  const report: RehearsalReport = {
    ok: false,
    copyInstanceId,
    snapshotId,
    copyDeleted: false,
    error: null,
    migrations: [],
    sampleEveryMs: 0,
  };
  try {
    await createCalls(COPY_TIMEOUTS).restoreFromSnapshot(
      snapshotId,
      copyInstanceId,
      ownerTags(REHEARSAL_PURPOSE, instanceId),
    );
    await waitForAvailable(copyInstanceId, COPY_TIMEOUTS, () => undefined);
    Object.assign(report, await rehearseMigrations({ copyInstanceId, names, settings }));
    if (report.failed !== undefined) {
      report.error = `rehearsal of ${report.failed.name} failed: ${report.failed.error}; production was not touched`;
    }
  } catch (error) {
    report.error = isCancellation(error)
      ? 'the deploy was cancelled during the rehearsal; production was not touched'
      : `rehearsal failed before its migrations ran to the end: ${failureMessage(error)}; production was not touched`;
  }
  await CancellationScope.nonCancellable(async () => {
    try {
      await deleteOwnedInstance(copyInstanceId, owner, COPY_TIMEOUTS);
      report.copyDeleted = true;
    } catch (error) {
      log.error(`the rehearsal copy ${copyInstanceId} may still exist: ${failureMessage(error)}`, {
        instanceId,
      });
      report.error ??= `the rehearsal copy ${copyInstanceId} could not be deleted: ${failureMessage(error)} (the orphan sweeper removes it)`;
    }
  });
  report.ok = report.error === null;
  return report;
}

/**
 * `<instance>-rehearsal-<8 hex>`: the same for every attempt of this run (a retried restore finds
 * its copy), another for any other run; within the 63 characters of an RDS identifier.
 */
function rehearsalCopyId(instanceId: string): string {
  const { workflowId, runId } = workflowInfo();
  let hash = 0x811c9dc5;
  for (const char of `${workflowId}/${runId}`) {
    hash = Math.imul(hash ^ char.charCodeAt(0), 0x01000193) >>> 0;
  }
  return `${instanceId.slice(0, 42).replace(/-+$/, '')}-rehearsal-${hash.toString(16).padStart(8, '0')}`;
}

/** The rehearsal in words: one line per migration, then its error; the Web UI and `dbops deploy` show it. */
export function rehearsalSummary(report: RehearsalReport): string {
  const head =
    `Rehearsal on ${report.copyInstanceId} (restored from ${report.snapshotId}): ` +
    `${report.ok ? 'passed' : 'FAILED'}; copy ${report.copyDeleted ? 'deleted' : 'NOT deleted'}`;
  const lines = report.migrations.map((m) => `  ${m.name}: ${describeMigration(m, report.sampleEveryMs)}`);
  return [head, ...lines, ...(report.error === null ? [] : [`  ${report.error}`])].join('\n');
}

function describeMigration(m: MigrationRehearsal, sampleEveryMs: number): string {
  if (m.status === 'not-run') return 'not run (an earlier one failed)';
  if (m.status === 'unmeasured') return 'found applied on the copy (by an earlier attempt), not measured';
  const parts = [`${m.status === 'failed' ? 'FAILED' : 'applied'} in ${seconds(m.durationMs)}`];
  const lock = m.locks[0];
  parts.push(
    lock === undefined
      ? `no lock on an existing table seen (sampled every ${sampleEveryMs} ms)`
      : `strongest lock ${lock.mode} on ${lock.relation} held ${seconds(lock.heldMs)}`,
  );
  for (const r of m.rewrites) {
    parts.push(`rewrote ${r.table} (${r.rows} rows, ${mb(r.bytesBefore)} -> ${mb(r.bytesAfter)})`);
  }
  for (const c of m.rowChanges) {
    parts.push(`${c.table}: ${c.inserted} inserted, ${c.updated} updated, ${c.deleted} deleted`);
  }
  for (const i of m.indexBuilds) {
    const took = i.ms > 0 ? seconds(i.ms) : `< ${seconds(sampleEveryMs)}`;
    parts.push(`built ${i.index} on ${i.table} in ${took}`);
  }
  parts.push(`WAL ${mb(m.walBytes)}`);
  if (m.error !== undefined) parts.push(`error: ${m.error}`);
  return parts.join('; ');
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function mb(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}

interface Deploy {
  instanceId: string;
  plan: { toApply: string[]; irreversible: string[] };
  settings: Partial<MigrateSettings>;
  snapshotId: string;
  migrationStart: Date;
  progress: DeployProgress;
}

/**
 * After any failure or cancel of the migrate step (or of verify / the rollout hook): reads from the
 * database what this run applied of its plan (whatever the failure, also when a worker died
 * between two migrations), reverts exactly that where every one has a down migration, and says
 * what to do otherwise.
 */
async function undoAfterFailure(
  error: unknown,
  { instanceId, plan, settings, snapshotId, migrationStart, progress }: Deploy,
): Promise<Omit<DeployFailure, 'instanceId'>> {
  const message = isCancellation(error) ? 'the deploy was cancelled' : rootMessage(error);
  const none = {
    stage: 'migrate' as const,
    lintViolations: [],
    snapshotId,
    reverted: [],
    restoreCommand: undefined,
  };
  const applied = await quick.migrationsAppliedByRun({ instanceId, names: plan.toApply });
  if (applied.length === 0) return { ...none, applied, error: message };
  const restoreCommand = `dbops restore --instance ${instanceId} --snapshot ${snapshotId} --target ${restoreTarget(instanceId)}`;
  const pitrRestore = pitrAdvice(instanceId, migrationStart);
  const irreversible = applied.filter((name) => plan.irreversible.includes(name));
  if (irreversible.length > 0) {
    return {
      ...none,
      applied,
      restoreCommand,
      pitrRestore,
      error: `${message}; not reverted: ${irreversible.join(', ')} cannot be undone`,
    };
  }
  progress.stage = 'revert';
  try {
    const reverted = await runMigrationStep({ instanceId, direction: 'down', names: applied, settings });
    return { ...none, applied, reverted, error: message };
  } catch (revertError) {
    // Some may be reverted: the database says which.
    const left = await quick.migrationsAppliedByRun({ instanceId, names: applied });
    return {
      ...none,
      applied,
      reverted: applied.filter((name) => !left.includes(name)),
      restoreCommand,
      pitrRestore,
      error: `${message}; reverting failed too: ${rootMessage(revertError)}`,
    };
  }
}

/**
 * `<instance>-pre-migration-YYYYMMDD-HHMMSS` (UTC, workflow time; runs started before the
 * instance's name led it: `pre-migration-…`); a second later if that id is taken.
 */
async function takeSnapshot(
  instanceId: string,
  timeout: string,
  onId: (id: string) => void,
): Promise<SnapshotDescription> {
  for (let attempt = 1; ; attempt++) {
    const snapshotId = patched(SNAPSHOT_NAMED_BY_INSTANCE)
      ? preMigrationSnapshotId(instanceId, new Date())
      : `pre-migration-${utcStamp(new Date())}`;
    try {
      // Owner tags: a retry after a lost reply finds this run's snapshot instead of taking another.
      // A busy instance (RDS in its backup window) is waited out, as in a backup.
      await createCalls({ ...DEFAULT_TIMEOUTS, pollInterval: '5 seconds' }).createSnapshot(
        instanceId,
        snapshotId,
        ownerTags('pre-migration', instanceId),
      );
      onId(snapshotId);
      return await pollUntil({
        what: `snapshot ${snapshotId} to be available`,
        describe: () => quick.describeSnapshot(snapshotId),
        isDone: (s) => s.status === 'available',
        failure: (s) => (s.status === 'failed' ? 'the snapshot failed' : undefined),
        interval: '5 seconds',
        timeout,
      });
    } catch (error) {
      if (attempt >= 5 || failureType(error) !== AlreadyExistsError.name) throw error;
      await sleep('1 second');
    }
  }
}

/**
 * The point-in-time restore to the last whole second before `migrationStart` (RDS restores to
 * the second): nothing of the migration, everything committed before it.
 */
function pitrAdvice(instanceId: string, migrationStart: Date): PitrRestoreAdvice {
  const restoreTime = new Date(Math.ceil(migrationStart.getTime() / 1000) * 1000 - 1000)
    .toISOString()
    .replace('.000Z', 'Z');
  const targetInstanceId = restoreTarget(instanceId);
  return {
    input: { instanceId, restoreTime, targetInstanceId },
    command: `dbops restore --instance ${instanceId} --to ${restoreTime} --target ${targetInstanceId}`,
  };
}

/** A new instance id for the restore command (the source is never overwritten). */
function restoreTarget(instanceId: string): string {
  return `${instanceId.slice(0, 54)}-restored`;
}

function failureType(error: unknown): string | undefined {
  const cause = (error as { cause?: { type?: string } }).cause;
  return cause?.type ?? (error as { type?: string }).type;
}

/** The activity's own message, not the "Activity task failed" wrapper. */
function rootMessage(error: unknown): string {
  let current = error as { message?: string; cause?: unknown } | undefined;
  while (current?.cause !== undefined && (current.cause as { message?: string }).message) {
    current = current.cause as { message?: string; cause?: unknown };
  }
  return current?.message ?? String(error);
}

function describe(instanceId: string, failure: Omit<DeployFailure, 'instanceId'>): string {
  switch (failure.stage) {
    case 'lint':
      return (
        `deploy to ${instanceId} blocked by the migration lint: ` +
        failure.lintViolations.map((v) => `${v.file}:${v.line} ${v.rule}: ${v.message}`).join('; ')
      );
    case 'rehearsal':
      return `deploy to ${instanceId} stopped by its rehearsal: ${failure.error}`;
    case 'approval':
      return failure.snapshotId === undefined
        ? `deploy to ${instanceId}: ${failure.error}`
        : `deploy to ${instanceId}: ${failure.error} (snapshot ${failure.snapshotId} kept)`;
    case 'migrate': {
      const parts = [`deploy to ${instanceId} failed: ${failure.error}`];
      if (failure.reverted.length > 0 && failure.reverted.length === failure.applied.length)
        parts.push(`reverted ${failure.reverted.join(', ')}; the schema is as before`);
      else if (failure.reverted.length > 0) parts.push(`reverted ${failure.reverted.join(', ')}`);
      else if (failure.applied.length === 0) parts.push('nothing was applied');
      if (failure.restoreCommand !== undefined) {
        const pitr =
          failure.pitrRestore === undefined
            ? ''
            : `; or restore to ${failure.pitrRestore.input.restoreTime}, the second before the migration ` +
              `began, which keeps what was written after the snapshot: ${failure.pitrRestore.command}`;
        parts.push(
          `applied ${failure.applied.join(', ')}; to go back, restore the pre-migration snapshot ` +
            `${failure.snapshotId} as a new instance: ${failure.restoreCommand}${pitr}`,
        );
      }
      return parts.join('. ');
    }
  }
}

function validate(input: DeployMigrationInput): Partial<MigrateSettings> {
  const bad = (message: string): never => {
    throw ApplicationFailure.nonRetryable(message, InvalidInputError.name);
  };
  if (typeof input !== 'object' || input === null)
    bad('input: expected an object like {"instanceId": "mcp-demo-prod"}');
  if (!isRdsIdentifier(input.instanceId))
    bad(`instanceId: ${JSON.stringify(input.instanceId)} is not ${RDS_IDENTIFIER_RULE}`);
  // Refused now rather than at the snapshot, after an approval.
  preMigrationSnapshotId(input.instanceId, new Date());
  if (input.target !== undefined && (typeof input.target !== 'string' || !/^[\w-]+$/.test(input.target))) {
    bad(
      `target: ${JSON.stringify(input.target)} is not a migration name like 0004_conversation_chunks_ivfflat_index`,
    );
  }
  // The hook runs after the migrations: a name that cannot be a configured hook is refused before.
  if (input.rolloutHook !== undefined && !isRolloutHookName(input.rolloutHook)) {
    bad(`rolloutHook: ${JSON.stringify(input.rolloutHook)} is not ${ROLLOUT_HOOK_NAME_RULE}`);
  }
  if (input.rehearse !== undefined && typeof input.rehearse !== 'boolean') {
    bad(`rehearse: ${JSON.stringify(input.rehearse)}; expected true or false`);
  }
  if (input.whenLocked !== undefined && input.whenLocked !== 'wait' && input.whenLocked !== 'fail') {
    bad(`whenLocked: ${JSON.stringify(input.whenLocked)}; expected "wait" or "fail"`);
  }
  for (const key of [
    'lockWaitSeconds',
    'lockTimeoutMs',
    'statementTimeoutMs',
    'lockTimeoutAttempts',
  ] as const) {
    const value = input[key];
    if (value !== undefined && !(Number.isInteger(value) && value > 0))
      bad(`${key}: ${JSON.stringify(value)} is not a positive integer`);
  }
  for (const key of ['approvalTimeout', 'snapshotTimeout'] as const) {
    const value = input[key];
    if (value !== undefined && !isPositiveDuration(value))
      bad(
        `${key}: ${JSON.stringify(value)} is not a duration longer than zero, such as '30 seconds' or '2 hours'`,
      );
  }
  const settings: Partial<MigrateSettings> = {};
  if (input.whenLocked !== undefined) settings.whenLocked = input.whenLocked;
  if (input.lockWaitSeconds !== undefined) settings.lockWaitMs = input.lockWaitSeconds * 1000;
  if (input.lockTimeoutMs !== undefined) settings.lockTimeoutMs = input.lockTimeoutMs;
  if (input.statementTimeoutMs !== undefined) settings.statementTimeoutMs = input.statementTimeoutMs;
  if (input.lockTimeoutAttempts !== undefined) settings.lockTimeoutAttempts = input.lockTimeoutAttempts;
  return settings;
}
