import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { ApplicationFailure, WorkflowFailedError } from '@temporalio/client';

import { backup, healthCheck } from '../../workflows';
import { progressQuery } from '../../workflows/lib/recovery';
import { metricsUrl } from '../helpers/metrics-runtime';
import { startRecoveryStack, type RecoveryStack } from '../helpers/recovery';

const SOURCE = 'backup-src';
const fast = { pollInterval: '1 second' };

describe('backup workflow (dev server, local provider on real clusters)', function () {
  this.timeout(300_000);
  let stack: RecoveryStack;
  let runs = 0;

  before(async () => {
    stack = await startRecoveryStack({
      name: 'backup',
      sourceInstanceId: SOURCE,
      conversations: 50,
      chunksPerConversation: 1,
    });
  });
  after(async () => {
    await stack?.teardown();
  });

  function start(input: Record<string, unknown>) {
    return stack.env.client.workflow.start(backup, {
      taskQueue: stack.taskQueue,
      workflowId: `backup-${SOURCE}-${++runs}`,
      args: [input as never],
    });
  }

  async function snapshotIds(): Promise<string[]> {
    return (await stack.plane.listSnapshots(SOURCE)).map((s) => s.snapshotId).sort();
  }

  it('takes a manual snapshot named <instance>-manual-<UTC stamp>, waits until it is available', async () => {
    const handle = await start({ instanceId: SOURCE, timeouts: fast });
    const result = await handle.result();
    assert.match(result.snapshotId, new RegExp(`^${SOURCE}-manual-\\d{8}-\\d{6}$`));
    const snapshot = await stack.plane.describeSnapshot(result.snapshotId);
    assert.equal(snapshot.status, 'available');
    assert.equal(snapshot.type, 'manual');
    assert.equal(result.snapshotCreatedAt, snapshot.createdAt);
    assert.equal(result.sizeBytes, snapshot.sizeBytes);
    assert.ok(result.sizeBytes > 1_000_000, `size ${result.sizeBytes}`);
    assert.ok(result.snapshotSeconds! > 0);
    assert.equal(result.export, null);
    // The snapshot recorded the seeded rows: what a DR test compares against later.
    assert.equal(snapshot.tableRowCounts?.['mcp_db.public.conversations'], 50);
    const progress = await handle.query(progressQuery);
    assert.equal(progress.operation, 'backup');
    assert.match(progress.step, /available \(100%\)$/);
  });

  it('exports the snapshot when asked and waits for the export to complete', async () => {
    const result = await start({
      instanceId: SOURCE,
      snapshotId: 'backup-src-with-export',
      export: true,
      timeouts: fast,
    }).then((handle) => handle.result());
    assert.equal(result.snapshotId, 'backup-src-with-export');
    assert.equal(result.export?.exportId, 'backup-src-with-export-export');
    assert.equal(result.export?.status, 'complete');
    assert.match(
      result.export.destination,
      /^file:\/\/.*\/buckets\/dbops-exports\/exports\/backup-src\/backup-src-with-export-export$/,
    );
    const files = await readdir(fileURLToPath(result.export.destination));
    assert.ok(files.includes('manifest.json'), files.join(', '));
  });

  it('refuses bad input naming the field, and an unknown instance, with no snapshot created', async () => {
    const before = await snapshotIds();
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ instanceId: 'backup_src' }, 'InvalidInputError', /^instanceId "backup_src" is not valid/],
      [{ instanceId: SOURCE, snapshotId: 'x_1' }, 'InvalidInputError', /^snapshotId "x_1" is not valid/],
      [
        { instanceId: SOURCE, export: 'yes' },
        'InvalidInputError',
        /^export "yes" is not valid: true, false or/,
      ],
      [
        { instanceId: SOURCE, export: { bucket: '' } },
        'InvalidInputError',
        /^export\.bucket "" is not valid/,
      ],
      [
        { instanceId: SOURCE, timeouts: { snapshot: 10 } },
        'InvalidInputError',
        /^timeouts\.snapshot 10 is not valid/,
      ],
      [{ instanceId: 'no-such-instance' }, 'NotFoundError', /instance no-such-instance not found/],
    ];
    for (const [input, type, message] of cases) {
      const error = await (await start(input)).result().then(
        () => assert.fail(`${JSON.stringify(input)} succeeded`),
        (e: unknown) => e,
      );
      assert.ok(error instanceof WorkflowFailedError, String(error));
      // An activity's failure is the cause of the ActivityFailure the workflow failed with.
      let cause: unknown = error.cause;
      while (cause instanceof Error && cause.cause instanceof Error) cause = cause.cause;
      assert.ok(cause instanceof ApplicationFailure, `${JSON.stringify(input)}: ${String(cause)}`);
      assert.equal(cause.type, type, JSON.stringify(input));
      assert.match(cause.message, message, JSON.stringify(input));
    }
    assert.deepEqual(await snapshotIds(), before);
  });

  it('a health check of the instance sets the gauges the recoverability alerts read; after a backup, the next one moves them', async () => {
    const gauges = async () => {
      const text = await (await fetch(metricsUrl())).text();
      const value = (name: string) => {
        const line = text
          .split('\n')
          .find((l) => l.startsWith(`${name}{`) && l.includes(`instance_id="${SOURCE}"`));
        return line === undefined ? undefined : Number(line.split(' ').pop());
      };
      return {
        snapshot: value('dbops_newest_snapshot_timestamp_seconds'),
        recoveryPoint: value('dbops_recovery_point_timestamp_seconds'),
        backup: value('dbops_backup_last_success_timestamp_seconds'),
      };
    };
    const check = () =>
      stack.env.client.workflow.execute(healthCheck, {
        taskQueue: stack.taskQueue,
        workflowId: `health-check-${SOURCE}-${++runs}`,
        args: [{ instanceId: SOURCE }],
      });
    const seconds = (time: string | null | undefined) => Date.parse(time!) / 1000;

    const first = (await check()).recoverability!;
    const newest = (await stack.plane.listSnapshots(SOURCE)).find((s) => s.status === 'available')!;
    assert.equal(first.newestAvailableSnapshot?.snapshotId, newest.snapshotId);
    const before = await gauges();
    assert.equal(before.snapshot, seconds(newest.createdAt));
    assert.equal(
      before.recoveryPoint,
      Math.max(seconds(first.latestRestorableTime), seconds(newest.createdAt)),
    );

    const taken = await (await start({ instanceId: SOURCE, timeouts: fast })).result();
    const second = (await check()).recoverability!;
    assert.equal(second.newestAvailableSnapshot?.snapshotId, taken.snapshotId);
    const after = await gauges();
    assert.equal(after.snapshot, seconds(taken.snapshotCreatedAt));
    assert.ok(after.snapshot > before.snapshot, 'the snapshot gauge moved to the backup');
    assert.ok(after.recoveryPoint! >= after.snapshot, 'the recovery point is at least the snapshot');
    assert.ok(after.backup! >= after.snapshot, 'the backup recorded its success');
  });
});
