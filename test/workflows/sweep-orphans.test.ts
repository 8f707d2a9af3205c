import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

import {
  ApplicationFailure,
  WorkflowFailedError,
  type WorkflowHandle,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';

import { backup, drTest, snapshotRestore, sweepOrphans } from '../../workflows';
import { OWNER_TAGS } from '../../workflows/lib/owner-tags';
import type { SweepReport, SweptInstance } from '../../workflows/sweep-orphans';
import { requireTool } from '../../workers/tools';
import { startRecoveryStack, waitForInstances, type RecoveryStack } from '../helpers/recovery';

const execFileAsync = promisify(execFile);
const SOURCE = 'sweep-src';
const fast = { pollInterval: '1 second' };
/** Long enough that a run sits in its wait for the copy while the test looks at it. */
const slow = { pollInterval: '1 minute' };

describe('sweepOrphans workflow (dev server, local provider on real clusters)', function () {
  this.timeout(300_000);
  let stack: RecoveryStack;
  let snapshotId: string;
  let runs = 0;

  before(async () => {
    stack = await startRecoveryStack({
      name: 'sweep',
      sourceInstanceId: SOURCE,
      conversations: 50,
      chunksPerConversation: 1,
    });
    const taken = await stack.env.client.workflow.execute(backup, {
      taskQueue: stack.taskQueue,
      workflowId: 'sweep-suite-backup',
      args: [{ instanceId: SOURCE, timeouts: fast }],
    });
    snapshotId = taken.snapshotId;
  });
  after(async () => {
    await stack?.teardown();
  });

  const client = () => stack.env.client.workflow;

  function sweep(input: Record<string, unknown> = {}): Promise<SweepReport> {
    return client().execute(sweepOrphans, {
      taskQueue: stack.taskQueue,
      workflowId: `sweep-${++runs}`,
      args: [{ timeouts: fast, ...input }],
    });
  }

  function startDrTest(): Promise<WorkflowHandleWithFirstExecutionRunId<typeof drTest>> {
    return client().start(drTest, {
      taskQueue: stack.taskQueue,
      workflowId: `sweep-dr-test-${++runs}`,
      args: [{ instanceId: SOURCE, timeouts: slow }],
    });
  }

  /** Waits until the provider lists an instance whose id starts with `prefix`; returns its id. */
  async function appeared(prefix: string): Promise<string> {
    const instances = await waitForInstances(
      stack.plane,
      (list) => list.some((i) => i.instanceId.startsWith(prefix)),
      `an instance ${prefix}*`,
    );
    return instances.find((i) => i.instanceId.startsWith(prefix))!.instanceId;
  }

  /** The owner tags a run of `handle` puts on what it creates. */
  function ownerOf(handle: WorkflowHandleWithFirstExecutionRunId): Record<string, string> {
    return { [OWNER_TAGS.workflowId]: handle.workflowId, [OWNER_TAGS.runId]: handle.firstExecutionRunId };
  }

  const run = (handle: WorkflowHandleWithFirstExecutionRunId) =>
    `owner ${handle.workflowId} \\(run ${handle.firstExecutionRunId}\\)`;

  /** Instance id and reason of each entry: what `dbops sweep` prints. */
  const lines = (list: SweptInstance[]) => list.map((i) => [i.instanceId, i.reason]);

  async function failed(handle: WorkflowHandle): Promise<void> {
    await handle.result().then(
      () => assert.fail(`${handle.workflowId} succeeded`),
      (error: unknown) => assert.ok(error instanceof WorkflowFailedError, String(error)),
    );
  }

  it('removes the copy of a terminated drTest, after a dry run that lists it and deletes nothing', async () => {
    const crashed = await startDrTest();
    const copy = await appeared(`${SOURCE}-dr-test-`);
    await crashed.terminate('simulated crash: no cleanup runs');
    assert.deepEqual(await stack.instanceIds(), [copy, SOURCE].sort());

    // Started as the docs show it, with the temporal CLI.
    const dryRunId = `sweep-dry-${++runs}`;
    await execFileAsync(requireTool('temporal'), [
      ...['workflow', 'start', '--type', 'sweepOrphans', '--task-queue', stack.taskQueue],
      ...['--workflow-id', dryRunId, '--address', stack.env.address, '--namespace', 'default'],
      ...['--input', JSON.stringify({ dryRun: true })],
    ]);
    const dry = (await client().getHandle(dryRunId).result()) as SweepReport;
    assert.equal(dry.dryRun, true);
    assert.deepEqual(lines(dry.removed), [[copy, dry.removed[0]?.reason]]);
    assert.match(dry.removed[0]!.reason, new RegExp(`^DR copy whose ${run(crashed)} terminated$`));
    assert.deepEqual(dry.removed[0]!.owner, {
      workflowId: crashed.workflowId,
      runId: crashed.firstExecutionRunId,
    });
    assert.equal(dry.removed[0]!.ownerStatus, 'TERMINATED');
    assert.deepEqual([dry.kept, dry.failed], [[], []]);
    assert.deepEqual(await stack.instanceIds(), [copy, SOURCE].sort(), 'the dry run deleted nothing');

    const report = await sweep();
    assert.equal(report.dryRun, false);
    assert.deepEqual(report.removed, dry.removed);
    assert.deepEqual([report.kept, report.failed], [[], []]);
    assert.deepEqual(await stack.instanceIds(), [SOURCE]);
    const progress = await client().getHandle(report.workflowId).query<{ step: string }>('progress');
    assert.equal(progress.step, 'done');
  });

  it('leaves a copy tagged dbops:keep=true and a copy whose owner still runs', async () => {
    // A real closed owner for the kept copy: a drTest refused at once for bad input.
    const refused = await client().start(drTest, {
      taskQueue: stack.taskQueue,
      workflowId: `sweep-refused-${++runs}`,
      args: [{ instanceId: 'Not_An_Id' }],
    });
    await failed(refused);
    await stack.plane.createInstance('sweep-kept-copy', {
      tags: { ...ownerOf(refused), [OWNER_TAGS.purpose]: 'dr-test', [OWNER_TAGS.keep]: 'true' },
    });
    const running = await startDrTest();
    const copy = await appeared(`${SOURCE}-dr-test-`);
    try {
      const report = await sweep();
      assert.deepEqual(report.removed, []);
      assert.deepEqual(
        lines(report.kept).map(([id]) => id),
        [copy, 'sweep-kept-copy'].sort(),
      );
      const byId = new Map(report.kept.map((i) => [i.instanceId, i]));
      assert.equal(byId.get('sweep-kept-copy')!.reason, 'tagged dbops:keep=true');
      assert.match(byId.get(copy)!.reason, new RegExp(`^${run(running)} is running$`));
      assert.deepEqual(await stack.instanceIds(), [copy, SOURCE, 'sweep-kept-copy'].sort());
    } finally {
      await running.cancel();
      await failed(running);
      await stack.plane.deleteInstance('sweep-kept-copy', { skipFinalSnapshot: true });
    }
    assert.deepEqual(await stack.instanceIds(), [SOURCE]);
  });

  it("leaves a completed restore's instance and a failed one's, removes a terminated one's, ignores untagged ones", async () => {
    const completed = await client().start(snapshotRestore, {
      taskQueue: stack.taskQueue,
      workflowId: `sweep-restore-${++runs}`,
      args: [{ snapshotId, targetInstanceId: 'sweep-restored', timeouts: fast }],
    });
    await completed.result();
    // A restore that failed after its create: what it leaves is kept for inspection.
    const failedRestore = await client().start(snapshotRestore, {
      taskQueue: stack.taskQueue,
      workflowId: `sweep-restore-${++runs}`,
      args: [{ snapshotId: 'no-such-snapshot', targetInstanceId: 'sweep-failed-restore' }],
    });
    await failed(failedRestore);
    await stack.plane.createInstance('sweep-failed-restore', {
      tags: { ...ownerOf(failedRestore), [OWNER_TAGS.purpose]: 'restore' },
    });
    // Our purpose without an owner: nobody to ask, so never touched.
    await stack.plane.createInstance('sweep-ownerless', { tags: { [OWNER_TAGS.purpose]: 'restore' } });
    const terminated = await client().start(snapshotRestore, {
      taskQueue: stack.taskQueue,
      workflowId: `sweep-restore-${++runs}`,
      args: [{ snapshotId, targetInstanceId: 'sweep-terminated-restore', timeouts: slow }],
    });
    await appeared('sweep-terminated-restore');
    await terminated.terminate('simulated crash mid-create');

    const report = await sweep();
    assert.deepEqual(lines(report.removed), [['sweep-terminated-restore', report.removed[0]?.reason]]);
    assert.match(
      report.removed[0]!.reason,
      new RegExp(`^restore target whose ${run(terminated)} terminated$`),
    );
    assert.deepEqual(
      lines(report.kept).map(([id]) => id),
      ['sweep-failed-restore', 'sweep-ownerless', 'sweep-restored'],
    );
    assert.match(report.kept[0]!.reason, new RegExp(`^${run(failedRestore)} failed: kept for inspection`));
    assert.match(report.kept[1]!.reason, /^no owner tags \(dbops:workflow-id and dbops:run-id\)/);
    assert.match(
      report.kept[2]!.reason,
      new RegExp(`^${run(completed)} completed: the instance is the restore's result$`),
    );
    assert.deepEqual(report.failed, []);
    assert.deepEqual(
      await stack.instanceIds(),
      [SOURCE, 'sweep-failed-restore', 'sweep-ownerless', 'sweep-restored'].sort(),
    );
    for (const id of ['sweep-failed-restore', 'sweep-ownerless', 'sweep-restored']) {
      await stack.plane.deleteInstance(id, { skipFinalSnapshot: true });
    }
  });

  it('keeps a copy whose run id tag is malformed, saying why, and still removes the orphan beside it', async () => {
    await stack.plane.createInstance('sweep-bad-run-id', {
      tags: {
        [OWNER_TAGS.workflowId]: 'sweep-dr-test-someone',
        [OWNER_TAGS.runId]: 'not-a-run-id',
        [OWNER_TAGS.purpose]: 'dr-test',
      },
    });
    const crashed = await startDrTest();
    const copy = await appeared(`${SOURCE}-dr-test-`);
    await crashed.terminate('simulated crash: no cleanup runs');

    const report = await sweep();
    assert.deepEqual(lines(report.removed), [[copy, report.removed[0]?.reason]]);
    assert.match(report.removed[0]!.reason, new RegExp(`^DR copy whose ${run(crashed)} terminated$`));
    assert.deepEqual(lines(report.kept), [['sweep-bad-run-id', report.kept[0]?.reason]]);
    assert.match(
      report.kept[0]!.reason,
      /^owner tags do not name a run Temporal knows: .*RunId.* \(dbops:workflow-id=sweep-dr-test-someone, dbops:run-id=not-a-run-id\)$/,
    );
    assert.equal(report.kept[0]!.ownerStatus, null);
    assert.deepEqual(report.failed, []);
    assert.deepEqual(await stack.instanceIds(), [SOURCE, 'sweep-bad-run-id'].sort());
    await stack.plane.deleteInstance('sweep-bad-run-id', { skipFinalSnapshot: true });
  });

  it("removes a deploy's rehearsal copy whose owner closed, as the sweeper and as a DR test of its source", async () => {
    // A real closed owner: a drTest refused at once for bad input.
    const closed = await client().start(drTest, {
      taskQueue: stack.taskQueue,
      workflowId: `sweep-closed-${++runs}`,
      args: [{ instanceId: 'Not_An_Id' }],
    });
    await failed(closed);
    const rehearsalCopy = (id: string) =>
      stack.plane.createInstance(id, {
        tags: { ...ownerOf(closed), [OWNER_TAGS.purpose]: 'rehearsal', [OWNER_TAGS.source]: SOURCE },
      });
    await rehearsalCopy(`${SOURCE}-rehearsal-0000000a`);
    const report = await sweep();
    assert.deepEqual(lines(report.removed), [[`${SOURCE}-rehearsal-0000000a`, report.removed[0]?.reason]]);
    assert.match(report.removed[0]!.reason, new RegExp(`^rehearsal copy whose ${run(closed)} failed$`));

    // A DR test of the source removes it first thing, before its own restore.
    await rehearsalCopy(`${SOURCE}-rehearsal-0000000b`);
    const test = await startDrTest();
    await waitForInstances(
      stack.plane,
      (list) => !list.some((i) => i.instanceId === `${SOURCE}-rehearsal-0000000b`),
      'the rehearsal copy to be removed by the DR test',
    );
    await test.cancel();
    await failed(test);
    assert.deepEqual(await stack.instanceIds(), [SOURCE]);
  });

  it('refuses bad input naming the field and rule, and deletes nothing', async () => {
    const crashed = await startDrTest();
    const copy = await appeared(`${SOURCE}-dr-test-`);
    await crashed.terminate('simulated crash: no cleanup runs');
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ dryRun: 'yes' }, /^dryRun "yes" is not valid: true or false$/],
      [{ dry: true }, /^unknown input field dry: expected only dryRun, timeouts$/],
      [{ timeouts: { deletion: 'never' } }, /^timeouts\.deletion "never" is not valid/],
    ];
    for (const [input, message] of cases) {
      const error = await sweep(input).then(
        () => assert.fail(`${JSON.stringify(input)} was accepted`),
        (e: unknown) => e,
      );
      assert.ok(
        error instanceof WorkflowFailedError && error.cause instanceof ApplicationFailure,
        String(error),
      );
      assert.equal(error.cause.type, 'InvalidInputError');
      assert.match(error.cause.message, message);
    }
    assert.deepEqual(await stack.instanceIds(), [copy, SOURCE].sort());
    assert.deepEqual(
      lines((await sweep()).removed).map(([id]) => id),
      [copy],
    );
  });
});
