/**
 * The backup workflow against the aws provider (moto behind the fault proxy, a dev server, a real
 * worker): what a retried snapshot request does when RDS refused it while the instance was
 * backing-up, and when the reply to a request that did create the snapshot was lost.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import type { RDSClient } from '@aws-sdk/client-rds';
import type { S3Client } from '@aws-sdk/client-s3';
import type { WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';

import { createActivities } from '../../activities';
import { AwsRdsControlPlane, createAwsClients } from '../../activities/control-plane/aws-rds';
import { backup } from '../../workflows';
import { localActivityDeps } from '../helpers/activity-deps';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy';
import { startMoto, type MotoServer } from '../helpers/moto';
import { createRdsNetwork, rdsTestSettings } from '../helpers/moto-rds';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';

const SOURCE = 'mcp-demo-prod';
const SETTINGS = rdsTestSettings();
const fast = { pollInterval: '1 second' };

const { EventType } = temporal.api.enums.v1;

describe('backup workflow on the aws provider (moto through the fault proxy, dev server)', function () {
  this.timeout(120_000);
  let moto: MotoServer;
  let proxy: FaultProxy;
  let clients: { rds: RDSClient; s3: S3Client };
  let plane: AwsRdsControlPlane;
  let env: TestWorkflowEnvironment;
  let stateDir: string;
  let worker: Worker;
  let running: Promise<void>;
  const taskQueue = 'backup-aws';

  before(async () => {
    [moto, env] = await Promise.all([startMoto(), createDevServerEnv()]);
    proxy = await startFaultProxy(moto.endpoint);
    clients = createAwsClients({
      region: moto.region,
      endpoint: proxy.endpoint,
      credentials: moto.credentials,
    });
    plane = new AwsRdsControlPlane({
      ...clients,
      settings: SETTINGS,
      exports: undefined,
      connectAs: { database: 'mcp_db', user: 'dbops' },
    });
    await createRdsNetwork(moto, SETTINGS);
    await plane.createInstance(SOURCE);
    stateDir = await mkdtemp(path.join(os.tmpdir(), 'dbops-backup-aws-'));
    // No database is reached: the backup workflow only calls the control plane.
    const deps = localActivityDeps(
      { host: '127.0.0.1', port: 1, database: 'mcp_db', user: 'dbops' },
      stateDir,
    );
    worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities({ ...deps, controlPlane: plane }),
    });
    running = worker.run();
  });
  beforeEach(() => proxy.clear());
  after(async () => {
    worker?.shutdown();
    await running?.catch(() => undefined);
    await env?.teardown();
    clients?.rds.destroy();
    clients?.s3.destroy();
    await proxy?.stop();
    await moto?.stop();
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  });

  async function snapshotsNamed(snapshotId: string) {
    return (await plane.listSnapshots(SOURCE)).filter((s) => s.snapshotId === snapshotId);
  }

  /** The attempts of an activity as the history records them: attempt number and the failure before it. */
  async function attempts(handle: WorkflowHandle, activityType: string) {
    const history = await handle.fetchHistory();
    const scheduled = new Set(
      history.events
        ?.filter(
          (e) =>
            e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED &&
            e.activityTaskScheduledEventAttributes?.activityType?.name === activityType,
        )
        .map((e) => String(e.eventId)),
    );
    return (history.events ?? [])
      .filter(
        (e) =>
          e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED &&
          scheduled.has(String(e.activityTaskStartedEventAttributes?.scheduledEventId)),
      )
      .map((e) => ({
        attempt: e.activityTaskStartedEventAttributes?.attempt,
        lastFailure: e.activityTaskStartedEventAttributes?.lastFailure?.message ?? null,
      }));
  }

  it('waits out a snapshot refused twice while the instance is backing-up, naming it; one snapshot results', async () => {
    proxy.failNext('CreateDBSnapshot', 2, {
      status: 400,
      code: 'InvalidDBInstanceState',
      message:
        'Cannot create a snapshot because the database instance mcp-demo-prod is not currently in the available state.',
    });
    proxy.rewriteNext('DescribeDBInstances', 2, (body) =>
      body.replace(
        '<DBInstanceStatus>available</DBInstanceStatus>',
        '<DBInstanceStatus>backing-up</DBInstanceStatus>',
      ),
    );
    const handle = await env.client.workflow.start(backup, {
      taskQueue,
      workflowId: 'backup-aws-busy',
      args: [{ instanceId: SOURCE, snapshotId: 'busy-window', timeouts: fast }],
    });
    const result = await handle.result();

    assert.equal(result.snapshotId, 'busy-window');
    assert.equal(proxy.calls('CreateDBSnapshot').length, 3);
    const [snapshot, ...others] = await snapshotsNamed('busy-window');
    assert.deepEqual(others, []);
    assert.equal(snapshot?.status, 'available');
    assert.deepEqual(
      {
        workflow: snapshot.tags['dbops:workflow-id'],
        run: snapshot.tags['dbops:run-id'],
        purpose: snapshot.tags['dbops:purpose'],
        source: snapshot.tags['dbops:source-instance'],
      },
      { workflow: 'backup-aws-busy', run: handle.firstExecutionRunId, purpose: 'backup', source: SOURCE },
    );
    // What the Web UI showed while it waited: the condition, as each retry's last failure.
    const waiting =
      'waiting: instance "mcp-demo-prod" is backing-up (creating snapshot "busy-window" of instance "mcp-demo-prod": InvalidDBInstanceState)';
    assert.deepEqual(await attempts(handle, 'createSnapshot'), [{ attempt: 3, lastFailure: waiting }]);
  });

  it('carries on when the reply to a request that made the snapshot was lost: one snapshot, the backup completes', async () => {
    // RDS makes the snapshot, the answer never arrives intact: the attempt fails after the side effect.
    proxy.rewriteNext('CreateDBSnapshot', 1, () => 'connection lost');
    const handle = await env.client.workflow.start(backup, {
      taskQueue,
      workflowId: 'backup-aws-lost-reply',
      args: [{ instanceId: SOURCE, snapshotId: 'lost-reply', timeouts: fast }],
    });
    const result = await handle.result();
    assert.equal(result.snapshotId, 'lost-reply');
    assert.equal(proxy.calls('CreateDBSnapshot').length, 2, 'the retry asked again');
    const named = await snapshotsNamed('lost-reply');
    assert.deepEqual(
      named.map((s) => `${s.status} ${s.tags['dbops:run-id']}`),
      [`available ${handle.firstExecutionRunId}`],
    );
    const [retry] = await attempts(handle, 'createSnapshot');
    assert.equal(retry?.attempt, 2);
  });
});
