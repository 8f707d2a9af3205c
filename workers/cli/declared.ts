/**
 * `dbops plan CHANGE` and `dbops change ...`: declared changes (activities/postgres/changes), run
 * by the expandContract workflow. The plan prints every phase's SQL and squawk's verdict before
 * anything runs; `change` starts one, tells it the new code is deployed, or aborts it before its
 * contract (a closed run by an abort-only run of the same workflow id).
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';

import { expandContract, planChange } from '../../workflows';
import {
  abortChangeSignal,
  codeDeployedSignal,
  expandContractProgressQuery,
  type ExpandContractResult,
} from '../../workflows/expand-contract';
import { InvalidInputError } from '../../workflows/lib/errors';
import { utcStamp } from '../../workflows/lib/recovery';
import { loadConfig } from '../config';
import {
  alreadyRunning,
  clock,
  explainFailure,
  instanceOption,
  integerOption,
  parse,
  positional,
  UsageError,
  whileRunning,
  withTemporal,
  type CommandGroup,
} from './common';

export const declared: CommandGroup = {
  usage: `  plan CHANGE --instance ID [--json] every phase's SQL of a declared change on that instance and
                                     squawk's verdict (exit 1 on a finding); changes nothing
  change start CHANGE --instance ID [--batch-size N] [--detach] [--json]
                                     run a declared change: expand, backfill, tighten, wait for
                                     code-deployed, contract
  change code-deployed WORKFLOW_ID --by NAME
                                     the new code is live everywhere: let the contract run
  change abort WORKFLOW_ID [--by NAME]
                                     before the contract: undo the change, the table as it was
                                     (a closed run too: an abort-only run undoes what it applied)`,
  commands: { plan, change: changeCommand },
};

async function plan(args: string[]): Promise<number> {
  const [change, rest] = positional('plan', 'CHANGE (a change declared in the repository)', args);
  const options = parse('plan', rest, { instance: { type: 'string' }, json: { type: 'boolean' } });
  const instanceId = instanceOption(options.instance);
  if (instanceId === undefined) throw new UsageError('dbops plan: --instance ID is required');
  const config = loadConfig();
  const planned = await withTemporal(config, (client) =>
    explainFailure(
      client.workflow.execute(planChange, {
        taskQueue: config.temporal.taskQueue,
        workflowId: `plan-${change}-${instanceId}-${utcStamp(new Date())}`,
        args: [{ instanceId, change }],
      }),
    ),
  );
  if (options.json) console.log(JSON.stringify(planned, null, 2));
  else {
    console.log(planned.text);
    console.log('');
    for (const v of planned.violations) console.log(`lint: ${v.file}:${v.line} ${v.rule}: ${v.message}`);
    console.log(
      planned.violations.length === 0 ? 'lint: clean' : `lint: ${planned.violations.length} finding(s)`,
    );
  }
  return planned.violations.length === 0 ? 0 : 1;
}

/** `dbops change start|code-deployed|abort ...` */
async function changeCommand(args: string[]): Promise<void> {
  const [action, ...rest] = args;
  if (action === 'start') return changeStart(rest);
  if (action === 'code-deployed' || action === 'abort') return changeSignal(action, rest);
  throw new UsageError('dbops change: expected start CHANGE, code-deployed WORKFLOW_ID or abort WORKFLOW_ID');
}

async function changeStart(args: string[]): Promise<void> {
  const [change, rest] = positional('change start', 'CHANGE (a change declared in the repository)', args);
  const options = parse('change start', rest, {
    instance: { type: 'string' },
    'batch-size': { type: 'string' },
    detach: { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const instanceId = instanceOption(options.instance);
  if (instanceId === undefined) throw new UsageError('dbops change start: --instance ID is required');
  const batchSize = integerOption('change start', 'batch-size', options['batch-size']);
  const config = loadConfig();
  // One run of a change per instance at a time: the id says which.
  const workflowId = `change-${change}-${instanceId}`;
  const final = await withTemporal(config, async (client) => {
    const handle = await client.workflow
      .start(expandContract, {
        taskQueue: config.temporal.taskQueue,
        workflowId,
        args: [{ instanceId, change, batchSize }],
      })
      .catch(alreadyRunning(workflowId));
    if (options.detach) return undefined;
    if (!options.json) console.error(`started ${workflowId}`);
    let stage = '';
    return explainFailure(
      whileRunning(handle.result(), async () => {
        const progress = await handle.query(expandContractProgressQuery).catch(() => undefined);
        if (progress === undefined || progress.stage === stage) return;
        stage = progress.stage;
        if (options.json) return;
        console.error(`[${clock()}] ${stage}`);
        if (stage === 'failed') {
          console.error(`${progress.error}; undo the change with: dbops change abort ${workflowId}`);
        }
        if (stage === 'awaiting-code-deploy') {
          console.error(
            `deploy the new code (search_path ${progress.versionSchema ?? 'public'}), then: dbops change code-deployed ${workflowId} --by NAME`,
          );
        }
      }),
    );
  });
  if (final === undefined) console.log(workflowId);
  else if (options.json) console.log(JSON.stringify(final, null, 2));
  else console.log(summary(final));
}

function summary(result: ExpandContractResult): string {
  if (result.outcome === 'aborted') {
    const undone = result.phases.find((p) => p.phase === 'abort')?.undone ?? [];
    const when =
      result.error !== undefined
        ? `after it failed (${result.error})`
        : result.abortedIn !== undefined
          ? `during ${result.abortedIn}`
          : `after its run had closed (undone: ${undone.join(', ') || 'nothing recorded'})`;
    return `${result.change} on ${result.instanceId}: aborted ${when} by ${result.abortedBy}; the table is as it was`;
  }
  return (
    `${result.change} on ${result.instanceId}: completed (code deployed by ${result.codeDeployedBy}); ` +
    `snapshot before the contract: ${result.snapshotId}`
  );
}

/** The change `workflowId` (an expandContract run) and its status; anything else is a clear error. */
async function changeRun(client: Client, workflowId: string) {
  const handle = client.workflow.getHandle<typeof expandContract>(workflowId);
  const description = await handle.describe().catch((error: Error) => {
    if (error instanceof WorkflowNotFoundError) throw new Error(`no workflow ${workflowId}`);
    throw error;
  });
  if (description.type !== 'expandContract') {
    throw new InvalidInputError(
      `${workflowId} is a ${description.type} workflow, not an expandContract change`,
    );
  }
  return { handle, status: description.status.name };
}

async function changeSignal(action: 'code-deployed' | 'abort', args: string[]): Promise<void> {
  const [workflowId, rest] = positional(`change ${action}`, 'WORKFLOW_ID', args);
  const options = parse(`change ${action}`, rest, { by: { type: 'string' } });
  const by = options.by ?? (action === 'abort' ? (process.env.USER ?? 'dbops') : undefined);
  if (by === undefined || by.trim() === '') {
    throw new UsageError(`dbops change ${action}: --by NAME is required (who deployed, or a CI run id)`);
  }
  const config = loadConfig();
  const result = await withTemporal(config, async (client) => {
    const { handle, status } = await changeRun(client, workflowId);
    if (action === 'code-deployed') {
      if (status !== 'RUNNING') throw new Error(`${workflowId} is ${status}; nothing to tell it`);
      await handle.signal(codeDeployedSignal, { by });
      return undefined;
    }
    // A closed run answers the query too (its history is replayed): where it stopped.
    const progress = await handle.query(expandContractProgressQuery).catch(() => undefined);
    if (progress === undefined) throw new Error(`${workflowId} is ${status} and says nothing of its change`);
    if (progress.stage === 'contract' || progress.stage === 'done') {
      throw new Error(
        `${workflowId} is at ${progress.stage}: too late to abort (its contract dropped or is dropping the old columns); ` +
          'to undo it, restore the snapshot taken before the contract',
      );
    }
    if (status === 'RUNNING') {
      await handle.signal(abortChangeSignal, { by });
      return explainFailure(handle.result());
    }
    if (progress.stage === 'aborted')
      throw new Error(`${workflowId} is ${status}; nothing to abort (it was aborted)`);
    // Closed before its contract (terminated, failed, timed out): a run of the same id undoes what
    // the migrations table says this id applied.
    console.error(`${workflowId} is ${status} at ${progress.stage}: starting an abort-only run of it`);
    const aborting = await client.workflow.signalWithStart(expandContract, {
      taskQueue: config.temporal.taskQueue,
      workflowId,
      args: [{ instanceId: progress.instanceId, change: progress.change, abortOnly: true }],
      signal: abortChangeSignal,
      signalArgs: [{ by }],
    });
    return explainFailure(aborting.result());
  });
  if (result === undefined) console.log(`code-deployed sent to ${workflowId}: the contract runs next`);
  else console.log(summary(result));
}
