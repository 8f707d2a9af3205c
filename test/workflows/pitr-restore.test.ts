import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

import { ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import { Client } from 'pg';

import type { Endpoint } from '../../activities/control-plane/control-plane';
import { backup, pitrRestore } from '../../workflows';
import { startRecoveryStack, type RecoveryStack } from '../helpers/recovery';

const SOURCE = 'pitr-src';
const fast = { pollInterval: '1 second' };

async function titles(endpoint: Endpoint, like: string): Promise<string[]> {
  const client = new Client({ ...endpoint });
  await client.connect();
  try {
    const { rows } = await client.query<{ title: string }>(
      'SELECT title FROM conversations WHERE title LIKE $1 ORDER BY id',
      [like],
    );
    return rows.map((row) => row.title);
  } finally {
    await client.end();
  }
}

describe('pitrRestore workflow (dev server, local provider on real clusters)', function () {
  this.timeout(300_000);
  let stack: RecoveryStack;
  let between: string;
  let runs = 0;

  before(async () => {
    stack = await startRecoveryStack({
      name: 'pitr',
      sourceInstanceId: SOURCE,
      conversations: 20,
      chunksPerConversation: 1,
    });
    await stack.env.client.workflow.execute(backup, {
      taskQueue: stack.taskQueue,
      workflowId: 'pitr-suite-backup',
      args: [{ instanceId: SOURCE, timeouts: fast }],
    });
    // T1 committed, then the target time, then T2 committed.
    const client = new Client({ ...stack.source.endpoint });
    await client.connect();
    try {
      await client.query(`INSERT INTO conversations (user_id, title) VALUES (1, 'marker T1')`);
      await sleep(1100);
      between = new Date().toISOString();
      await sleep(1100);
      await client.query(`INSERT INTO conversations (user_id, title) VALUES (1, 'marker T2')`);
    } finally {
      await client.end();
    }
  });
  after(async () => {
    await stack?.teardown();
  });

  function run(input: Record<string, unknown>) {
    return stack.env.client.workflow.execute(pitrRestore, {
      taskQueue: stack.taskQueue,
      workflowId: `pitr-restore-${SOURCE}-${++runs}`,
      args: [input as never],
    });
  }

  it('restores to a time between two commits: the earlier row is there, the later one is not', async () => {
    const result = await run({
      instanceId: SOURCE,
      restoreTime: between,
      targetInstanceId: 'pitr-at-time',
      timeouts: fast,
    });
    assert.equal(result.targetInstanceId, 'pitr-at-time');
    assert.equal(result.restoredTo, between);
    assert.deepEqual(await titles(result.endpoint, 'marker %'), ['marker T1']);
    assert.equal((await stack.plane.describeInstance(SOURCE)).status, 'available', 'the source is untouched');
    await stack.plane.deleteInstance('pitr-at-time', { skipFinalSnapshot: true });
  });

  it("restores to 'latest' with every commit, under a default target name", async () => {
    const result = await run({ instanceId: SOURCE, restoreTime: 'latest', timeouts: fast });
    assert.match(result.targetInstanceId, new RegExp(`^${SOURCE}-pitr-\\d{8}-\\d{6}$`));
    assert.deepEqual(await titles(result.endpoint, 'marker %'), ['marker T1', 'marker T2']);
    assert.ok(result.restoredTo! >= between);
    await stack.plane.deleteInstance(result.targetInstanceId, { skipFinalSnapshot: true });
  });

  it('refuses a time outside the restorable range, or bad input, before creating anything', async () => {
    const before = await stack.instanceIds();
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [
        { instanceId: SOURCE, restoreTime: '2020-01-01T00:00:00Z' },
        'RestoreTimeOutOfRangeError',
        /^restoreTime 2020-01-01T00:00:00\.000Z is outside the restorable range of instance pitr-src: \d{4}-.* to \d{4}-/,
      ],
      [
        { instanceId: SOURCE, restoreTime: '2999-01-01T00:00:00Z' },
        'RestoreTimeOutOfRangeError',
        /^restoreTime 2999-01-01T00:00:00\.000Z is outside the restorable range/,
      ],
      [
        { instanceId: SOURCE, restoreTime: 'yesterday' },
        'InvalidInputError',
        /^restoreTime "yesterday" is not valid: an ISO-8601 time with a zone/,
      ],
      [
        { instanceId: SOURCE, restoreTime: '2026-01-31T12:00:00' },
        'InvalidInputError',
        /^restoreTime "2026-01-31T12:00:00" is not valid/,
      ],
      [
        { instanceId: SOURCE, restoreTime: 'latest', targetInstanceId: SOURCE },
        'InvalidInputError',
        /^targetInstanceId must differ from instanceId pitr-src/,
      ],
      [
        { instanceId: SOURCE, restoreTime: 'latest', targetInstanceId: 'x--y' },
        'InvalidInputError',
        /^targetInstanceId "x--y" is not valid/,
      ],
    ];
    for (const [input, type, message] of cases) {
      const error = await run(input).then(
        () => assert.fail(`${JSON.stringify(input)} succeeded`),
        (e: unknown) => e,
      );
      assert.ok(error instanceof WorkflowFailedError, String(error));
      assert.ok(
        error.cause instanceof ApplicationFailure,
        `${JSON.stringify(input)}: ${String(error.cause)}`,
      );
      assert.equal(error.cause.type, type, JSON.stringify(input));
      assert.match(error.cause.message, message, JSON.stringify(input));
    }
    assert.deepEqual(await stack.instanceIds(), before);
  });
});
