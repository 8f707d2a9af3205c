/**
 * `dbops deploy`, `dbops backfill` and `dbops status`: schema migrations and data backfills, with
 * their stage or progress bar while they run, and following any workflow by its id.
 */
import {
  ApplicationFailure,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
} from '@temporalio/client';

import { backfill, deployMigration } from '../../workflows';
import {
  backfillProgressQuery,
  cancelBackfillSignal,
  configureBackfillUpdate,
  pauseBackfillSignal,
  resumeBackfillSignal,
  type BackfillProgress,
} from '../../workflows/backfill';
import {
  approveUpdate,
  deployProgressQuery,
  rehearsalSummary,
  type DeployMigrationResult,
} from '../../workflows/deploy-migration';
import { InvalidInputError } from '../../workflows/lib/errors';
import { utcStamp } from '../../workflows/lib/recovery';
import { backfillProgressLine } from '../backfill-progress';
import { loadConfig } from '../config';
import {
  alreadyRunning,
  clock,
  explainFailure,
  instanceOption,
  integerOption,
  parse,
  positional,
  print,
  sleep,
  UsageError,
  whileRunning,
  withTemporal,
  type CommandGroup,
} from './common';

export const change: CommandGroup = {
  usage: `  deploy --instance ID [--target MIGRATION] [--approve-as NAME] [--rehearse | --no-rehearse] [--json]
                                     lint, snapshot, (rehearse on a copy,) (approve,) migrate,
                                     verify; a production instance is rehearsed and waits for
                                     approval (given at once by --approve-as)
  backfill [start] NAME --instance ID [--params JSON] [--batch-size N] [--target-batch-ms N] [--delay-ms N] [--streams 1|2] [--detach] [--json]
                                     run a backfill defined in the repository, with a progress bar;
                                     the batch size tunes itself to a target duration (default
                                     200 ms) unless --batch-size alone fixes it; on a quiet database
                                     two batches run side by side unless --streams 1
  backfill pause|resume|cancel WORKFLOW_ID
  backfill set WORKFLOW_ID [--batch-size N | --target-batch-ms N] [--delay-ms N] [--json]
                                     change a running backfill's batch size (fixed) or target
                                     batch duration (self-tuned), or its delay
  status WORKFLOW_ID [--json]        follow a workflow (a backfill as a progress bar) until it
                                     ends; --json: its status and progress once`,
  commands: { deploy, backfill: backfillCommand, status },
};

async function deploy(args: string[]): Promise<void> {
  const options = parse('deploy', args, {
    instance: { type: 'string' },
    target: { type: 'string' },
    'approve-as': { type: 'string' },
    rehearse: { type: 'boolean' },
    'no-rehearse': { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const instanceId = instanceOption(options.instance);
  if (instanceId === undefined) throw new UsageError('dbops deploy: --instance ID is required');
  if (options.rehearse && options['no-rehearse']) {
    throw new UsageError('dbops deploy: --rehearse and --no-rehearse exclude each other');
  }
  const rehearse = options.rehearse ? true : options['no-rehearse'] ? false : undefined;
  const approveAs = options['approve-as'];
  if (approveAs !== undefined && approveAs.trim() === '') {
    throw new UsageError('dbops deploy: --approve-as needs the name of who approves');
  }
  const config = loadConfig();
  const workflowId = `deploy-${instanceId}-${utcStamp(new Date())}`;
  const quiet = options.json ?? false;
  const result: DeployMigrationResult = await withTemporal(config, async (client) => {
    const handle = await client.workflow.start(deployMigration, {
      taskQueue: config.temporal.taskQueue,
      workflowId,
      args: [{ instanceId, target: options.target, rehearse }],
    });
    if (!quiet) console.error(`started ${workflowId}`);
    let stage = '';
    let rehearsalShown = false;
    return explainFailure(
      whileRunning(handle.result(), async () => {
        const progress = await handle.query(deployProgressQuery).catch(() => undefined);
        if (progress === undefined || progress.stage === stage) return;
        stage = progress.stage;
        if (!quiet) console.error(`[${clock()}] ${stage}`);
        const asking = stage === 'awaiting-approval' && approveAs === undefined;
        // The approver reads what the migrations did on the copy before the question (even with --json).
        if (progress.rehearsal !== undefined && !rehearsalShown && (!quiet || asking)) {
          console.error(rehearsalSummary(progress.rehearsal));
          rehearsalShown = true;
        }
        if (stage !== 'awaiting-approval') return;
        if (approveAs === undefined) {
          // Said even with --json: nothing moves until someone approves.
          console.error(
            `${instanceId} is production: approve with  temporal workflow update execute --workflow-id ${workflowId} --name approve --input '{"approvedBy":"NAME"}'`,
          );
        } else {
          await handle.executeUpdate(approveUpdate, { args: [{ approvedBy: approveAs }] });
        }
      }),
    );
  });
  const why = new Map((result.whyHeldBack ?? []).map((held) => [held.name, held]));
  print(options.json, result, [
    ['MIGRATION', 'OUTCOME', 'WHY'],
    ...result.applied.map((name) => [name, 'applied', '']),
    ...result.heldBack.map((name) => [name, 'held back', why.get(name)?.reason ?? '']),
  ]);
  if (!options.json) {
    console.log(`\n${result.status} on ${instanceId}; pre-migration snapshot ${result.snapshotId ?? '-'}`);
    if (result.approvedBy !== undefined) console.log(`approved by ${result.approvedBy}`);
    if (result.rollout !== undefined) console.log(`rollout hook ${result.rollout.hook}: done`);
  }
}

/** `dbops backfill [start] NAME ... | pause|resume|cancel|set WORKFLOW_ID ...` */
async function backfillCommand(args: string[]): Promise<void> {
  const [action, ...rest] = args;
  if (action === 'start') return backfillStart(rest);
  if (action === 'pause' || action === 'resume' || action === 'cancel') return backfillSignal(action, rest);
  if (action === 'set') return backfillSet(rest);
  if (action !== undefined && !action.startsWith('-')) return backfillStart(args);
  throw new UsageError('dbops backfill: expected start NAME, pause, resume, cancel or set');
}

async function backfillStart(args: string[]): Promise<void> {
  const [name, rest] = positional('backfill start', 'NAME (a backfill defined in the repository)', args);
  const options = parse('backfill start', rest, {
    instance: { type: 'string' },
    params: { type: 'string' },
    'batch-size': { type: 'string' },
    'target-batch-ms': { type: 'string' },
    'delay-ms': { type: 'string' },
    streams: { type: 'string' },
    detach: { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const instanceId = instanceOption(options.instance);
  if (instanceId === undefined) throw new UsageError('dbops backfill start: --instance ID is required');
  let params: unknown;
  try {
    params = options.params === undefined ? undefined : JSON.parse(options.params);
  } catch (error) {
    throw new UsageError(`dbops backfill start: --params is not JSON: ${(error as Error).message}`);
  }
  const batchSize = integerOption('backfill start', 'batch-size', options['batch-size']);
  const targetBatchMs = integerOption('backfill start', 'target-batch-ms', options['target-batch-ms']);
  const delayMs = integerOption('backfill start', 'delay-ms', options['delay-ms']);
  const streams = integerOption('backfill start', 'streams', options.streams);
  if (streams !== undefined && streams !== 1 && streams !== 2) {
    throw new UsageError(`dbops backfill start: --streams ${streams}: give 1 or 2`);
  }
  const config = loadConfig();
  // One run of a backfill per instance at a time: the id says which.
  const workflowId = `backfill-${name}-${instanceId}`;
  const final = await withTemporal(config, async (client) => {
    const handle = await client.workflow
      .start(backfill, {
        taskQueue: config.temporal.taskQueue,
        workflowId,
        args: [{ instanceId, name, params, batchSize, targetBatchMs, delayMs, streams }],
      })
      .catch(alreadyRunning(workflowId));
    if (options.detach) return undefined;
    if (!options.json) console.error(`started ${workflowId}`);
    let last = '';
    return explainFailure(
      whileRunning(handle.result(), async () => {
        const progress = await handle.query(backfillProgressQuery).catch(() => undefined);
        const line = progress === undefined ? '' : backfillProgressLine(progress);
        if (!options.json && line !== last) console.error(line);
        last = line;
      }),
    );
  });
  if (final === undefined) {
    print(options.json, { workflowId }, [['WORKFLOW'], [workflowId]]);
    return;
  }
  if (options.json) console.log(JSON.stringify(final, null, 2));
  else console.log(backfillProgressLine(final));
}

/** The backfill `workflowId`, running; anything else is a clear error. */
async function runningBackfill(client: Client, workflowId: string, action: string) {
  const handle = client.workflow.getHandle<typeof backfill>(workflowId);
  const description = await handle.describe().catch((error: Error) => {
    if (error instanceof WorkflowNotFoundError) throw new Error(`no workflow ${workflowId}`);
    throw error;
  });
  if (description.type !== 'backfill') {
    throw new InvalidInputError(`${workflowId} is a ${description.type} workflow, not a backfill`);
  }
  if (description.status.name !== 'RUNNING') {
    throw new Error(`${workflowId} is ${description.status.name}; nothing to ${action}`);
  }
  return handle;
}

async function backfillSignal(action: 'pause' | 'resume' | 'cancel', args: string[]): Promise<void> {
  const [workflowId, rest] = positional(`backfill ${action}`, 'WORKFLOW_ID', args);
  parse(`backfill ${action}`, rest, {});
  const signal = { pause: pauseBackfillSignal, resume: resumeBackfillSignal, cancel: cancelBackfillSignal }[
    action
  ];
  await withTemporal(loadConfig(), async (client) =>
    (await runningBackfill(client, workflowId, action)).signal(signal),
  );
  console.log(
    `${action} sent to ${workflowId}${action === 'resume' ? '' : ' (takes effect after the current chunk)'}`,
  );
}

async function backfillSet(args: string[]): Promise<void> {
  const [workflowId, rest] = positional('backfill set', 'WORKFLOW_ID', args);
  const options = parse('backfill set', rest, {
    'batch-size': { type: 'string' },
    'target-batch-ms': { type: 'string' },
    'delay-ms': { type: 'string' },
    json: { type: 'boolean' },
  });
  const change = {
    batchSize: integerOption('backfill set', 'batch-size', options['batch-size']),
    targetBatchMs: integerOption('backfill set', 'target-batch-ms', options['target-batch-ms']),
    delayMs: integerOption('backfill set', 'delay-ms', options['delay-ms']),
  };
  if (change.batchSize !== undefined && change.targetBatchMs !== undefined) {
    throw new UsageError(
      'dbops backfill set: --batch-size fixes the size, --target-batch-ms tunes it; give one',
    );
  }
  if (change.batchSize === undefined && change.targetBatchMs === undefined && change.delayMs === undefined) {
    throw new UsageError(
      'dbops backfill set: give --batch-size N or --target-batch-ms N, and/or --delay-ms N',
    );
  }
  const settings = await withTemporal(loadConfig(), async (client) => {
    const handle = await runningBackfill(client, workflowId, 'set');
    try {
      return await handle.executeUpdate(configureBackfillUpdate, { args: [change] });
    } catch (error) {
      const cause = error instanceof WorkflowUpdateFailedError ? error.cause : undefined;
      if (cause instanceof ApplicationFailure && cause.type === InvalidInputError.name) {
        throw new InvalidInputError(cause.message);
      }
      throw error;
    }
  });
  print(options.json, settings, [
    ['BATCH SIZE', 'TARGET BATCH MS', 'DELAY MS'],
    [String(settings.batchSize), String(settings.targetBatchMs ?? '-'), String(settings.delayMs)],
  ]);
}

interface WorkflowStatus {
  workflowId: string;
  workflowType: string;
  status: string;
  /** The workflow's `progress` query, when it has one and it answers. */
  progress: unknown;
}

async function workflowStatus(client: Client, workflowId: string): Promise<WorkflowStatus> {
  const handle = client.workflow.getHandle(workflowId);
  const description = await handle.describe().catch((error: Error) => {
    if (error instanceof WorkflowNotFoundError) throw new Error(`no workflow ${workflowId}`);
    throw error;
  });
  const progress: unknown = await handle.query('progress').catch(() => undefined);
  return { workflowId, workflowType: description.type, status: description.status.name, progress };
}

/** A backfill as its progress bar; another workflow as its type, status and step (or stage). */
function statusLine({ workflowType, status, progress }: WorkflowStatus): string {
  if (workflowType === 'backfill' && progress !== undefined) {
    return backfillProgressLine(progress as BackfillProgress);
  }
  const where = progress as { step?: unknown; stage?: unknown } | undefined;
  const step = where?.step ?? where?.stage;
  return `${workflowType} ${status}${typeof step === 'string' ? `: ${step}` : ''}`;
}

/** Follows a workflow until it closes (`--json`: once); exit 1 when it failed. */
async function status(args: string[]): Promise<number> {
  const [workflowId, rest] = positional('status', 'WORKFLOW_ID', args);
  const { json } = parse('status', rest, { json: { type: 'boolean' } });
  const final = await withTemporal(loadConfig(), async (client) => {
    if (json) return workflowStatus(client, workflowId);
    let last = '';
    for (;;) {
      const now = await workflowStatus(client, workflowId);
      const line = statusLine(now);
      // A terminal redraws one line; a pipe gets a line per change.
      if (process.stdout.isTTY) process.stdout.write(`\r\x1b[K${line}`);
      else if (line !== last) console.log(line);
      last = line;
      if (now.status !== 'RUNNING') {
        if (process.stdout.isTTY) process.stdout.write('\n');
        return now;
      }
      await sleep(1000);
    }
  });
  if (json) console.log(JSON.stringify(final, null, 2));
  else if (final.workflowType === 'backfill') console.log(`${workflowId}: ${final.status}`);
  return ['RUNNING', 'COMPLETED', 'CONTINUED_AS_NEW'].includes(final.status) ? 0 : 1;
}
