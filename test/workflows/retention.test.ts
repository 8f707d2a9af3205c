import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

import { RDSClient, CreateDBSnapshotCommand } from '@aws-sdk/client-rds';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import type { WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { MockActivityEnvironment, type TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';

import { createActivities } from '../../activities';
import { AwsRdsControlPlane, createAwsClients } from '../../activities/control-plane/aws-rds';
import { createRetentionActivities, type SnapshotVerdict } from '../../activities/recovery/retention';
import { retention, snapshotRestore } from '../../workflows';
import { OWNER_TAGS } from '../../workflows/lib/owner-tags';
import type { RetentionReport } from '../../workflows/retention';
import { localActivityDeps } from '../helpers/activity-deps';
import { startFaultProxy } from '../helpers/fault-proxy';
import { startMoto, type MotoServer } from '../helpers/moto';
import { createRdsNetwork, rdsTestSettings } from '../helpers/moto-rds';
import { startLocalInstance, type LocalInstance } from '../helpers/local-instance';
import { backdatedCopy } from '../helpers/snapshot-copies';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';

const SOURCE = 'ret-src';

const dbopsTags = (purpose: string, extra: Record<string, string> = {}) => ({
  [OWNER_TAGS.workflowId]: `${purpose}-${SOURCE}`,
  [OWNER_TAGS.runId]: `run-${purpose}`,
  [OWNER_TAGS.purpose]: purpose,
  [OWNER_TAGS.source]: SOURCE,
  ...extra,
});

/**
 * The snapshots of the fixture: backdated copies of the instance's real automated backup (its
 * files and record, with id, type, age and tags rewritten: no one can wait 40 days).
 * The policy of the runs: keep the newest 1, keep what is younger than 10 days.
 */
const AGED: { id: string; ageDays: number; tags: Record<string, string> }[] = [
  { id: 'ret-young-premig', ageDays: 5, tags: dbopsTags('pre-migration') },
  { id: 'ret-old-keep', ageDays: 20, tags: dbopsTags('backup', { [OWNER_TAGS.keep]: 'true' }) },
  { id: 'ret-old-restoring', ageDays: 25, tags: dbopsTags('backup') },
  { id: 'ret-old-backup', ageDays: 30, tags: dbopsTags('backup') },
  { id: 'ret-old-premig', ageDays: 40, tags: dbopsTags('pre-migration') },
  { id: 'ret-old-foreign', ageDays: 50, tags: {} },
];
const POLICY = { keepNewest: 1, keepDays: 10 };
const TASK_QUEUE = 'retention';
const EXPORTS = {
  bucket: 'ret-exports',
  iamRoleArn: 'arn:aws:iam::123456789012:role/rds-export-role',
  kmsKeyId: 'arn:aws:kms:us-east-1:123456789012:key/0a1b2c3d',
};

describe('retention (dev server, worker, local provider on a real cluster; aws provider on moto)', function () {
  this.timeout(300_000);
  let env: TestWorkflowEnvironment;
  let instance: LocalInstance;
  let worker: Worker;
  let running: Promise<void>;
  let moto: MotoServer;
  let restoring: WorkflowHandleWithFirstExecutionRunId;
  let template: string;

  const snapshotIds = async (instanceId = SOURCE) =>
    (await instance.plane.listSnapshots(instanceId)).map((s) => s.snapshotId).sort();

  const backdated = (id: string, ageDays: number, tags: Record<string, string>) =>
    backdatedCopy(instance.stateDir, template, { id, ageDays, tags });

  function runRetention(input: Record<string, unknown>): Promise<RetentionReport> {
    return env.client.workflow.execute(retention, {
      taskQueue: TASK_QUEUE,
      workflowId: `retention-test-${Date.now()}`,
      args: [input],
    });
  }

  const ids = (list: { snapshotId: string }[]) => list.map((s) => s.snapshotId).sort();

  before(async () => {
    [env, instance, moto] = await Promise.all([
      createDevServerEnv(),
      startLocalInstance(SOURCE),
      startMoto(),
    ]);
    worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: TASK_QUEUE,
      workflowBundle: await workflowBundle(),
      activities: createActivities(instance.deps),
    });
    running = worker.run();
    // The instance's automated backup, taken when it was created, gives the files of every copy.
    const [automated] = await instance.plane.listSnapshots(SOURCE);
    template = automated!.snapshotId;
    await backdated('ret-newest', 0, dbopsTags('backup'));
    // A restore in flight: a real run that stays open (no worker polls its queue).
    restoring = await env.client.workflow.start(snapshotRestore, {
      taskQueue: 'retention-nobody-polls',
      workflowId: 'retention-test-running-restore',
      args: [{ snapshotId: 'ret-old-restoring' }],
    });
    // Visibility lags the start a little: wait until a list sees the run.
    const query = `WorkflowId = '${restoring.workflowId}' AND ExecutionStatus = 'Running'`;
    for (let i = 0; (await env.client.workflow.count(query)).count === 0; i++) {
      if (i > 300) throw new Error('the running restore never showed in visibility');
      await sleep(100);
    }
  });
  // Each test starts from the whole fixture, whatever ran before it.
  beforeEach(async () => {
    const present = await snapshotIds();
    for (const { id, ageDays, tags } of AGED) {
      if (!present.includes(id)) await backdated(id, ageDays, tags);
    }
  });
  after(async () => {
    await restoring?.terminate().catch(() => undefined);
    worker?.shutdown();
    await running?.catch(() => undefined);
    await moto?.stop();
    await env?.teardown();
    await instance?.stop();
  });

  it('a dry run lists what would go and why each other snapshot stays, and deletes nothing', async () => {
    const before = await snapshotIds();
    const report = await runRetention({ instanceId: SOURCE, ...POLICY, dryRun: true });
    assert.equal(report.dryRun, true);
    assert.deepEqual(ids(report.deleted), ['ret-old-backup', 'ret-old-premig']);
    const reasons = Object.fromEntries(report.kept.map((s) => [s.snapshotId, s.reason]));
    assert.equal(reasons['ret-newest'], 'the newest available snapshot');
    assert.match(reasons['ret-young-premig']!, /^younger than 10 days \(5\.0 days old\)$/);
    assert.equal(reasons['ret-old-keep'], 'tagged dbops:keep=true');
    assert.match(
      reasons['ret-old-restoring']!,
      /^snapshotRestore retention-test-running-restore is running and restores it$/,
    );
    assert.match(reasons['ret-old-foreign']!, /^not a dbops backup or pre-migration snapshot/);
    const automated = report.kept.filter((s) => s.type === 'automated');
    assert.equal(automated.length, 1, 'the instance has its automated backup');
    assert.match(automated[0]!.reason, /^automated: /);
    assert.deepEqual(await snapshotIds(), before);
  });

  it('a retried delete finds the snapshot already gone and carries on', async () => {
    const activities = createRetentionActivities(instance.plane);
    const mock = new MockActivityEnvironment({}, { client: env.client });
    const beats: unknown[] = [];
    mock.on('heartbeat', (details: unknown) => beats.push(details));
    await backdated('ret-old-retry', 60, dbopsTags('backup'));
    const verdict: SnapshotVerdict = {
      snapshotId: 'ret-old-retry',
      instanceId: SOURCE,
      type: 'manual',
      purpose: 'backup',
      createdAt: null,
      expire: true,
      reason: 'expired',
    };
    const expire = (v: SnapshotVerdict) => activities.expireSnapshot(v);
    // The first attempt deletes; its reply is lost; the retry runs the same call again.
    assert.deepEqual(await mock.run(expire, verdict), {
      outcome: 'deleted',
      reason: 'expired',
    });
    assert.deepEqual(await mock.run(expire, verdict), {
      outcome: 'already-gone',
      reason: 'expired (already gone)',
    });
    assert.ok(beats.length > 0, 'the deletion heartbeats');
    assert.ok(!(await snapshotIds()).includes('ret-old-retry'));
  });

  it('deletes exactly what the policy expires and keeps the newest, the keep-tagged and the restore’s snapshot', async () => {
    const report = await runRetention({ instanceId: SOURCE, ...POLICY });
    assert.deepEqual(ids(report.deleted), ['ret-old-backup', 'ret-old-premig']);
    assert.deepEqual(report.failed, []);
    const left = await snapshotIds();
    for (const kept of [
      'ret-newest',
      'ret-young-premig',
      'ret-old-keep',
      'ret-old-restoring',
      'ret-old-foreign',
    ]) {
      assert.ok(left.includes(kept), `${kept} is kept`);
    }
    assert.ok(!left.some((id) => ['ret-old-backup', 'ret-old-premig'].includes(id)));
    assert.deepEqual(ids(report.kept), left);
  });

  it('judges automated and foreign snapshots when the policy includes them; one the provider refuses to delete stays, saying why', async () => {
    const report = await runRetention({
      instanceId: SOURCE,
      keepNewest: 1,
      keepDays: 0,
      includeAutomated: true,
      includeForeign: true,
    });
    assert.deepEqual(ids(report.deleted), [
      'ret-old-backup',
      'ret-old-foreign',
      'ret-old-premig',
      'ret-young-premig',
    ]);
    assert.deepEqual(report.failed, []);
    const automated = report.kept.find((s) => s.type === 'automated');
    assert.match(
      automated!.reason,
      /^the provider refuses to delete it: snapshot rds:ret-src-\S+ is an automated backup/,
    );
    assert.deepEqual(
      ids(report.kept),
      ['ret-newest', 'ret-old-keep', 'ret-old-restoring', automated!.snapshotId].sort(),
    );
    assert.deepEqual(await snapshotIds(), ids(report.kept));
  });

  it('refuses a bad policy and an unknown instance, deleting nothing', async () => {
    const before = await snapshotIds();
    const refused: { input: Record<string, unknown>; message: RegExp }[] = [
      { input: { keepNewest: 0 }, message: /^keepNewest 0 is not valid: a whole number of at least 1/ },
      { input: { keepDays: -1 }, message: /^keepDays -1 is not valid: a number of days from 0 to 3650$/ },
      { input: { instanceId: 'ret-nowhere' }, message: /^instance ret-nowhere not found$/ },
    ];
    for (const { input, message } of refused) {
      await assert.rejects(runRetention(input), (error: Error & { cause?: Error & { cause?: Error } }) => {
        const cause = error.cause?.cause ?? error.cause;
        return message.test(cause?.message ?? '');
      });
    }
    assert.deepEqual(await snapshotIds(), before);
  });

  it('on aws (moto) deletes only dbops-tagged manual snapshots of the instance, not one an export reads', async () => {
    const settings = rdsTestSettings();
    // Through the proxy an export stays in progress for the whole test, as a long one does on RDS.
    const proxy = await startFaultProxy(moto.endpoint);
    proxy.delayStates(10 * 60_000);
    const clients = createAwsClients({
      region: moto.region,
      endpoint: proxy.endpoint,
      credentials: moto.credentials,
    });
    const plane = new AwsRdsControlPlane({
      ...clients,
      settings,
      exports: EXPORTS,
      connectAs: { database: 'mcp_db', user: 'dbops' },
    });
    await createRdsNetwork(moto, settings);
    await plane.createInstance('ret-aws-a');
    await plane.createInstance('ret-aws-b');
    const rds = new RDSClient({
      region: moto.region,
      endpoint: moto.endpoint,
      credentials: moto.credentials,
    });
    let last = 0;
    const snapshot = async (instanceId: string, snapshotId: string, tags: Record<string, string>) => {
      // Each one taken in a later millisecond than the one before, so "newest" is defined.
      while (Date.now() <= last) await sleep(1);
      last = Date.now();
      await rds.send(
        new CreateDBSnapshotCommand({
          DBInstanceIdentifier: instanceId,
          DBSnapshotIdentifier: snapshotId,
          Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })),
        }),
      );
    };
    await snapshot('ret-aws-a', 'ret-aws-a-backup-1', dbopsTags('backup'));
    await snapshot('ret-aws-a', 'ret-aws-a-premig-1', dbopsTags('pre-migration'));
    await snapshot('ret-aws-a', 'ret-aws-a-old-export', dbopsTags('backup'));
    await snapshot('ret-aws-a', 'ret-aws-a-by-hand', {});
    await snapshot('ret-aws-a', 'ret-aws-a-kept', dbopsTags('backup', { [OWNER_TAGS.keep]: 'true' }));
    await snapshot('ret-aws-a', 'ret-aws-a-backup-2', dbopsTags('backup'));
    await snapshot('ret-aws-b', 'ret-aws-b-backup-1', dbopsTags('backup'));
    await snapshot('ret-aws-b', 'ret-aws-b-backup-2', dbopsTags('backup'));

    await clients.s3.send(new CreateBucketCommand({ Bucket: EXPORTS.bucket }));
    await plane.startExport('ret-aws-a-export', 'ret-aws-a-old-export', {
      bucket: EXPORTS.bucket,
      prefix: 'exports',
    });
    const bBefore = (await plane.listSnapshots('ret-aws-b')).map((s) => s.snapshotId).sort();
    const taskQueue = 'retention-aws';
    const deps = localActivityDeps(
      { host: '127.0.0.1', port: 1, database: 'mcp_db', user: 'dbops' },
      instance.stateDir,
    );
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities({ ...deps, controlPlane: plane }),
    });
    const report = await worker.runUntil(
      env.client.workflow.execute(retention, {
        taskQueue,
        workflowId: 'retention-test-aws',
        args: [{ instanceId: 'ret-aws-a', keepNewest: 1, keepDays: 0 }],
      }),
    );
    assert.deepEqual(ids(report.deleted), ['ret-aws-a-backup-1', 'ret-aws-a-premig-1']);
    const exported = report.kept.find((s) => s.snapshotId === 'ret-aws-a-old-export');
    assert.equal(exported?.reason, 'in use: export ret-aws-a-export is reading it');
    const left = async (instanceId: string) =>
      (await plane.listSnapshots(instanceId)).map((s) => s.snapshotId);
    const a = await left('ret-aws-a');
    for (const kept of ['ret-aws-a-by-hand', 'ret-aws-a-kept', 'ret-aws-a-backup-2'])
      assert.ok(a.includes(kept));
    assert.ok(!a.includes('ret-aws-a-backup-1') && !a.includes('ret-aws-a-premig-1'));
    assert.deepEqual((await left('ret-aws-b')).sort(), bBefore, 'the other instance keeps every snapshot');
    await proxy.stop();
  });
});
