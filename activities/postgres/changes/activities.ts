/**
 * The activities of a declared change (activities/postgres/changes): its plan with squawk's
 * verdict, and one phase at a time. A phase heartbeats while it runs and, cancelled, cancels its
 * running statement (its transaction rolls back, the phase is not recorded).
 */
import { ApplicationFailure, Context } from '@temporalio/activity';

import { DbopsError, InvalidInputError } from '../../../workflows/lib/errors';
import { backendCanceller, heartbeatWhile } from '../../heartbeat';
import { workflowRunOf } from '../../workflow-run';
import type { WithInstance } from '../instance';
import type { LintViolation } from '../migrations';
import type { Change } from './definition';
import { formatPlan, type ChangePlan, type Phase } from './plan';
import { DEFAULT_LOCK_SETTINGS, lintPlan, phasesOf, planFor, runPhase, type LockSettings } from './run';

export interface ChangeDeps {
  withInstance: WithInstance;
  squawkConfig: string;
  changes: Record<string, Change>;
}

export interface ChangeTarget {
  instanceId: string;
  change: string;
}

export interface PlannedChange {
  plan: ChangePlan;
  /** Every phase's SQL as `dbops plan` prints it. */
  text: string;
  /** squawk's findings; any one blocks the change. */
  violations: LintViolation[];
}

export interface PhaseInput extends ChangeTarget {
  phase: Phase;
  settings?: Partial<LockSettings>;
}

export interface PhaseResult {
  phase: Phase;
  /** False when this workflow had applied the phase already (a retry). */
  applied: boolean;
  /** An abort: the phases it undid (their rows removed from the migrations table). */
  undone?: Phase[];
}

export function createChangeActivities(deps: ChangeDeps) {
  const lookup = (name: string): Change => {
    const change = deps.changes[name];
    if (change === undefined) {
      throw ApplicationFailure.nonRetryable(
        `change: no change named ${JSON.stringify(name)}; known: ${Object.keys(deps.changes).join(', ')}`,
        InvalidInputError.name,
      );
    }
    return change;
  };

  return {
    /** Every phase's SQL for this instance's table, and squawk's verdict on it. Changes nothing. */
    async planDeclaredChange(input: ChangeTarget): Promise<PlannedChange> {
      const change = lookup(input.change);
      const owner = workflowRunOf(Context.current(), 'a declared change runs');
      return failFast(async () => {
        const plan = await deps.withInstance(input.instanceId, (client) =>
          planFor(client, change, owner.workflowId),
        );
        return { plan, text: formatPlan(plan), violations: await lintPlan(plan, deps.squawkConfig) };
      });
    },

    /** Runs one phase unless this workflow ran it already; records it in the migrations table. */
    async runChangePhase(input: PhaseInput): Promise<PhaseResult> {
      const change = lookup(input.change);
      const context = Context.current();
      const owner = workflowRunOf(context, 'a declared change runs');
      let status = `${input.change}: ${input.phase}`;
      const progress = (what: string) => {
        status = what;
        context.log.info(what);
      };
      return failFast(() =>
        heartbeatWhile(
          (signal) =>
            deps.withInstance(input.instanceId, async (client) => {
              const done = (await phasesOf(client, change.name)).filter(
                (record) => record.workflowId === owner.workflowId,
              );
              if (done.some((record) => record.phase === input.phase))
                return { phase: input.phase, applied: false };
              // Refuses an abort once the contract is recorded, and any phase while another run has the change.
              const plan = await planFor(client, change, owner.workflowId, input.phase);
              const onCancel = await backendCanceller(client, (fn) =>
                deps.withInstance(input.instanceId, fn),
              );
              signal.addEventListener('abort', () => void onCancel(), { once: true });
              const settings = { ...DEFAULT_LOCK_SETTINGS, ...input.settings };
              const applied = await runPhase(client, plan, input.phase, owner, {
                settings,
                signal,
                progress,
              });
              if (input.phase !== 'abort') return { phase: input.phase, applied };
              return { phase: input.phase, applied, undone: done.map((record) => record.phase) };
            }),
          { details: () => status },
        ),
      );
    },
  };
}

/** Our typed errors and failed SQL are final: a retry gives the same answer. Connection failures retry. */
async function failFast<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof DbopsError && !error.retryable)
      throw ApplicationFailure.nonRetryable(error.message, error.name);
    const code = (error as { code?: string }).code;
    // SQLSTATE classes 08 (connection) and 57P01-03 (shut down, crash) are worth another attempt.
    // 55P03: lock_timeout on every attempt of a step; a later activity attempt may find the table free.
    if (typeof code === 'string' && !code.startsWith('08') && !code.startsWith('57P') && code !== '55P03') {
      throw ApplicationFailure.nonRetryable(
        `${(error as Error).message} (SQLSTATE ${code})`,
        'ChangePhaseFailed',
      );
    }
    throw error;
  }
}
