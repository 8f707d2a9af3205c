import assert from 'node:assert/strict';

import { ApplicationFailure, CancelledFailure, WorkflowFailedError } from '@temporalio/client';
import { Client } from 'pg';

import type { Endpoint } from '../../activities/control-plane/control-plane';
import { backup, snapshotRestore } from '../../workflows';
import { startRecoveryStack, waitForInstances, type RecoveryStack } from '../helpers/recovery';

const SOURCE = 'snap-src';
const fast = { pollInterval: '1 second' };

async function conversationTitles(endpoint: Endpoint): Promise<string[]> {
  const client = new Client({ ...endpoint });
  await client.connect();
  try {
    return (await client.query<{ title: string }>('SELECT title FROM conversations ORDER BY id')).rows.map(
      (row) => row.title,
    );
  } finally {
    await client.end();
  }
}

describe('snapshotRestore workflow (dev server, local provider on real clusters)', function () {
  this.timeout(300_000);
  let stack: RecoveryStack;
  let snapshotId: string;
  let atSnapshot: string[];
  let runs = 0;

  before(async () => {
    stack = await startRecoveryStack({
      name: 'snapshot-restore',
      sourceInstanceId: SOURCE,
      conversations: 30,
      chunksPerConversation: 1,
    });
    snapshotId = (
      await stack.env.client.workflow.execute(backup, {
        taskQueue: stack.taskQueue,
        workflowId: 'snapshot-restore-suite-backup',
        args: [{ instanceId: SOURCE, timeouts: fast }],
      })
    ).snapshotId;
    atSnapshot = await conversationTitles(stack.source.endpoint);
    const client = new Client({ ...stack.source.endpoint });
    await client.connect();
    await client.query(`INSERT INTO conversations (user_id, title) VALUES (1, 'after the snapshot')`);
    await client.end();
  });
  after(async () => {
    await stack?.teardown();
  });

  function start(input: Record<string, unknown>) {
    return stack.env.client.workflow.start(snapshotRestore, {
      taskQueue: stack.taskQueue,
      workflowId: `snapshot-restore-${SOURCE}-${++runs}`,
      args: [input as never],
    });
  }

  async function failureOf(promise: Promise<unknown>): Promise<WorkflowFailedError> {
    const error = await promise.then(
      () => assert.fail('the workflow succeeded'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof WorkflowFailedError, String(error));
    return error;
  }

  it('restores the snapshot as a new instance with exactly the rows at snapshot time', async () => {
    const result = await (await start({ snapshotId, instanceId: SOURCE, timeouts: fast })).result();
    assert.equal(result.sourceInstanceId, SOURCE);
    assert.match(result.targetInstanceId, new RegExp(`^${SOURCE}-restore-\\d{8}-\\d{6}$`));
    assert.equal(result.restoredTo, (await stack.plane.describeSnapshot(snapshotId)).createdAt);
    assert.deepEqual(await conversationTitles(result.endpoint), atSnapshot);
    assert.equal(atSnapshot.length, 30);
    await stack.plane.deleteInstance(result.targetInstanceId, { skipFinalSnapshot: true });
  });

  it('deletes the new instance when cancelled mid-restore', async () => {
    const handle = await start({
      snapshotId,
      targetInstanceId: 'snap-cancelled',
      timeouts: { pollInterval: '1 minute' },
    });
    await waitForInstances(
      stack.plane,
      (list) => list.some((i) => i.instanceId === 'snap-cancelled'),
      'the restore to be requested',
    );
    await handle.cancel();
    const failure = await failureOf(handle.result());
    assert.ok(failure.cause instanceof CancelledFailure, String(failure.cause));
    assert.deepEqual(await stack.instanceIds(), [SOURCE]);
  });

  it('refuses an unknown snapshot, a snapshot of another instance and bad ids, creating nothing', async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ snapshotId: 'no-such-snapshot' }, 'NotFoundError', /snapshot no-such-snapshot not found/],
      [
        { snapshotId, instanceId: 'other-instance' },
        'InvalidInputError',
        new RegExp(
          `^snapshotId ${snapshotId} is a snapshot of instance ${SOURCE}, not of instanceId other-instance$`,
        ),
      ],
      [{ snapshotId: 'bad_id' }, 'InvalidInputError', /^snapshotId "bad_id" is not valid/],
      [
        { snapshotId, targetInstanceId: '9lives' },
        'InvalidInputError',
        /^targetInstanceId "9lives" is not valid/,
      ],
    ];
    for (const [input, type, message] of cases) {
      const failure = await failureOf((await start(input)).result());
      let cause: unknown = failure.cause;
      while (cause instanceof Error && cause.cause instanceof Error) cause = cause.cause;
      assert.ok(cause instanceof ApplicationFailure, `${JSON.stringify(input)}: ${String(cause)}`);
      assert.equal(cause.type, type, JSON.stringify(input));
      assert.match(cause.message, message, JSON.stringify(input));
    }
    assert.deepEqual(await stack.instanceIds(), [SOURCE]);
  });
});
