/**
 * A restore cancelled while its create call is in flight leaves no copy: snapshotRestore,
 * pitrRestore and drTest on the dev server against real local instances. The restore activity is
 * held by a hook at its start (before it reaches the provider); the test cancels the run there,
 * lets the call go on once the workflow has asked for the activity's cancellation, waits for the
 * call to end, and then looks at what exists.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

import { CancelledFailure, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';

import { createActivities } from '../../activities';
import { backup, drTest, pitrRestore, snapshotRestore } from '../../workflows';
import { progressQuery } from '../../workflows/lib/recovery';
import { localActivityDeps } from '../helpers/activity-deps';
import { startRecoveryStack, type RecoveryStack } from '../helpers/recovery';
import { workflowBundle } from '../helpers/temporal';

const SOURCE = 'cancel-src';
const { EventType } = temporal.api.enums.v1;

/** Holds the next call of an activity at its start until released; says when the call has ended. */
class CreateCallHook {
  private armed: { entered: () => void; release: Promise<void>; ended: () => void } | undefined;
  entered!: Promise<void>;
  ended!: Promise<void>;
  release!: () => void;

  arm(): void {
    let entered!: () => void;
    let release!: () => void;
    let ended!: () => void;
    this.entered = new Promise((resolve) => (entered = resolve));
    this.ended = new Promise((resolve) => (ended = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    this.release = release;
    this.armed = { entered, release: released, ended };
  }

  wrap<A extends unknown[], R>(call: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
    return async (...args) => {
      const armed = this.armed;
      this.armed = undefined;
      if (armed === undefined) return call(...args);
      armed.entered();
      await armed.release;
      try {
        return await call(...args);
      } finally {
        armed.ended();
      }
    };
  }
}

describe('a restore cancelled while its create call is in flight leaves no copy (dev server, local provider)', function () {
  this.timeout(300_000);
  let stack: RecoveryStack;
  let snapshotId: string;
  let worker: Worker;
  let running: Promise<void>;
  const hook = new CreateCallHook();
  const taskQueue = 'restore-cancel-hooked';

  before(async () => {
    stack = await startRecoveryStack({
      name: 'restore-cancel',
      sourceInstanceId: SOURCE,
      conversations: 20,
      chunksPerConversation: 1,
    });
    snapshotId = (
      await stack.env.client.workflow.execute(backup, {
        taskQueue: stack.taskQueue,
        workflowId: 'restore-cancel-backup',
        args: [{ instanceId: SOURCE, timeouts: { pollInterval: '1 second' } }],
      })
    ).snapshotId;
    const activities = createActivities(localActivityDeps(stack.source.endpoint, stack.stateDir));
    worker = await Worker.create({
      connection: stack.env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: {
        ...activities,
        restoreFromSnapshot: hook.wrap(activities.restoreFromSnapshot),
        restoreToPointInTime: hook.wrap(activities.restoreToPointInTime),
      },
    });
    running = worker.run();
  });
  after(async () => {
    worker?.shutdown();
    await running?.catch(() => undefined);
    await stack?.teardown();
  });

  /**
   * Releases the held call once the workflow has reacted to the cancel: it asked for the
   * activity's cancellation and then waits for it, or it went on to its cleanup (and closes).
   */
  async function releaseWhenCancelHandled(handle: WorkflowHandle): Promise<void> {
    for (;;) {
      const types = ((await handle.fetchHistory()).events ?? []).map((e) => e.eventType);
      const cancelRequested = types.lastIndexOf(EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED);
      const closed = (await handle.describe()).status.name !== 'RUNNING';
      const waiting =
        cancelRequested >= 0 &&
        !types.slice(cancelRequested).includes(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED);
      if (closed || waiting) break;
      await sleep(100);
    }
    hook.release();
  }

  async function cancelInFlight(start: () => Promise<WorkflowHandle>): Promise<void> {
    hook.arm();
    const handle = await start();
    await hook.entered;
    // Where the run is, as `dbops` and the Web UI ask for it, while the call is in flight.
    assert.match((await handle.query(progressQuery)).step, /^restoring .+ as /);
    await handle.cancel();
    await releaseWhenCancelHandled(handle);
    const error = await handle.result().then(
      () => assert.fail('the cancelled run completed'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof WorkflowFailedError && error.cause instanceof CancelledFailure, String(error));
    await hook.ended;
    assert.deepEqual(await stack.instanceIds(), [SOURCE], 'what the run created is gone');
  }

  it('snapshotRestore', async () => {
    await cancelInFlight(() =>
      stack.env.client.workflow.start(snapshotRestore, {
        taskQueue,
        workflowId: 'restore-cancel-snapshot',
        args: [
          {
            snapshotId,
            targetInstanceId: 'cancelled-snapshot-restore',
            timeouts: { pollInterval: '1 second' },
          },
        ],
      }),
    );
  });

  it('pitrRestore', async () => {
    await cancelInFlight(() =>
      stack.env.client.workflow.start(pitrRestore, {
        taskQueue,
        workflowId: 'restore-cancel-pitr',
        args: [
          {
            instanceId: SOURCE,
            restoreTime: 'latest',
            targetInstanceId: 'cancelled-pitr',
            timeouts: { pollInterval: '1 second' },
          },
        ],
      }),
    );
  });

  it('drTest', async () => {
    await cancelInFlight(() =>
      stack.env.client.workflow.start(drTest, {
        taskQueue,
        workflowId: 'restore-cancel-dr-test',
        args: [{ instanceId: SOURCE, timeouts: { pollInterval: '1 second' } }],
      }),
    );
  });
});
