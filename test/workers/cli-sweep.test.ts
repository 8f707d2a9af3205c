import assert from 'node:assert/strict';

import type { WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';

import { drTest } from '../../workflows';
import { OWNER_TAGS } from '../../workflows/lib/owner-tags';
import type { SweepReport } from '../../workflows/sweep-orphans';
import { runDbops, type CliRun } from '../helpers/cli';
import { startRecoveryStack, type RecoveryStack } from '../helpers/recovery';

const SOURCE = 'cli-sweep-src';

describe('dbops sweep (dev server, worker, local provider on real clusters)', function () {
  this.timeout(300_000);
  let stack: RecoveryStack;
  let crashed: WorkflowHandleWithFirstExecutionRunId;
  let running: WorkflowHandleWithFirstExecutionRunId;

  /** `bin/dbops ...args` as a user runs it, against the suite's Temporal server, queue and state. */
  function dbops(...args: string[]): Promise<CliRun> {
    return runDbops(
      { address: stack.env.address, taskQueue: stack.taskQueue, stateDir: stack.stateDir },
      args,
    );
  }

  /** A real owning run that stays open: no worker polls its queue. */
  function startOwner(id: string): Promise<WorkflowHandleWithFirstExecutionRunId> {
    return stack.env.client.workflow.start(drTest, {
      taskQueue: 'cli-sweep-nobody-polls',
      workflowId: id,
      args: [{ instanceId: SOURCE }],
    });
  }

  const tagsOf = (owner: WorkflowHandleWithFirstExecutionRunId, purpose: string) => ({
    [OWNER_TAGS.workflowId]: owner.workflowId,
    [OWNER_TAGS.runId]: owner.firstExecutionRunId,
    [OWNER_TAGS.purpose]: purpose,
  });

  before(async () => {
    stack = await startRecoveryStack({
      name: 'cli-sweep',
      sourceInstanceId: SOURCE,
      conversations: 10,
      chunksPerConversation: 1,
    });
    crashed = await startOwner('cli-sweep-crashed-dr-test');
    await crashed.terminate('simulated crash: no cleanup runs');
    running = await startOwner('cli-sweep-running-restore');
    await stack.plane.createInstance('cli-sweep-orphan', { tags: tagsOf(crashed, 'dr-test') });
    await stack.plane.createInstance('cli-sweep-in-use', { tags: tagsOf(running, 'restore') });
  });
  after(async () => {
    await running?.terminate().catch(() => undefined);
    await stack?.teardown();
  });

  it('--dry-run prints a line per instance with what it would do and why, and deletes nothing', async () => {
    const run = await dbops('sweep', '--dry-run');
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stderr, /^started sweep-orphans-\d{8}-\d{6}$/m);
    const owner = (handle: WorkflowHandleWithFirstExecutionRunId) =>
      `owner ${handle.workflowId} \\(run ${handle.firstExecutionRunId}\\)`;
    assert.match(run.stdout, /^INSTANCE +ACTION +REASON$/m);
    assert.match(
      run.stdout,
      new RegExp(`^cli-sweep-orphan +would remove +DR copy whose ${owner(crashed)} terminated$`, 'm'),
    );
    assert.match(run.stdout, new RegExp(`^cli-sweep-in-use +kept +${owner(running)} is running$`, 'm'));
    assert.match(run.stdout, /^dry run: sweep would remove 1 orphan \(cli-sweep-orphan\), kept 1$/m);
    assert.deepEqual(await stack.instanceIds(), ['cli-sweep-in-use', 'cli-sweep-orphan', SOURCE]);
  });

  it('--json prints only the report; the orphan is gone, the instance in use stays', async () => {
    const run = await dbops('sweep', '--json');
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout) as SweepReport;
    assert.equal(report.dryRun, false);
    assert.deepEqual(
      [report.removed, report.kept, report.failed].map((list) => list.map((i) => i.instanceId)),
      [['cli-sweep-orphan'], ['cli-sweep-in-use'], []],
    );
    assert.deepEqual(await stack.instanceIds(), ['cli-sweep-in-use', SOURCE]);
  });

  it('with nothing left to remove, says so in the summary line', async () => {
    const run = await dbops('sweep');
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^cli-sweep-in-use +kept +owner /m);
    assert.match(run.stdout, /^sweep removed 0 orphans, kept 1$/m);
  });

  it('refuses an unknown flag (exit 2) and deletes nothing', async () => {
    const run = await dbops('sweep', '--dryrun');
    assert.equal(run.code, 2);
    assert.match(run.stderr, /^dbops sweep: Unknown option '--dryrun'/);
    assert.deepEqual(await stack.instanceIds(), ['cli-sweep-in-use', SOURCE]);
  });
});
