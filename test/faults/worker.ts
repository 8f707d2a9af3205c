/**
 * The fault matrix's worker, a process of its own (forked by harness.ts) so a cell can SIGKILL it.
 * Built like workers/worker.ts: every workflow, activities from createActivities on local deps.
 * Every activity is wrapped, and so is the database connector: when the parent arms a fault plan
 * (over Node IPC) the named activity's n-th call of the named run stops at the planned place
 * (before or after the real implementation, or once it has connected to its database), tells the
 * parent and waits for its go; or, for a lost reply, throws a retryable error after the
 * implementation succeeded. The placement is this hook, never a delay.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { NativeConnection, Worker } from '@temporalio/worker';
import type { Client } from 'pg';

import { createActivities, type ActivityDeps } from '../../activities';
import type { DatabaseConfig } from '../../activities/config-types';
import { LocalControlPlane } from '../../activities/control-plane/local';
import type { DatabaseConnector } from '../../activities/postgres/connect';
import { localActivityDeps } from '../helpers/activity-deps';
import { FAULT_BACKFILLS } from './backfills';
import type { FaultPlan, ParentMessage, WorkerMessage } from './harness';

function env(name: string): string {
  const value = process.env[name];
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
}

function send(message: WorkerMessage): void {
  process.send?.(message);
}

let plan: FaultPlan | undefined;
let calls = 0;
/** The activity call the plan targets once it has started (for the `connected` placement). */
let target: Context | undefined;
let release: (() => void) | undefined;

process.on('message', (message: ParentMessage) => {
  if (message.type === 'arm') {
    plan = message.plan;
    calls = 0;
    target = undefined;
    send({ type: 'armed' });
  } else if (message.type === 'disarm') {
    plan = undefined;
  } else if (message.type === 'go') {
    release?.();
    release = undefined;
  }
});

/** Stops here until the parent has applied the fault and says go. */
function pause(port: number | undefined): Promise<void> {
  const fired = plan!;
  plan = undefined; // a plan fires once
  const workflowId = workflowOf(Context.current());
  return new Promise((resolve) => {
    release = resolve;
    send({
      type: 'hit',
      activity: fired.activity,
      call: fired.call,
      placement: fired.placement,
      port,
      workflowId,
    });
  });
}

function workflowOf(context: Context): string {
  return context.info.workflowExecution?.workflowId ?? '';
}

function wrapActivity<A extends unknown[], R>(
  name: string,
  fn: (...args: A) => Promise<R>,
): (...args: A) => Promise<R> {
  return async (...args) => {
    const context = Context.current();
    const armed = plan;
    let hit = false;
    if (armed !== undefined && armed.activity === name && workflowOf(context).startsWith(armed.workflowId)) {
      calls += 1;
      hit = calls === armed.call;
    }
    if (!hit) return fn(...args);
    if (armed!.placement === 'connected') target = context;
    if (armed!.placement === 'before') await pause(undefined);
    let outcome = 'failed';
    try {
      const result = await fn(...args);
      outcome = 'completed';
      if (armed!.placement === 'after') {
        if (armed!.action === 'throw') {
          plan = undefined;
          send({
            type: 'hit',
            activity: name,
            call: armed!.call,
            placement: 'after',
            port: undefined,
            workflowId: workflowOf(context),
          });
          outcome = 'reply lost';
          throw ApplicationFailure.retryable(
            'fault injected: the reply of this attempt was lost',
            'LostReply',
          );
        }
        await pause(undefined);
      }
      return result;
    } finally {
      send({ type: 'finished', activity: name, outcome });
    }
  };
}

/** Runs `fn` after the planned stop when the targeted activity call has just connected. */
function hooked<T>(fn: (client: Client) => Promise<T>): (client: Client) => Promise<T> {
  return async (client) => {
    let context: Context | undefined;
    try {
      context = Context.current();
    } catch {
      context = undefined; // not inside an activity
    }
    if (plan !== undefined && context !== undefined && context === target) {
      target = undefined;
      await pause(client.port);
    }
    return fn(client);
  };
}

function hookConnector(connector: DatabaseConnector): DatabaseConnector {
  return {
    withPrimary: (fn) => connector.withPrimary(hooked(fn)),
    withReadOnly: (fn) =>
      connector.withReadOnly((session) => hooked((client) => fn({ ...session, client }))(session.client)),
    withEndpoint: (endpoint, fn) => connector.withEndpoint(endpoint, hooked(fn)),
  };
}

async function main(): Promise<void> {
  const stateDir = env('FAULTS_STATE_DIR');
  const base = localActivityDeps(JSON.parse(env('FAULTS_ENDPOINT')) as DatabaseConfig, stateDir);
  const deps: ActivityDeps = {
    ...base,
    controlPlane: new LocalControlPlane({ stateDir }),
    connector: hookConnector(base.connector),
    migrationsDir: env('FAULTS_MIGRATIONS_DIR'),
    backfills: FAULT_BACKFILLS,
  };
  const activities = Object.fromEntries(
    Object.entries(createActivities(deps)).map(([name, fn]) => [
      name,
      wrapActivity(name, fn as (...args: unknown[]) => Promise<unknown>),
    ]),
  );
  const connection = await NativeConnection.connect({ address: env('FAULTS_TEMPORAL_ADDRESS') });
  const worker = await Worker.create({
    connection,
    taskQueue: env('FAULTS_TASK_QUEUE'),
    workflowBundle: { codePath: env('FAULTS_WORKFLOW_BUNDLE') },
    activities,
  });
  process.on('disconnect', () => worker.shutdown());
  send({ type: 'ready' });
  await worker.run();
  await connection.close();
}

main().catch((error: Error) => {
  console.error(`fault worker failed: ${error.stack ?? error.message}`);
  process.exit(1);
});
