import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { projectRoot } from '../../activities/config-types';
import type { BackupResult } from '../../workflows/backup';
import type { RestoreResult } from '../../workflows/pitr-restore';
import { startRecoveryStack, type RecoveryStack } from '../helpers/recovery';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

const SOURCE = 'cli-src';

describe('dbops backup / restore / dr-test (dev server, worker, local provider on real clusters)', function () {
  this.timeout(300_000);
  let stack: RecoveryStack;

  /** `bin/dbops ...args` as a user runs it, against the suite's Temporal server, queue and state. */
  function dbops(...args: string[]): Promise<Run> {
    return new Promise((resolve) => {
      execFile(
        path.join(projectRoot, 'bin', 'dbops'),
        args,
        {
          env: {
            ...process.env,
            TEMPORAL_ADDRESS: stack.env.address,
            DBOPS_TASK_QUEUE: stack.taskQueue,
            DBOPS_STATE_DIR: stack.stateDir,
            DBOPS_PROVIDER: 'local',
          },
        },
        (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, stdout, stderr }),
      );
    });
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

  it('refuses ambiguous or invalid restore arguments with exit 2, creating nothing', async () => {
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
    assert.deepEqual(await stack.instanceIds(), [SOURCE]);
  });
});
