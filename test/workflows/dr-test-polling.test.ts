import assert from 'node:assert/strict';

import { ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';

import type { Activities } from '../../activities';
import type { InstanceDescription, SnapshotDescription } from '../../activities/control-plane/control-plane';
import { drTest } from '../../workflows';
import type { DrTestReport } from '../../workflows/lib/recovery';
import { searchAttributeKeys } from '../../workflows/lib/search-attributes';
import { createTimeSkippingEnv, workflowBundle } from '../helpers/temporal';

const SOURCE = 'slow-src';

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
  tags: {},
};

/**
 * A stand-in provider (a mock: RDS restores that take hours cannot run here): the restored
 * instance stays `creating` for `pollsUntilAvailable` looks, then becomes `finalStatus`.
 */
function standInActivities(pollsUntilAvailable: number, finalStatus: InstanceDescription['status']) {
  const calls: string[] = [];
  let looks = 0;
  let restored: InstanceDescription | null = null;
  const activities: Partial<Activities> = {
    findOrphanDrInstances: () => Promise.resolve([]),
    listSnapshots: () => Promise.resolve([snapshot]),
    findInstance: () => Promise.resolve(restored),
    restoreFromSnapshot: (_snapshotId, targetInstanceId, tags = {}) => {
      calls.push(`restore ${targetInstanceId}`);
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
      return Promise.resolve(restored);
    },
    describeInstance: () => {
      looks++;
      if (looks > pollsUntilAvailable && restored !== null) {
        restored = {
          ...restored,
          status: finalStatus,
          providerStatus: finalStatus === 'failed' ? 'failed: restore job ended' : finalStatus,
          endpoint: { host: '127.0.0.1', port: 1, database: 'mcp_db', user: 'postgres' },
        };
      }
      return Promise.resolve(restored!);
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
  return { activities, calls, looks: () => looks };
}

describe('drTest polling on the time-skipping server (stand-in provider activities)', function () {
  this.timeout(120_000);
  let env: TestWorkflowEnvironment;
  let runs = 0;

  before(async () => {
    env = await createTimeSkippingEnv();
    // Recovery workflows tag their runs: the test server must know the attributes.
    await env.connection.operatorService.addSearchAttributes({
      namespace: 'default',
      searchAttributes: Object.fromEntries(
        searchAttributeKeys.map((key) => [
          key.name,
          temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        ]),
      ),
    });
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

  it('waits out a two-hour restore (60 looks two minutes apart) in seconds; the RTO says two hours', async () => {
    const stand = standInActivities(60, 'available');
    const { report, failure } = await run(stand, { pollInterval: '2 minutes' });
    assert.equal(failure, undefined);
    assert.equal(stand.looks(), 61);
    assert.ok(report.rtoSeconds! >= 7200 && report.rtoSeconds! < 7300, `RTO ${report.rtoSeconds}`);
    assert.deepEqual(stand.calls, [
      `restore ${report.temporaryInstanceId}`,
      `delete ${report.temporaryInstanceId}`,
    ]);
  });

  it('deletes the copy when the restore fails, and the report names the failure', async () => {
    const stand = standInActivities(30, 'failed');
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

  it('gives up after timeouts.restore with a clear message, and still deletes the copy', async () => {
    const stand = standInActivities(Number.MAX_SAFE_INTEGER, 'available');
    const { report, failure } = await run(stand, { pollInterval: '5 minutes', restore: '3 hours' });
    assert.equal(failure?.type, 'DrTestFailed');
    assert.match(
      report.error!,
      /^gave up waiting for instance slow-src-dr-test-\d{8} to be available after 3 hours; last state: \{.*"status":"creating"/,
    );
    assert.equal(stand.looks(), 37);
    assert.deepEqual(stand.calls, [
      `restore ${report.temporaryInstanceId}`,
      `delete ${report.temporaryInstanceId}`,
    ]);
  });
});
