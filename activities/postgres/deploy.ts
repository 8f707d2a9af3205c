/**
 * The SQL side of `deployMigration` and `expandContract`: plan and lint, migrate up or down under
 * the migration lock, verify, and the optional rollout hook. Every activity connects to the
 * instance's own endpoint (from the ControlPlane), so `--instance ID` is the database migrated.
 */
import { execFile } from 'node:child_process';

import { ApplicationFailure, Context } from '@temporalio/activity';
import { DbopsError, InvalidInputError } from '../../workflows/lib/errors';
import { backendCanceller, heartbeatWhile } from '../heartbeat';
import { workflowRunOf } from '../workflow-run';
import type { WithInstance } from './instance';
import {
  appliedBy,
  appliedMigrations,
  DEFAULT_MIGRATE_SETTINGS,
  lintMigrations,
  MigrationRunError,
  planMigrations,
  readMigrations,
  runMigrations,
  verifyMigrations,
  type LintViolation,
  type MigrateSettings,
  type MigrationPlan,
  type VerifyResult,
} from './migrations';

/** A step run after migrating, e.g. `kubectl set image`: configured on the worker, named in the input. */
export type RolloutHook = { command: string[]; timeoutMs?: number } | { url: string; timeoutMs?: number };

export interface DeployDeps {
  withInstance: WithInstance;
  migrationsDir: string;
  squawkConfig: string;
  rolloutHooks: Record<string, RolloutHook>;
}

export interface PlanInput {
  instanceId: string;
  target?: string | undefined;
}

export interface PlanResult {
  plan: MigrationPlan;
  /** squawk's findings on the migrations to apply; any one blocks the deploy. */
  violations: LintViolation[];
}

export interface MigrateInput {
  instanceId: string;
  direction: 'up' | 'down';
  names: string[];
  settings?: Partial<MigrateSettings>;
}

export interface AppliedByRunInput {
  instanceId: string;
  /** The plan's migrations: which of them are applied now, and by this workflow run. */
  names: string[];
}

export interface VerifyInput {
  instanceId: string;
  expected: string[];
  /** Migrations whose tables get ANALYZE. */
  touched: string[];
}

export interface RolloutInput {
  hook: string;
  instanceId: string;
  applied: string[];
}

export interface RolloutResult {
  hook: string;
  /** The last lines the command printed, or the HTTP status and body start. */
  output: string;
}

export function createDeployActivities(deps: DeployDeps) {
  const { withInstance } = deps;

  return {
    /** What a deploy would apply, and squawk's verdict on exactly those files. */
    async planMigrationDeploy(input: PlanInput): Promise<PlanResult> {
      return failFast(async () => {
        const files = await readMigrations(deps.migrationsDir);
        const applied = await withInstance(input.instanceId, appliedMigrations);
        const plan = planMigrations(files, applied, input);
        const violations = await lintMigrations(
          files.filter((file) => plan.toApply.includes(file.name)),
          deps.squawkConfig,
        );
        return { plan, violations };
      });
    },

    /**
     * Applies or reverts exactly `names`, starting from what the migrations table says is applied
     * (a retry applies only what is missing). Heartbeats the migration running now every few
     * seconds. Cancelled (the workflow's cancel, a timeout, the worker shutting down), it cancels
     * its running statement, waits for it to stop, releases the migration lock and fails as
     * cancelled. Returns, of `names`, those this workflow run applied (up) or those no longer
     * applied (down).
     */
    async runMigrationStep(input: MigrateInput): Promise<string[]> {
      const context = Context.current();
      const settings = { ...DEFAULT_MIGRATE_SETTINGS, ...input.settings };
      const owner = workflowRunOf(context, 'migrations are applied');
      let status = `${input.direction === 'up' ? 'applying' : 'reverting'} ${input.names.join(', ')}`;
      const progress = (what: string) => {
        status = what;
        context.log.info(what);
        context.heartbeat(what);
      };
      return failFast(() =>
        heartbeatWhile(
          (signal) =>
            withInstance(input.instanceId, async (client) => {
              const cancelRunning = await backendCanceller(client, (fn) =>
                withInstance(input.instanceId, fn),
              );
              const control = { owner, progress, signal, cancelRunning };
              await runMigrations(
                client,
                deps.migrationsDir,
                input.direction,
                input.names,
                settings,
                control,
              );
              if (input.direction === 'up') return appliedBy(client, input.names, owner);
              const applied = await appliedMigrations(client);
              return input.names.filter((name) => !applied.includes(name));
            }),
          { details: () => status },
        ),
      );
    },

    /** Of the plan's migrations, those applied now by this workflow run (read-only; after any failure). */
    async migrationsAppliedByRun(input: AppliedByRunInput): Promise<string[]> {
      const owner = workflowRunOf(Context.current(), 'migrations are applied');
      return withInstance(input.instanceId, (client) => appliedBy(client, input.names, owner));
    },

    async verifyMigrationDeploy(input: VerifyInput): Promise<VerifyResult> {
      return failFast(async () => {
        const files = await readMigrations(deps.migrationsDir);
        return withInstance(input.instanceId, (client) =>
          verifyMigrations(
            client,
            input.expected,
            files.filter((file) => input.touched.includes(file.name)),
          ),
        );
      });
    },

    async runRolloutHook(input: RolloutInput): Promise<RolloutResult> {
      const hook = deps.rolloutHooks[input.hook];
      if (hook === undefined) {
        const known = Object.keys(deps.rolloutHooks);
        throw ApplicationFailure.nonRetryable(
          `rolloutHook: no hook named ${JSON.stringify(input.hook)} on this worker (configured: ${known.join(', ') || 'none'})`,
          InvalidInputError.name,
        );
      }
      const output =
        'command' in hook
          ? await runCommandHook(hook.command, input, hook.timeoutMs)
          : await callHttpHook(hook.url, input, hook.timeoutMs);
      return { hook: input.hook, output };
    },
  };
}

/**
 * A failed migration and our typed errors are final: retrying gives the same answer. Connection
 * failures stay retryable. The workflow reads what was applied from the database, not from here.
 */
export async function failFast<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof MigrationRunError)
      throw ApplicationFailure.nonRetryable(error.message, 'MigrationFailed');
    if (error instanceof DbopsError && !error.retryable)
      throw ApplicationFailure.nonRetryable(error.message, error.name);
    throw error;
  }
}

const HOOK_OUTPUT_LIMIT = 2_000;

function runCommandHook(command: string[], input: RolloutInput, timeoutMs = 10 * 60_000): Promise<string> {
  const [file, ...args] = command;
  if (file === undefined)
    throw ApplicationFailure.nonRetryable(`hook ${input.hook}: empty command`, InvalidInputError.name);
  const env = {
    ...process.env,
    DBOPS_INSTANCE_ID: input.instanceId,
    DBOPS_APPLIED_MIGRATIONS: input.applied.join(','),
  };
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const output = `${stdout}${stderr}`.slice(-HOOK_OUTPUT_LIMIT);
        if (error) {
          reject(
            ApplicationFailure.nonRetryable(
              `rollout hook ${input.hook} failed (${error.message.split('\n')[0]}): ${output}`,
              'RolloutHookFailed',
            ),
          );
        } else {
          resolve(output);
        }
      },
    );
  });
}

async function callHttpHook(url: string, input: RolloutInput, timeoutMs = 60_000): Promise<string> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ instanceId: input.instanceId, appliedMigrations: input.applied }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const body = (await response.text()).slice(0, HOOK_OUTPUT_LIMIT);
  if (!response.ok) {
    throw ApplicationFailure.nonRetryable(
      `rollout hook ${input.hook}: HTTP ${response.status}: ${body}`,
      'RolloutHookFailed',
    );
  }
  return `HTTP ${response.status}: ${body}`;
}
