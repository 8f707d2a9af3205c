/**
 * Waits of days on the time-skipping server, with stand-in control-plane activities (a mock: a
 * 48-hour RDS snapshot cannot run here; the stand-in answers by the server's clock). The looks
 * back off, the run continues as new when its history is long, the whole chain's history stays
 * small, and what the wait is about (the snapshot, the export, the restored instance, its owner)
 * carries over from run to run.
 */
import assert from 'node:assert/strict';

import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';

import type { Activities } from '../../../activities';
import type { ControlPlane, InstanceDescription } from '../../../activities/control-plane/control-plane';
import { createOrphanActivities } from '../../../activities/recovery/orphans';
import { backup, drTest, pitrRestore, snapshotRestore, sweepOrphans } from '../../../workflows';
import { OWNER_TAGS } from '../../../workflows/lib/owner-tags';
import { backupStandIns, HOUR, ORPHANS, runChain, sweepStandIns } from '../../helpers/long-waits';
import { createTimeSkippingEnv, workflowBundle } from '../../helpers/temporal';

/** The runs of a workflow's chain, first to last, with their event counts. */
async function chain(env: TestWorkflowEnvironment, handle: WorkflowHandle, firstRunId: string) {
  const histories = await runChain(env, handle.workflowId, firstRunId);
  return histories.map((history, i) => ({
    runId:
      i === 0
        ? firstRunId
        : (histories[i - 1]!.events?.at(-1)?.workflowExecutionContinuedAsNewEventAttributes
            ?.newExecutionRunId ?? ''),
    events: history.events?.length ?? 0,
  }));
}

describe('long waits on the time-skipping server (stand-in control-plane activities)', function () {
  this.timeout(300_000);
  let env: TestWorkflowEnvironment;
  let queues = 0;

  before(async () => {
    env = await createTimeSkippingEnv();
  });
  after(async () => {
    await env?.teardown();
  });

  async function worker(activities: Partial<Activities>) {
    const taskQueue = `long-wait-${++queues}`;
    return {
      taskQueue,
      worker: await Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowBundle: await workflowBundle(),
        activities,
      }),
    };
  }

  it('waits out a 48-hour snapshot and a 24-hour export in fewer than 5,000 events over the whole run chain', async () => {
    const calls: string[] = [];
    const activities = backupStandIns((call) => calls.push(call));
    const { taskQueue, worker: w } = await worker(activities);
    const started = Date.now();
    const { result, runs } = await w.runUntil(async () => {
      const handle = await env.client.workflow.start(backup, {
        taskQueue,
        workflowId: taskQueue,
        args: [
          { instanceId: 'huge-src', export: true, timeouts: { snapshot: '50 hours', export: '26 hours' } },
        ],
      });
      const result = await handle.result();
      return { result, runs: await chain(env, handle, handle.firstExecutionRunId) };
    });
    const total = runs.reduce((sum, run) => sum + run.events, 0);
    console.log(
      `      backup, 48 h snapshot + 24 h export: ${calls.filter((call) => call.startsWith('look')).length} looks, ${runs.length} runs of ` +
        `${runs.map((run) => run.events).join(' + ')} = ${total} events (in ${Date.now() - started} ms)`,
    );
    assert.ok(total < 5_000, `${total} events`);
    assert.ok(runs.length >= 2, 'the backup continued as new at least once');
    // One snapshot, one export, both of the same id in every run.
    assert.deepEqual(
      calls.filter((call) => !call.startsWith('look')),
      [`snapshot ${result.snapshotId}`, `export ${result.snapshotId} as ${result.snapshotId}-export`],
    );
    assert.deepEqual(
      new Set(calls.filter((call) => call.startsWith('look'))),
      new Set([`look at ${result.snapshotId}`, `look at ${result.snapshotId}-export`]),
    );
    assert.equal(result.export?.status, 'complete');
    assert.equal(result.sizeBytes, 20 * 2 ** 40);
    // The waits are measured across runs, and a finish is seen within a tenth of the wait.
    assert.ok(
      result.snapshotSeconds! >= 48 * 3600 && result.snapshotSeconds! <= 48 * 3600 * 1.1,
      `${result.snapshotSeconds}`,
    );
    assert.ok(result.export.exportSeconds! >= 24 * 3600 && result.export.exportSeconds! <= 24 * 3600 * 1.1);
  });

  /** The source of the restores: restorable through November. */
  const source: InstanceDescription = {
    instanceId: 'huge-src',
    status: 'available',
    providerStatus: 'available',
    endpoint: undefined,
    engineVersion: '15.7',
    earliestRestorableTime: '2026-11-01T00:00:00.000Z',
    latestRestorableTime: '2026-11-30T00:00:00.000Z',
    createdAt: undefined,
    multiAz: false,
    tags: {},
  };

  /**
   * A stand-in restored instance, `creating` until `readyAfter` (server time) has passed. The
   * server's clock is asked for: a DR test looks through local activities, whose schedule time is
   * the worker's.
   */
  function standInRestores(readyAfter: number) {
    let restoredAt = 0;
    let restored: InstanceDescription | null = null;
    const calls: string[] = [];
    const create = async (targetInstanceId: string, tags: Record<string, string>) => {
      calls.push(`restore ${targetInstanceId}`);
      restoredAt = await env.currentTimeMs();
      restored = {
        instanceId: targetInstanceId,
        status: 'creating',
        providerStatus: 'creating',
        endpoint: undefined,
        engineVersion: '15.7',
        earliestRestorableTime: undefined,
        latestRestorableTime: undefined,
        createdAt: undefined,
        multiAz: false,
        tags,
      };
      return restored;
    };
    const look = async () => {
      if (restored !== null && (await env.currentTimeMs()) >= restoredAt + readyAfter) {
        restored = {
          ...restored,
          status: 'available',
          providerStatus: 'available',
          endpoint: { host: '127.0.0.1', port: 1, database: 'mcp_db', user: 'postgres' },
        };
      }
      return restored;
    };
    const activities: Partial<Activities> = {
      describeSnapshot: (snapshotId) =>
        Promise.resolve({
          snapshotId,
          instanceId: 'huge-src',
          type: 'manual',
          status: 'available',
          createdAt: '2026-11-01T03:00:00.000Z',
          percentProgress: 100,
          sizeBytes: 1024,
          engineVersion: '15.7',
          tableRowCounts: undefined,
          tableContentHashes: undefined,
          tags: {},
        }),
      restoreFromSnapshot: (_snapshotId, targetInstanceId, tags = {}) => create(targetInstanceId, tags),
      restoreToPointInTime: (_source, targetInstanceId, _to, tags = {}) => create(targetInstanceId, tags),
      describeInstance: async (instanceId) => (instanceId === 'huge-src' ? source : (await look())!),
      findInstance: async (instanceId) => (instanceId === 'huge-src' ? source : look()),
      deleteInstance: (instanceId) => {
        calls.push(`delete ${instanceId}`);
        restored = null;
        return Promise.resolve();
      },
    };
    return {
      activities,
      calls,
      tags: () => restored?.tags,
      instances: () => (restored === null ? [] : [restored]),
    };
  }

  it('a point-in-time restore waiting 12 hours continues as new and returns the instance it requested', async () => {
    const stand = standInRestores(12 * HOUR);
    const { taskQueue, worker: w } = await worker(stand.activities);
    const { result, runs } = await w.runUntil(async () => {
      const handle = await env.client.workflow.start(pitrRestore, {
        taskQueue,
        workflowId: taskQueue,
        args: [
          {
            instanceId: 'huge-src',
            restoreTime: '2026-11-20T12:00:00Z',
            timeouts: { restore: '1 day', maxPollInterval: '2 minutes' },
          },
        ],
      });
      const result = await handle.result();
      return { result, runs: await chain(env, handle, handle.firstExecutionRunId) };
    });
    console.log(
      `      pitrRestore, 12 h restore: ${runs.length} runs of ${runs.map((r) => r.events).join(' + ')} events`,
    );
    assert.ok(runs.length >= 2, 'the restore continued as new at least once');
    assert.deepEqual(stand.calls, [`restore ${result.targetInstanceId}`]);
    assert.match(result.targetInstanceId, /^huge-src-pitr-\d{8}-\d{6}$/);
    assert.equal(result.restoredTo, '2026-11-20T12:00:00.000Z');
    assert.ok(
      result.restoreSeconds! >= 12 * 3600 && result.restoreSeconds! <= 12 * 3600 + 120,
      `${result.restoreSeconds}`,
    );
  });

  it('a snapshot restore cancelled after it continued as new deletes the instance an earlier run requested', async () => {
    const stand = standInRestores(Number.MAX_SAFE_INTEGER);
    const { taskQueue, worker: w } = await worker(stand.activities);
    await w.runUntil(async () => {
      const handle = await env.client.workflow.start(snapshotRestore, {
        taskQueue,
        workflowId: taskQueue,
        args: [
          {
            snapshotId: 'huge-src-manual-20261101-030000',
            targetInstanceId: 'huge-src-restored',
            timeouts: { restore: '2 days', maxPollInterval: '2 minutes' },
          },
        ],
      });
      // On in skipped time until a later run of the chain waits for the instance.
      while ((await handle.describe()).runId === handle.firstExecutionRunId) await env.sleep('1 hour');
      // The instance names the chain's owner: the first run, which has closed by now.
      assert.equal(stand.tags()?.[OWNER_TAGS.runId], handle.firstExecutionRunId);
      await handle.cancel();
      await assert.rejects(handle.result(), /cancelled/i);
    });
    assert.deepEqual(stand.calls, ['restore huge-src-restored', 'delete huge-src-restored']);
  });

  it('a DR test whose restore waits 12 hours continues as new, checks the copy, and its last run deletes it', async () => {
    const stand = standInRestores(12 * HOUR);
    const snapshotId = 'huge-src-manual-20261101-030000';
    const checked: string[] = [];
    const { taskQueue, worker: w } = await worker({
      ...stand.activities,
      // The sweeper's own activity, on a stand-in provider that lists the copy.
      ...createOrphanActivities({
        listInstances: () => Promise.resolve(stand.instances()),
      } as Partial<ControlPlane> as ControlPlane),
      findOrphanDrInstances: () => Promise.resolve(['huge-src-dr-test-20000101']),
      listSnapshots: async () => [await stand.activities.describeSnapshot!(snapshotId)],
      runDrChecks: (input) => {
        checked.push(input.endpoint.host);
        return Promise.resolve({
          checks: [{ name: 'connectivity', status: 'passed', detail: 'stand-in' }],
          conversationCount: 1,
          latestConversation: null,
          pgvectorVersion: '0.8.0',
        });
      },
      writeDrReport: () => Promise.resolve([]),
    });
    const { report, runs, swept } = await w.runUntil(async () => {
      const handle = await env.client.workflow.start(drTest, {
        taskQueue,
        workflowId: taskQueue,
        args: [{ instanceId: 'huge-src', timeouts: { restore: '1 day', maxPollInterval: '2 minutes' } }],
      });
      while ((await handle.describe()).runId === handle.firstExecutionRunId) await env.sleep('1 hour');
      // The sweeper asks Temporal about the copy's owner, the first run (closed by now): it
      // follows the chain to the run that waits, and keeps the copy.
      const swept = await env.client.workflow.execute(sweepOrphans, {
        taskQueue,
        workflowId: `${taskQueue}-sweep`,
        args: [{ dryRun: true }],
      });
      const report = await handle.result();
      return { report, swept, runs: await chain(env, handle, handle.firstExecutionRunId) };
    });
    assert.deepEqual(
      swept.kept.map((i) => [i.instanceId, i.ownerStatus, i.reason]),
      [[report.temporaryInstanceId, 'RUNNING', `owner ${taskQueue} (run ${runs[0]!.runId}) is running`]],
    );
    assert.deepEqual(swept.removed, []);
    console.log(
      `      drTest, 12 h restore: ${runs.length} runs of ${runs.map((r) => r.events).join(' + ')} events`,
    );
    assert.ok(runs.length >= 2, 'the DR test continued as new at least once');
    assert.equal(report.ok, true);
    // What the first run did is in the report of the last.
    assert.deepEqual(report.orphansRemoved, ['huge-src-dr-test-20000101']);
    assert.equal(report.snapshot?.snapshotId, snapshotId);
    assert.ok(
      report.rtoSeconds! >= 12 * 3600 && report.rtoSeconds! <= 12 * 3600 + 120,
      `${report.rtoSeconds}`,
    );
    assert.deepEqual(checked, ['127.0.0.1']);
    assert.deepEqual(
      report.checks.map((check) => `${check.name} ${check.status}`),
      ['connectivity passed', 'cleanup passed'],
    );
    assert.equal(report.temporaryInstanceDeleted, true);
    assert.deepEqual(stand.calls, [
      'delete huge-src-dr-test-20000101',
      `restore ${report.temporaryInstanceId}`,
      `delete ${report.temporaryInstanceId}`,
    ]);
  });

  it('a sweep deleting three orphans for 5 hours continues as new and reports all three removed', async () => {
    const deleteCalls: string[] = [];
    const { taskQueue, worker: w } = await worker(
      sweepStandIns((instanceId) => deleteCalls.push(instanceId)),
    );
    const { report, runs } = await w.runUntil(async () => {
      const handle = await env.client.workflow.start(sweepOrphans, {
        taskQueue,
        workflowId: taskQueue,
        args: [{ timeouts: { deletion: '6 hours', maxPollInterval: '1 minute' } }],
      });
      const report = await handle.result();
      return { report, runs: await chain(env, handle, handle.firstExecutionRunId) };
    });
    console.log(
      `      sweepOrphans, 3 deletions of 5 h: ${runs.length} runs of ${runs.map((r) => r.events).join(' + ')} events`,
    );
    assert.ok(runs.length >= 2, 'the sweep continued as new at least once');
    assert.deepEqual(
      report.removed.map((i) => i.instanceId),
      ORPHANS,
    );
    assert.deepEqual([report.kept, report.failed], [[], []]);
    // Each deletion asked for once: the continued runs went on with the waits.
    assert.deepEqual([...deleteCalls].sort(), ORPHANS);
  });
});
