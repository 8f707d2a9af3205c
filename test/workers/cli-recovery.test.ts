import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { drTest } from '../../workflows';
import type { BackupResult } from '../../workflows/backup';
import type { DrTestReport } from '../../workflows/lib/recovery';
import { DbopsInstance, DbopsOperation } from '../../workflows/lib/search-attributes';
import type { RestoreResult } from '../../workflows/pitr-restore';
import { runDbops, type CliRun } from '../helpers/cli';
import { startRecoveryStack, type RecoveryStack } from '../helpers/recovery';

const SOURCE = 'cli-src';

describe('dbops backup / restore / dr-test (dev server, worker, local provider on real clusters)', function () {
  this.timeout(300_000);
  let stack: RecoveryStack;

  /** `bin/dbops ...args` as a user runs it, against the suite's Temporal server, queue and state. */
  function dbops(...args: string[]): Promise<CliRun> {
    return runDbops(
      { address: stack.env.address, taskQueue: stack.taskQueue, stateDir: stack.stateDir },
      args,
    );
  }

  before(async () => {
    stack = await startRecoveryStack({
      name: 'cli-recovery',
      sourceInstanceId: SOURCE,
      conversations: 200,
      chunksPerConversation: 2,
    });
  });
  after(async () => {
    await stack?.teardown();
  });

  it('backup --json prints only the result, and the snapshot exists', async () => {
    const run = await dbops('backup', '--instance', SOURCE, '--json');
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as BackupResult;
    assert.equal((await stack.plane.describeSnapshot(result.snapshotId)).status, 'available');
  });

  it('dr-test shows progress, prints every check and where the report is, exits 0', async () => {
    const run = await dbops('dr-test', '--instance', SOURCE);
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stderr, new RegExp(`^started dr-test-${SOURCE}-\\d{8}$`, 'm'));
    assert.match(run.stdout, /^recall:conversations_embedding_idx +passed +recall@10/m);
    assert.match(run.stdout, new RegExp(`DR test of ${SOURCE}: PASSED`));
    const reports = [...run.stdout.matchAll(/^ {2}report: (file:\/\/\S+)$/gm)].map((m) => m[1]!);
    assert.equal(reports.length, 2, run.stdout);
    for (const report of reports) await access(fileURLToPath(report));
    assert.deepEqual(await stack.instanceIds(), [SOURCE]);
  });

  it('restore --to latest --target restores a new instance and prints its endpoint', async () => {
    const run = await dbops(
      'restore',
      '--instance',
      SOURCE,
      '--to',
      'latest',
      '--target',
      'cli-restored',
      '--json',
    );
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as RestoreResult;
    assert.equal(result.targetInstanceId, 'cli-restored');
    assert.equal((await stack.plane.describeInstance('cli-restored')).status, 'available');
    await stack.plane.deleteInstance('cli-restored', { skipFinalSnapshot: true });
  });

  it('a dr-test requested while the scheduled test of the instance runs joins it: one run, its report', async () => {
    // As the schedule starts it: its own id (with the schedule's time stamp), the search attributes set.
    const scheduled = await stack.env.client.workflow.start(drTest, {
      taskQueue: stack.taskQueue,
      workflowId: `dbops-dr-test-${SOURCE}-2026-12-01T06:00:00Z`,
      args: [{ instanceId: SOURCE, timeouts: { pollInterval: '1 second' } }],
      typedSearchAttributes: [
        { key: DbopsInstance, value: SOURCE },
        { key: DbopsOperation, value: 'drTest' },
      ],
    });
    const query = `WorkflowType = 'drTest' AND ExecutionStatus = 'Running' AND DbopsInstance = '${SOURCE}'`;
    while ((await stack.env.client.workflow.count(query)).count === 0) await sleep(200);
    const [joined, alsoJoined] = await Promise.all([
      dbops('dr-test', '--instance', SOURCE),
      dbops('dr-test', '--instance', SOURCE, '--json'),
    ]);
    assert.equal(joined.code, 0, `${joined.stdout}\n${joined.stderr}`);
    assert.match(joined.stderr, new RegExp(`^joined ${scheduled.workflowId}, running since `, 'm'));
    assert.match(joined.stdout, new RegExp(`DR test of ${SOURCE}: PASSED`));
    assert.equal(alsoJoined.code, 0, alsoJoined.stderr);
    const report = JSON.parse(alsoJoined.stdout) as DrTestReport;
    assert.equal(report.workflowId, scheduled.workflowId);
    assert.equal((await scheduled.describe()).status.name, 'COMPLETED');
  });

  it('two dr-tests requested at once run as one', async () => {
    const runs = await Promise.all([1, 2].map(() => dbops('dr-test', '--instance', SOURCE, '--json')));
    for (const run of runs) assert.equal(run.code, 0, run.stderr);
    const [first, second] = runs.map((run) => JSON.parse(run.stdout) as DrTestReport);
    assert.match(first!.workflowId, new RegExp(`^dr-test-${SOURCE}-\\d{8}$`));
    assert.deepEqual(second, first);
  });

  it('a restore to a named target requested twice at once restores once; both get its endpoint', async () => {
    const { snapshotId } = JSON.parse(
      (await dbops('backup', '--instance', SOURCE, '--json')).stdout,
    ) as BackupResult;
    const runs = await Promise.all(
      [1, 2].map(() => dbops('restore', '--snapshot', snapshotId, '--target', 'cli-twice', '--json')),
    );
    for (const run of runs) assert.equal(run.code, 0, run.stderr);
    const [first, second] = runs.map((run) => JSON.parse(run.stdout) as RestoreResult);
    assert.equal(first!.targetInstanceId, 'cli-twice');
    assert.deepEqual(second, first);
    await stack.plane.deleteInstance('cli-twice', { skipFinalSnapshot: true });
  });

  it('two backups requested at once both succeed', async () => {
    const runs = await Promise.all([1, 2].map(() => dbops('backup', '--instance', SOURCE, '--json')));
    for (const run of runs) {
      assert.equal(run.code, 0, run.stderr);
      const { snapshotId } = JSON.parse(run.stdout) as BackupResult;
      assert.equal((await stack.plane.describeSnapshot(snapshotId)).status, 'available');
      // Named with its run's own stamp, not the server's start time: requests a second apart are
      // runs of their own and can never meet on one snapshot name.
      const stamp = snapshotId.slice(`${SOURCE}-manual-`.length);
      await stack.env.client.workflow.getHandle(`backup-${SOURCE}-${stamp}`).describe();
    }
  });

  it('refuses ambiguous or invalid restore arguments with exit 2, and a dr-test point outside the window, creating nothing', async () => {
    const ambiguous = await dbops('restore', '--instance', SOURCE, '--to', 'latest', '--snapshot', 'x');
    assert.equal(ambiguous.code, 2);
    assert.match(ambiguous.stderr, /give exactly one of --to <ISO-8601\|latest> or --snapshot SNAPSHOT/);
    const noSource = await dbops('restore', '--to', 'latest');
    assert.equal(noSource.code, 2);
    assert.match(noSource.stderr, /--instance ID is required \(the instance to restore from\)/);
    const badTime = await dbops('restore', '--instance', SOURCE, '--to', 'yesterday');
    assert.equal(badTime.code, 2, badTime.stderr);
    assert.match(badTime.stderr, /restoreTime "yesterday" is not valid: an ISO-8601 time with a zone/);
    const missing = await dbops('dr-test');
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /dbops dr-test: --instance ID is required/);
    const outside = await dbops('dr-test', '--instance', SOURCE, '--point-in-time', '2020-01-01T00:00:00Z');
    assert.equal(outside.code, 1, outside.stderr);
    assert.match(
      outside.stderr,
      new RegExp(
        `pointInTime 2020-01-01T00:00:00\\.000Z is outside the restorable window of instance ${SOURCE}: \\S+ to \\S+; nothing was changed`,
      ),
    );
    assert.deepEqual(await stack.instanceIds(), [SOURCE]);
  });
});
