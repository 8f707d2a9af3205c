import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

import { ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';

import type { Activities } from '../../activities';
import type { InstanceDescription, SnapshotDescription } from '../../activities/control-plane/control-plane';
import { drTest } from '../../workflows';
import type { DrTestReport } from '../../workflows/lib/recovery';
import { createTimeSkippingEnv, workflowBundle } from '../helpers/temporal';

const SOURCE = 'slow-src';
const MINUTE = 60_000;

const snapshot: SnapshotDescription = {
  snapshotId: 'slow-src-manual-20261101-030000',
  instanceId: SOURCE,
  type: 'manual',
  status: 'available',
  createdAt: '2026-11-01T03:00:00.000Z',
  percentProgress: 100,
  sizeBytes: 1024,
  engineVersion: '15.7',
  tableRowCounts: undefined,
  tableContentHashes: undefined,
  tags: {},
};

/**
 * A stand-in provider (a mock: RDS restores that take hours cannot run here): the restored
 * instance stays `creating` until `readyAfterMs` of the server's (skipped) time have passed since
 * the restore request, then becomes `finalStatus`. It records when each look happened. The clock
 * is the server's, asked for: a look runs as a local activity, whose schedule time is the worker's.
 * A describe answers after `lookMs` (an RDS describe takes a few hundred milliseconds).
 */
function standInActivities(
  serverNow: () => Promise<number>,
  readyAfterMs: number,
  finalStatus: InstanceDescription['status'],
  lookMs = 0,
) {
  const calls: string[] = [];
  const looks: number[] = [];
  let requestedAt = 0;
  let restored: InstanceDescription | null = null;
  const activities: Partial<Activities> = {
    findOrphanDrInstances: () => Promise.resolve([]),
    listSnapshots: () => Promise.resolve([snapshot]),
    findInstance: () => Promise.resolve(restored),
    restoreFromSnapshot: async (_snapshotId, targetInstanceId, tags = {}) => {
      calls.push(`restore ${targetInstanceId}`);
      requestedAt = await serverNow();
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
    },
    describeInstance: async () => {
      const now = await serverNow();
      looks.push(now);
      await sleep(lookMs);
      if (now - requestedAt >= readyAfterMs && restored !== null) {
        restored = {
          ...restored,
          status: finalStatus,
          providerStatus: finalStatus === 'failed' ? 'failed: restore job ended' : finalStatus,
          endpoint: { host: '127.0.0.1', port: 1, database: 'mcp_db', user: 'postgres' },
        };
      }
      return restored!;
    },
    runDrChecks: () =>
      Promise.resolve({
        checks: [{ name: 'connectivity', status: 'passed', detail: 'stand-in' }],
        conversationCount: 1,
        latestConversation: null,
        pgvectorVersion: '0.8.0',
      }),
    deleteInstance: (instanceId) => {
      calls.push(`delete ${instanceId}`);
      restored = null;
      return Promise.resolve();
    },
    writeDrReport: () => Promise.resolve([]),
  };
  return { activities, calls, looks };
}

describe('drTest polling on the time-skipping server (stand-in provider activities)', function () {
  this.timeout(120_000);
  let env: TestWorkflowEnvironment;
  let runs = 0;
  const clock = () => env.currentTimeMs();

  before(async () => {
    env = await createTimeSkippingEnv();
  });
  after(async () => {
    await env?.teardown();
  });

  async function run(stand: ReturnType<typeof standInActivities>, timeouts: Record<string, string>) {
    const taskQueue = `dr-polling-${++runs}`;
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: stand.activities,
    });
    return worker.runUntil(
      env.client.workflow
        .execute(drTest, { taskQueue, workflowId: taskQueue, args: [{ instanceId: SOURCE, timeouts }] })
        .then(
          (report) => ({ report, failure: undefined }),
          (error: unknown) => {
            assert.ok(error instanceof WorkflowFailedError, String(error));
            assert.ok(error.cause instanceof ApplicationFailure, String(error.cause));
            return { report: error.cause.details?.[0] as DrTestReport, failure: error.cause };
          },
        ),
    );
  }

  it('waits out a two-hour restore in seconds, looking less often as it waits; the RTO says two hours, within a tenth', async () => {
    const stand = standInActivities(clock, 120 * MINUTE, 'available');
    const { report, failure } = await run(stand, { pollInterval: '2 minutes' });
    assert.equal(failure, undefined);
    // Every 2 minutes for the first 20, then a tenth of the time waited: 30 looks, not 61.
    assert.ok(stand.looks.length <= 31, `${stand.looks.length} looks`);
    assert.ok(report.rtoSeconds! >= 7200 && report.rtoSeconds! <= 7200 * 1.1, `RTO ${report.rtoSeconds}`);
    assert.deepEqual(stand.calls, [
      `restore ${report.temporaryInstanceId}`,
      `delete ${report.temporaryInstanceId}`,
    ]);
  });

  it('looks on a steady cadence however long a look takes: every minute counted from the restore request', async () => {
    const stand = standInActivities(clock, 10.5 * MINUTE, 'available', 250);
    const { report, failure } = await run(stand, { pollInterval: '1 minute' });
    assert.equal(failure, undefined);
    // The first look right after the request, then one a minute for the first 10 minutes (the
    // backoff starts there): each on its minute, the 250 ms a look takes not adding up.
    const late = stand.looks.slice(1, 11).map((at, i) => at - stand.looks[1]! - i * MINUTE);
    assert.ok(
      late.every((ms) => Math.abs(ms) < 200),
      `ms after each minute: ${late.join(' ')}`,
    );
    assert.ok(report.rtoSeconds! >= 630 && report.rtoSeconds! <= 630 * 1.1, `RTO ${report.rtoSeconds}`);
  });

  it('deletes the copy when the restore fails, and the report names the failure', async () => {
    const stand = standInActivities(clock, 30 * MINUTE, 'failed');
    const { report, failure } = await run(stand, { pollInterval: '1 minute' });
    assert.equal(failure?.type, 'DrTestFailed');
    assert.match(
      report.error!,
      /^waiting for instance slow-src-dr-test-\d{8} to be available: it is failed: restore job ended$/,
    );
    assert.deepEqual(stand.calls, [
      `restore ${report.temporaryInstanceId}`,
      `delete ${report.temporaryInstanceId}`,
    ]);
    assert.equal(report.temporaryInstanceDeleted, true);
  });

  it('gives up after timeouts.restore with a clear message, its last look on the deadline, and still deletes the copy', async () => {
    const stand = standInActivities(clock, Number.MAX_SAFE_INTEGER, 'available');
    const { report, failure } = await run(stand, { pollInterval: '5 minutes', restore: '3 hours' });
    assert.equal(failure?.type, 'DrTestFailed');
    assert.match(
      report.error!,
      /^gave up waiting for instance slow-src-dr-test-\d{8} to be available after 3 hours; last state: \{.*"status":"creating"/,
    );
    // Pauses in minutes, to the second (a look is scheduled a few ms after its timer fired).
    const pauses = stand.looks.slice(1).map((at, i) => Math.round((at - stand.looks[i]!) / 1000) / 60);
    // 5 minutes until 50 minutes were waited, then a tenth of the time waited up to 15 minutes,
    // the last cut short to fall on the deadline: 25 looks instead of 37.
    assert.deepEqual(pauses.slice(0, 11), Array(11).fill(5), pauses.join(' '));
    for (let i = 11; i < pauses.length - 1; i++) {
      assert.ok(pauses[i]! > pauses[i - 1]! || pauses[i] === 15, `pauses grow: ${pauses.join(' ')}`);
    }
    assert.ok(Math.max(...pauses) === 15, pauses.join(' '));
    assert.equal(stand.looks.length, 25, pauses.join(' '));
    assert.equal(Math.round((stand.looks.at(-1)! - stand.looks[0]!) / 1000), 180 * 60, pauses.join(' '));
    assert.deepEqual(stand.calls, [
      `restore ${report.temporaryInstanceId}`,
      `delete ${report.temporaryInstanceId}`,
    ]);
  });
});
