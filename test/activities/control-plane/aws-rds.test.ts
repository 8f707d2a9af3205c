import assert from 'node:assert/strict';

import { DescribeDBInstancesCommand, RDSClient } from '@aws-sdk/client-rds';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

import {
  assertRestorable,
  AWS_MAX_ATTEMPTS,
  AwsRdsControlPlane,
  createAwsClients,
  exportStatus,
  instanceStatus,
  snapshotStatus,
  type AwsRdsDeps,
} from '../../../activities/control-plane/aws-rds';
import type { InstanceDescription } from '../../../activities/control-plane/control-plane';
import {
  AlreadyExistsError,
  BusyError,
  DeletionProtectedError,
  InvalidInputError,
  InvalidStateError,
  NotFoundError,
  PointInTimeRestoreNotEnabledError,
  QuotaExceededError,
  RestoreTimeOutOfRangeError,
  TransientError,
} from '../../../workflows/lib/errors';
import { startFaultProxy, THROTTLING, type Fault, type FaultProxy } from '../../helpers/fault-proxy';
import { startMoto, type MotoServer } from '../../helpers/moto';
import { createRdsNetwork, rdsTestSettings } from '../../helpers/moto-rds';

const SOURCE = 'mcp-demo-prod';

const SETTINGS = rdsTestSettings({
  tags: { Environment: 'production', Application: 'mcp-demo' },
  recovery: {
    ...rdsTestSettings().recovery,
    monitoringIntervalSeconds: 60,
    monitoringRoleArn: 'arn:aws:iam::123456789012:role/mcp-demo-prod-rds-monitoring',
    performanceInsightsKmsKeyId: 'arn:aws:kms:us-east-1:123456789012:key/0a1b2c3d',
  },
});

/** The owner tags a workflow run puts on what it creates, with the purpose that decides the settings. */
const ownerOf = (purpose: string, runId: string) => ({
  'dbops:workflow-id': `${purpose}-${SOURCE}`,
  'dbops:run-id': runId,
  'dbops:purpose': purpose,
  'dbops:source-instance': SOURCE,
});

const EXPORTS = {
  bucket: 'mcp-demo-backups',
  iamRoleArn: 'arn:aws:iam::123456789012:role/rds-export-role',
  kmsKeyId: 'arn:aws:kms:us-east-1:123456789012:key/0a1b2c3d',
};

/** What every test expects the provider to reject before calling AWS. */
async function rejectsWithoutCalling(proxy: FaultProxy, call: () => Promise<unknown>, message: RegExp) {
  const before = proxy.requests.length;
  await assert.rejects(
    call,
    (error: unknown) => error instanceof InvalidInputError && message.test(error.message),
  );
  assert.equal(proxy.requests.length, before, 'no AWS call was made');
}

describe('aws provider (RDS and S3 on moto, through a loopback fault proxy)', function () {
  let moto: MotoServer;
  let proxy: FaultProxy;
  let rds: RDSClient;
  let s3: S3Client;
  /** Straight to moto, for set-up and read-back. */
  let direct: RDSClient;
  let plane: AwsRdsControlPlane;

  const deps = (): AwsRdsDeps => ({
    rds,
    s3,
    settings: SETTINGS,
    exports: EXPORTS,
    connectAs: { database: 'mcp_db', user: 'dbops' },
  });

  before(async () => {
    moto = await startMoto();
    proxy = await startFaultProxy(moto.endpoint);
    ({ rds, s3 } = createAwsClients({
      region: moto.region,
      endpoint: proxy.endpoint,
      credentials: moto.credentials,
    }));
    direct = new RDSClient({ region: moto.region, endpoint: moto.endpoint, credentials: moto.credentials });
    plane = new AwsRdsControlPlane(deps());
    await createRdsNetwork(moto, SETTINGS);
    await plane.createInstance(SOURCE, { tags: { Role: 'primary' } });
  });
  beforeEach(() => proxy.clear());
  after(async () => {
    rds?.destroy();
    s3?.destroy();
    direct?.destroy();
    await proxy?.stop();
    await moto?.stop();
  });

  async function readBack(instanceId: string) {
    const answer = await direct.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: instanceId }));
    return answer.DBInstances![0]!;
  }

  describe('instances', () => {
    it('creates an instance with IAM auth, a managed master password and the configured placement', async () => {
      const instance = await readBack(SOURCE);
      assert.equal(instance.IAMDatabaseAuthenticationEnabled, true);
      assert.ok(instance.MasterUserSecret?.SecretArn, 'RDS keeps the master password in Secrets Manager');
      assert.equal(instance.DBSubnetGroup?.DBSubnetGroupName, SETTINGS.subnetGroup);
      assert.equal(instance.MultiAZ, true);
      assert.equal(instance.PubliclyAccessible, false);
      assert.equal(instance.DBName, 'mcp_db');
    });

    it('describes an instance: status, endpoint, latest restorable time, tags', async () => {
      const instance = await plane.describeInstance(SOURCE);
      assert.equal(instance.status, 'available');
      assert.equal(instance.providerStatus, 'available');
      assert.match(instance.endpoint?.host ?? '', /^mcp-demo-prod\./);
      assert.equal(instance.endpoint?.port, 5432);
      assert.equal(instance.endpoint?.database, 'mcp_db');
      assert.equal(instance.endpoint?.user, 'dbops');
      assert.ok(instance.latestRestorableTime && !isNaN(Date.parse(instance.latestRestorableTime)));
      assert.equal(instance.multiAz, true);
      assert.deepEqual(instance.tags, {
        Environment: 'production',
        Application: 'mcp-demo',
        Role: 'primary',
      });
      assert.equal(proxy.calls('DescribeDBInstanceAutomatedBackups').length, 1, 'earliest time asked for');
    });

    it('lists instances', async () => {
      const ids = (await plane.listInstances()).map((i) => i.instanceId);
      assert.ok(ids.includes(SOURCE));
    });

    it('polls an instance to available (moto is instant: the proxy rewrites the first two answers to creating)', async () => {
      proxy.rewriteNext('DescribeDBInstances', 2, (body) =>
        body.replace(
          '<DBInstanceStatus>available</DBInstanceStatus>',
          '<DBInstanceStatus>creating</DBInstanceStatus>',
        ),
      );
      const seen: string[] = [];
      let instance: InstanceDescription;
      do {
        instance = await plane.describeInstance(SOURCE);
        seen.push(`${instance.status}/${instance.providerStatus}`);
      } while (instance.status !== 'available' && seen.length < 10);
      assert.deepEqual(seen, ['creating/creating', 'creating/creating', 'available/available']);
    });

    it('rejects an unknown instance with NotFoundError naming it', async () => {
      await assert.rejects(
        plane.describeInstance('no-such-instance'),
        (error: unknown) =>
          error instanceof NotFoundError && /instance "no-such-instance"/.test(error.message),
      );
    });

    it('rejects a malformed instance id before calling AWS', async () => {
      await rejectsWithoutCalling(proxy, () => plane.describeInstance('prod--1'), /instanceId "prod--1"/);
      await rejectsWithoutCalling(proxy, () => plane.createInstance('1prod'), /instanceId "1prod"/);
    });

    it('rejects an existing instance id with AlreadyExistsError', async () => {
      await assert.rejects(
        plane.createInstance(SOURCE),
        (error: unknown) =>
          error instanceof AlreadyExistsError && /instance "mcp-demo-prod"/.test(error.message),
      );
    });
  });

  describe('snapshots', () => {
    it('creates a tagged snapshot and describes it', async () => {
      const created = await plane.createSnapshot(SOURCE, 'mcp-demo-manual-20261127-120000', {
        Type: 'Manual',
      });
      assert.equal(created.instanceId, SOURCE);
      assert.equal(created.type, 'manual');
      const described = await plane.describeSnapshot('mcp-demo-manual-20261127-120000');
      assert.equal(described.status, 'available');
      assert.equal(described.engineVersion, '15.7');
      assert.equal(described.tags.Type, 'Manual');
      assert.deepEqual(
        proxy.calls('CreateDBSnapshot')[0]?.params.get('Tags.Tag.1.Key'),
        'Type',
        'tags were sent with CreateDBSnapshot',
      );
    });

    it('lists manual and automated snapshots of the instance, newest first', async () => {
      await plane.createSnapshot(SOURCE, 'mcp-demo-manual-20261127-130000');
      const listed = await plane.listSnapshots(SOURCE);
      assert.deepEqual(
        listed.map((s) => s.type),
        ['manual', 'manual', 'automated'],
      );
      assert.equal(listed[0]?.snapshotId, 'mcp-demo-manual-20261127-130000');
      assert.match(listed[2]!.snapshotId, /^rds:mcp-demo-prod-/);
      const times = listed.map((s) => Date.parse(s.createdAt!));
      assert.deepEqual(
        times,
        [...times].sort((a, b) => b - a),
      );
      // An automated snapshot id (with its `rds:` prefix) is accepted where snapshots are read.
      assert.equal((await plane.describeSnapshot(listed[2]!.snapshotId)).type, 'automated');
    });

    it('describes recoverability: LatestRestorableTime of DescribeDBInstances, the newest available snapshot of DescribeDBSnapshots', async () => {
      await plane.createSnapshot(SOURCE, 'recoverability-newest');
      try {
        const taken = await plane.describeSnapshot('recoverability-newest');
        proxy.clear();
        proxy.rewriteNext('DescribeDBInstances', 1, (body) =>
          body.replace(
            /<LatestRestorableTime>[^<]*<\/LatestRestorableTime>/,
            '<LatestRestorableTime>2026-11-27T12:55:00Z</LatestRestorableTime>',
          ),
        );
        const described = await plane.describeRecoverability(SOURCE);
        assert.deepEqual(described, {
          instanceId: SOURCE,
          latestRestorableTime: '2026-11-27T12:55:00.000Z',
          newestAvailableSnapshot: { snapshotId: 'recoverability-newest', createdAt: taken.createdAt },
        });
        assert.deepEqual(
          proxy.requests.map((r) => r.action),
          ['DescribeDBInstances', 'DescribeDBSnapshots'],
        );
        // Shown still creating, it is not usable: the newest available one before it is.
        proxy.rewriteNext('DescribeDBSnapshots', 1, (body) =>
          body.replace(
            /(<DBSnapshotIdentifier>recoverability-newest<\/DBSnapshotIdentifier>[\s\S]*?<Status>)available</,
            '$1creating<',
          ),
        );
        const creating = await plane.describeRecoverability(SOURCE);
        const others = (await plane.listSnapshots(SOURCE)).filter(
          (s) => s.snapshotId !== 'recoverability-newest',
        );
        assert.equal(creating.newestAvailableSnapshot?.snapshotId, others[0]!.snapshotId);
      } finally {
        await plane.deleteSnapshot('recoverability-newest');
      }
    });

    it('rejects a duplicate snapshot id with AlreadyExistsError naming it', async () => {
      await assert.rejects(
        plane.createSnapshot(SOURCE, 'mcp-demo-manual-20261127-120000'),
        (error: unknown) =>
          error instanceof AlreadyExistsError &&
          /snapshot "mcp-demo-manual-20261127-120000" of instance "mcp-demo-prod"/.test(error.message),
      );
    });

    it('rejects a snapshot of an unknown instance with NotFoundError', async () => {
      await assert.rejects(plane.createSnapshot('no-such-instance', 'snap-1'), NotFoundError);
    });

    it('deletes a snapshot; describing it then fails with NotFoundError', async () => {
      await plane.createSnapshot(SOURCE, 'to-be-deleted');
      await plane.deleteSnapshot('to-be-deleted');
      await assert.rejects(plane.describeSnapshot('to-be-deleted'), NotFoundError);
      await assert.rejects(plane.deleteSnapshot('to-be-deleted'), NotFoundError);
    });

    it('rejects a malformed snapshot id before calling AWS', async () => {
      await rejectsWithoutCalling(
        proxy,
        () => plane.createSnapshot(SOURCE, 'snap shot'),
        /snapshotId "snap shot"/,
      );
      await rejectsWithoutCalling(proxy, () => plane.deleteSnapshot('snap-'), /snapshotId "snap-"/);
    });
  });

  describe('restores', () => {
    it('restores a snapshot with the configured subnet group, security groups, Multi-AZ, parameter group, class and tags', async () => {
      const restored = await plane.restoreFromSnapshot('mcp-demo-manual-20261127-120000', 'mcp-demo-dr-1', {
        Purpose: 'dr-test',
      });
      assert.equal(restored.instanceId, 'mcp-demo-dr-1');

      const sent = proxy.calls('RestoreDBInstanceFromDBSnapshot')[0]!.params;
      assert.equal(sent.get('PubliclyAccessible'), 'false', 'PubliclyAccessible=false is sent explicitly');
      assert.equal(sent.get('MultiAZ'), 'true');
      assert.equal(sent.get('EnableIAMDatabaseAuthentication'), 'true');

      const instance = await readBack('mcp-demo-dr-1');
      assert.equal(instance.MultiAZ, true);
      assert.equal(instance.PubliclyAccessible, false);
      assert.equal(instance.DBSubnetGroup?.DBSubnetGroupName, SETTINGS.subnetGroup);
      assert.deepEqual(
        instance.VpcSecurityGroups?.map((g) => g.VpcSecurityGroupId),
        SETTINGS.securityGroupIds,
      );
      assert.equal(instance.DBParameterGroups?.[0]?.DBParameterGroupName, SETTINGS.parameterGroup);
      assert.equal(instance.DBInstanceClass, SETTINGS.instanceClass);
      assert.deepEqual(Object.fromEntries((instance.TagList ?? []).map((t) => [t.Key, t.Value])), {
        Environment: 'production',
        Application: 'mcp-demo',
        Purpose: 'dr-test',
      });
    });

    it('restores to the latest restorable time with UseLatestRestorableTime and the same placement', async () => {
      await plane.restoreToPointInTime(SOURCE, 'mcp-demo-pitr-latest', 'latest');
      const sent = proxy.calls('RestoreDBInstanceToPointInTime')[0]!.params;
      assert.equal(sent.get('UseLatestRestorableTime'), 'true');
      assert.equal(sent.get('RestoreTime'), null);
      const instance = await readBack('mcp-demo-pitr-latest');
      assert.equal(instance.MultiAZ, true);
      assert.equal(instance.PubliclyAccessible, false);
      assert.equal(instance.DBSubnetGroup?.DBSubnetGroupName, SETTINGS.subnetGroup);
    });

    it('restores to a time inside the window, sending RestoreTime (moto ignores it: the request is checked)', async () => {
      const { latestRestorableTime } = await plane.describeInstance(SOURCE);
      await plane.restoreToPointInTime(SOURCE, 'mcp-demo-pitr-time', { time: latestRestorableTime! });
      const sent = proxy.calls('RestoreDBInstanceToPointInTime')[0]!.params;
      assert.equal(Date.parse(sent.get('RestoreTime')!), Date.parse(latestRestorableTime!));
      assert.equal(sent.get('UseLatestRestorableTime'), null);
    });

    it('refuses a time after the latest restorable time with the range, restoring nothing', async () => {
      const { latestRestorableTime } = await plane.describeInstance(SOURCE);
      const later = new Date(Date.parse(latestRestorableTime!) + 3_600_000).toISOString();
      await assert.rejects(
        plane.restoreToPointInTime(SOURCE, 'mcp-demo-pitr-late', { time: later }),
        (error: unknown) =>
          error instanceof RestoreTimeOutOfRangeError &&
          error.message.startsWith(
            `restore time ${later} is outside the restorable range of instance "${SOURCE}"`,
          ) &&
          // moto moves the latest restorable time along with its clock: the window is checked, not its exact end.
          /: \[unknown, \d{4}-\d{2}-\d{2}T[\d:.]+Z\]$/.test(error.message),
      );
      assert.equal(proxy.calls('RestoreDBInstanceToPointInTime').length, 0);
      await assert.rejects(plane.describeInstance('mcp-demo-pitr-late'), NotFoundError);
    });

    it('refuses a restore time without a zone before calling AWS', async () => {
      await rejectsWithoutCalling(
        proxy,
        () => plane.restoreToPointInTime(SOURCE, 'mcp-demo-pitr-x', { time: '2026-11-27 12:00' }),
        /restore time "2026-11-27 12:00" is not an ISO-8601 time/,
      );
    });

    it('maps PointInTimeRestoreNotEnabled (answered by the proxy: moto does not model it)', async () => {
      proxy.failNext('RestoreDBInstanceToPointInTime', 1, {
        status: 400,
        code: 'PointInTimeRestoreNotEnabled',
        message: 'Point-in-time restore is not enabled',
      });
      await assert.rejects(
        plane.restoreToPointInTime(SOURCE, 'mcp-demo-pitr-off', 'latest'),
        (error: unknown) =>
          error instanceof PointInTimeRestoreNotEnabledError &&
          /instance "mcp-demo-prod"/.test(error.message),
      );
    });

    it('rejects a restore onto an existing instance id with AlreadyExistsError', async () => {
      await assert.rejects(
        plane.restoreFromSnapshot('mcp-demo-manual-20261127-120000', SOURCE),
        AlreadyExistsError,
      );
    });
  });

  describe('DR test copies are cheap; real recoveries get production settings (by dbops:purpose)', () => {
    const snapshotId = 'mcp-demo-purpose-snap';
    before(() => plane.createSnapshot(SOURCE, snapshotId));
    after(() => plane.deleteSnapshot(snapshotId));
    it('a DR test copy: the DR class, single-AZ, no automated backups, no deletion protection, no Performance Insights', async () => {
      await plane.restoreFromSnapshot(snapshotId, 'mcp-demo-dr-test-cheap', ownerOf('dr-test', 'run-dr'));
      const sent = proxy.calls('RestoreDBInstanceFromDBSnapshot')[0]!.params;
      assert.equal(sent.get('DBInstanceClass'), 'db.t3.medium');
      // moto keeps the snapshot's Multi-AZ and retention when a restore asks for false / 0: the request is checked for those.
      assert.equal(sent.get('MultiAZ'), 'false');
      assert.equal(sent.get('BackupRetentionPeriod'), '0');
      assert.equal(sent.get('DeletionProtection'), 'false');
      assert.equal(sent.get('EnableCloudwatchLogsExports.member.1'), null);
      const instance = await readBack('mcp-demo-dr-test-cheap');
      assert.equal(instance.DBInstanceClass, 'db.t3.medium');
      assert.equal(instance.DeletionProtection, false);
      assert.equal(instance.DBSubnetGroup?.DBSubnetGroupName, SETTINGS.subnetGroup);
      // Available means available: no modification follows, so the RTO ends here.
      assert.equal((await plane.describeInstance('mcp-demo-dr-test-cheap')).status, 'available');
      assert.equal(proxy.calls('ModifyDBInstance').length, 0, 'nothing turns Performance Insights on');
      await plane.deleteInstance('mcp-demo-dr-test-cheap', { skipFinalSnapshot: true });
    });

    it('a real point-in-time recovery: deletion protection, log exports, CA, retention and autoscaling limit in the restore, then Performance Insights and monitoring', async () => {
      await plane.restoreToPointInTime(
        SOURCE,
        'mcp-demo-prod-pitr-real',
        'latest',
        ownerOf('restore', 'run-r1'),
      );
      const sent = proxy.calls('RestoreDBInstanceToPointInTime')[0]!.params;
      assert.equal(sent.get('DBInstanceClass'), SETTINGS.instanceClass);
      assert.equal(sent.get('MultiAZ'), 'true');
      assert.equal(sent.get('DeletionProtection'), 'true');
      assert.equal(sent.get('BackupRetentionPeriod'), '30');
      assert.equal(sent.get('MaxAllocatedStorage'), '1000');
      assert.equal(sent.get('CACertificateIdentifier'), 'rds-ca-rsa2048-g1');
      assert.equal(sent.get('DBParameterGroupName'), SETTINGS.parameterGroup);
      assert.deepEqual(
        [sent.get('EnableCloudwatchLogsExports.member.1'), sent.get('EnableCloudwatchLogsExports.member.2')],
        ['postgresql', 'upgrade'],
      );
      const restored = await readBack('mcp-demo-prod-pitr-real');
      assert.equal(restored.DeletionProtection, true);
      assert.deepEqual(restored.EnabledCloudwatchLogsExports, ['postgresql', 'upgrade']);
      assert.equal(restored.CACertificateIdentifier, 'rds-ca-rsa2048-g1');

      // The restore call cannot set Performance Insights or monitoring: the first look at the
      // available instance modifies it, and it reads as modifying until then.
      const first = await plane.describeInstance('mcp-demo-prod-pitr-real');
      assert.deepEqual([first.status, first.providerStatus], ['modifying', 'modifying']);
      const modify = proxy.calls('ModifyDBInstance');
      assert.equal(modify.length, 1);
      assert.equal(modify[0]!.params.get('EnablePerformanceInsights'), 'true');
      assert.equal(
        modify[0]!.params.get('PerformanceInsightsKMSKeyId'),
        SETTINGS.recovery.performanceInsightsKmsKeyId,
      );
      assert.equal(modify[0]!.params.get('PerformanceInsightsRetentionPeriod'), '7');
      assert.equal(modify[0]!.params.get('MonitoringInterval'), '60');
      assert.equal(modify[0]!.params.get('MonitoringRoleArn'), SETTINGS.recovery.monitoringRoleArn);
      assert.equal(modify[0]!.params.get('ApplyImmediately'), 'true');
      const modified = await readBack('mcp-demo-prod-pitr-real');
      assert.equal(modified.MonitoringInterval, 60);
      assert.equal(modified.MonitoringRoleArn, SETTINGS.recovery.monitoringRoleArn);
      assert.equal(modified.MaxAllocatedStorage, 1000);
      // moto does not model Performance Insights (it never reports it on): the request above is what is checked.
      const second = await plane.describeInstance('mcp-demo-prod-pitr-real');
      assert.equal(second.status, 'available');
      assert.equal(proxy.calls('ModifyDBInstance').length, 1, 'modified once');
    });

    it('a real snapshot recovery gets the same (its autoscaling limit with the modification: RestoreDBInstanceFromDBSnapshot takes none)', async () => {
      await plane.restoreFromSnapshot(snapshotId, 'mcp-demo-prod-snap-real', ownerOf('restore', 'run-r2'));
      const sent = proxy.calls('RestoreDBInstanceFromDBSnapshot')[0]!.params;
      assert.equal(sent.get('DeletionProtection'), 'true');
      assert.equal(sent.get('MaxAllocatedStorage'), null);
      assert.equal((await plane.describeInstance('mcp-demo-prod-snap-real')).status, 'modifying');
      assert.equal(proxy.calls('ModifyDBInstance')[0]!.params.get('MaxAllocatedStorage'), '1000');
      const instance = await readBack('mcp-demo-prod-snap-real');
      assert.equal(instance.DeletionProtection, true);
      assert.equal(instance.MaxAllocatedStorage, 1000);
      await assert.rejects(
        plane.deleteInstance('mcp-demo-prod-snap-real', { skipFinalSnapshot: true }),
        (error: unknown) =>
          error instanceof DeletionProtectedError &&
          /^deleting instance "mcp-demo-prod-snap-real": it has deletion protection \(a real recovery/.test(
            error.message,
          ),
        'deletion protection holds',
      );
    });
  });

  describe('automated backups: the restorable window and restores without the source instance', () => {
    const backupsAnswer = (backups: string) =>
      `<DescribeDBInstanceAutomatedBackupsResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBInstanceAutomatedBackupsResult><DBInstanceAutomatedBackups>${backups}</DBInstanceAutomatedBackups></DescribeDBInstanceAutomatedBackupsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeDBInstanceAutomatedBackupsResponse>`;
    const backup = (fields: Record<string, string>, earliest?: string, latest?: string) =>
      `<DBInstanceAutomatedBackup>${Object.entries(fields)
        .map(([k, v]) => `<${k}>${v}</${k}>`)
        .join('')}${
        earliest === undefined
          ? ''
          : `<RestoreWindow><EarliestTime>${earliest}</EarliestTime><LatestTime>${latest}</LatestTime></RestoreWindow>`
      }</DBInstanceAutomatedBackup>`;

    it('no automated backups yet (RDS answers NotFound) describes the instance, its window unknown', async () => {
      proxy.failNext('DescribeDBInstanceAutomatedBackups', 1, {
        status: 404,
        code: 'DBInstanceAutomatedBackupNotFound',
        message: 'no automated backups (from the proxy: moto answers with an empty list)',
      });
      const instance = await plane.describeInstance(SOURCE);
      assert.equal(instance.status, 'available');
      assert.equal(instance.earliestRestorableTime, undefined);
    });

    it('only the active backups of the current instance (its DbiResourceId) give the earliest restorable time (moto reports no resource ids or windows: the proxy gives RDS-shaped ones)', async () => {
      const current = (await readBack(SOURCE)).DbiResourceId!;
      proxy.rewriteNext('DescribeDBInstanceAutomatedBackups', 1, () =>
        backupsAnswer(
          backup(
            {
              DBInstanceIdentifier: SOURCE,
              DbiResourceId: 'db-EARLIERINSTANCEOFTHISNAME',
              Status: 'retained',
            },
            '2026-10-01T00:00:00Z',
            '2026-10-20T00:00:00Z',
          ) +
            backup(
              { DBInstanceIdentifier: SOURCE, DbiResourceId: current, Status: 'creating' },
              '2026-10-25T00:00:00Z',
              '2026-10-26T00:00:00Z',
            ) +
            backup(
              { DBInstanceIdentifier: SOURCE, DbiResourceId: current, Status: 'active' },
              '2026-11-01T00:00:00Z',
              '2026-11-27T00:00:00Z',
            ),
        ),
      );
      assert.equal((await plane.describeInstance(SOURCE)).earliestRestorableTime, '2026-11-01T00:00:00.000Z');
    });

    it('a deleted source restores from its retained backups by SourceDbiResourceId (moto ignores that parameter and reports no resource id: the request is checked)', async () => {
      await plane.createInstance('mcp-demo-gone');
      await plane.deleteInstance('mcp-demo-gone', { skipFinalSnapshot: true });
      proxy.clear();
      // moto's own answer says `retained`; RDS also names the resource id and the window.
      proxy.rewriteNext('DescribeDBInstanceAutomatedBackups', 1, (body) => {
        assert.match(
          body,
          /<DBInstanceIdentifier>mcp-demo-gone<\/DBInstanceIdentifier><Status>retained<\/Status>/,
        );
        return backupsAnswer(
          backup(
            {
              DBInstanceIdentifier: 'mcp-demo-gone',
              DbiResourceId: 'db-GONEGONEGONE',
              Status: 'retained',
              Region: moto.region,
            },
            '2026-11-01T00:00:00Z',
            '2026-11-27T00:00:00Z',
          ),
        );
      });
      await assert.rejects(
        plane.restoreToPointInTime('mcp-demo-gone', 'mcp-demo-gone-back', { time: '2026-11-28T00:00:00Z' }),
        (error: unknown) =>
          error instanceof RestoreTimeOutOfRangeError &&
          /\[2026-11-01T00:00:00.000Z, 2026-11-27T00:00:00.000Z\]/.test(error.message),
        'the window of the retained backups is checked',
      );
      proxy.rewriteNext('DescribeDBInstanceAutomatedBackups', 1, () =>
        backupsAnswer(
          backup(
            {
              DBInstanceIdentifier: 'mcp-demo-gone',
              DbiResourceId: 'db-GONEGONEGONE',
              Status: 'retained',
              Region: moto.region,
            },
            '2026-11-01T00:00:00Z',
            '2026-11-27T00:00:00Z',
          ),
        ),
      );
      await plane.restoreToPointInTime('mcp-demo-gone', 'mcp-demo-gone-back', 'latest');
      const sent = proxy.calls('RestoreDBInstanceToPointInTime')[0]!.params;
      assert.equal(sent.get('SourceDbiResourceId'), 'db-GONEGONEGONE');
      assert.equal(sent.get('SourceDBInstanceIdentifier'), null);
      assert.equal(sent.get('UseLatestRestorableTime'), 'true');
      assert.equal(
        proxy
          .calls('DescribeDBInstanceAutomatedBackups')
          .at(-1)!
          .params.get('Filters.Filter.1.Values.Value.1'),
        'mcp-demo-gone',
      );
    });

    it('no instance and no backups of that name: NotFoundError saying both', async () => {
      await assert.rejects(
        plane.restoreToPointInTime('mcp-demo-never', 'mcp-demo-never-back', 'latest'),
        (error: unknown) =>
          error instanceof NotFoundError &&
          /no such instance in us-east-1, and no automated backups of it retained or replicated here/.test(
            error.message,
          ),
      );
      assert.equal(proxy.calls('RestoreDBInstanceToPointInTime').length, 0);
    });

    it('region loss: in the backup region, a restore reads the replicated backups by SourceDBInstanceAutomatedBackupsArn (moto replicates no backups and cannot restore from one: the proxy answers as RDS in us-west-2 would, and the request is checked)', async () => {
      const west = createAwsClients({
        region: 'us-west-2',
        endpoint: proxy.endpoint,
        credentials: moto.credentials,
      });
      try {
        const backupRegion = new AwsRdsControlPlane({ ...deps(), ...west });
        const arn = 'arn:aws:rds:us-west-2:123456789012:auto-backup:ab-REPLICATEDFROMUSEAST1';
        proxy.rewriteNext('DescribeDBInstanceAutomatedBackups', 1, (body) => {
          assert.doesNotMatch(body, /mcp-demo-prod/, 'moto has no backups of the primary in us-west-2');
          return backupsAnswer(
            backup(
              {
                DBInstanceIdentifier: SOURCE,
                DBInstanceAutomatedBackupsArn: arn,
                DbiResourceId: 'db-PRIMARYRESOURCEID',
                Region: 'us-east-1',
                Status: 'replicating',
              },
              '2026-11-01T00:00:00Z',
              '2026-11-27T00:00:00Z',
            ),
          );
        });
        proxy.failNext('RestoreDBInstanceToPointInTime', 1, {
          status: 400,
          code: 'StorageQuotaExceeded',
          message: 'answered by the proxy: moto cannot restore from an automated backup ARN',
        });
        await assert.rejects(
          backupRegion.restoreToPointInTime(
            SOURCE,
            'mcp-demo-prod-west',
            'latest',
            ownerOf('restore', 'run-w'),
          ),
          (error: unknown) =>
            error instanceof QuotaExceededError &&
            /restoring the automated backups of instance "mcp-demo-prod" replicated from us-east-1 to us-west-2/.test(
              error.message,
            ),
        );
        const sent = proxy.calls('RestoreDBInstanceToPointInTime')[0]!.params;
        assert.equal(sent.get('SourceDBInstanceAutomatedBackupsArn'), arn);
        assert.equal(sent.get('SourceDBInstanceIdentifier'), null);
        assert.equal(sent.get('SourceDbiResourceId'), null);
        assert.equal(sent.get('DeletionProtection'), 'true');
      } finally {
        west.rds.destroy();
        west.s3.destroy();
      }
    });
  });

  describe('the DR test in the backup region: replicated backups stand in for snapshots', () => {
    const arn = 'arn:aws:rds:us-west-2:123456789012:auto-backup:ab-REPLICATEDFROMUSEAST1';
    const replicatedAnswer = (latest: string | undefined) =>
      `<DescribeDBInstanceAutomatedBackupsResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBInstanceAutomatedBackupsResult><DBInstanceAutomatedBackups><DBInstanceAutomatedBackup><DBInstanceIdentifier>${SOURCE}</DBInstanceIdentifier><DBInstanceAutomatedBackupsArn>${arn}</DBInstanceAutomatedBackupsArn><Region>us-east-1</Region><Status>replicating</Status><AllocatedStorage>100</AllocatedStorage><EngineVersion>15.7</EngineVersion>${
        latest === undefined
          ? ''
          : `<RestoreWindow><EarliestTime>2026-11-01T00:00:00Z</EarliestTime><LatestTime>${latest}</LatestTime></RestoreWindow>`
      }</DBInstanceAutomatedBackup></DBInstanceAutomatedBackups></DescribeDBInstanceAutomatedBackupsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeDBInstanceAutomatedBackupsResponse>`;
    let west: ReturnType<typeof createAwsClients>;
    let backupRegion: AwsRdsControlPlane;
    before(() => {
      west = createAwsClients({
        region: 'us-west-2',
        endpoint: proxy.endpoint,
        credentials: moto.credentials,
      });
      backupRegion = new AwsRdsControlPlane({ ...deps(), ...west });
    });
    after(() => {
      west?.rds.destroy();
      west?.s3.destroy();
    });

    it('listing the snapshots of the primary in us-west-2 gives its replicated backups, taken at the end of their window (moto replicates nothing: the proxy answers as RDS there would)', async () => {
      proxy.rewriteNext('DescribeDBInstanceAutomatedBackups', 2, () =>
        replicatedAnswer('2026-11-27T11:55:00Z'),
      );
      const listed = await backupRegion.listSnapshots(SOURCE);
      assert.deepEqual(
        listed.map((s) => [s.snapshotId, s.type, s.status, s.createdAt]),
        [['rds:mcp-demo-prod-replicated-backups', 'automated', 'available', '2026-11-27T11:55:00.000Z']],
      );
      assert.equal(proxy.calls('DescribeDBSnapshots').length, 1, 'moto has no snapshot of it in us-west-2');
      assert.equal((await backupRegion.describeSnapshot(listed[0]!.snapshotId)).sizeBytes, 100 * 2 ** 30);
    });

    it('replicated backups without a window yet are not available to restore', async () => {
      proxy.rewriteNext('DescribeDBInstanceAutomatedBackups', 1, () => replicatedAnswer(undefined));
      assert.equal((await backupRegion.listSnapshots(SOURCE))[0]?.status, 'creating');
    });

    it('restoring that "snapshot" is a DR copy restored to the latest replicated point by SourceDBInstanceAutomatedBackupsArn (moto cannot restore from one: the proxy answers, the request is checked)', async () => {
      proxy.rewriteNext('DescribeDBInstanceAutomatedBackups', 1, () =>
        replicatedAnswer('2026-11-27T11:55:00Z'),
      );
      proxy.failNext('RestoreDBInstanceToPointInTime', 1, {
        status: 400,
        code: 'StorageQuotaExceeded',
        message: 'answered by the proxy: moto cannot restore from an automated backup ARN',
      });
      await assert.rejects(
        backupRegion.restoreFromSnapshot(
          'rds:mcp-demo-prod-replicated-backups',
          'mcp-demo-prod-dr-test-20261127',
          ownerOf('dr-test', 'run-west'),
        ),
        (error: unknown) =>
          error instanceof QuotaExceededError &&
          /^restoring the automated backups of instance "mcp-demo-prod" replicated from us-east-1 to us-west-2 to its latest restorable time as instance "mcp-demo-prod-dr-test-20261127"/.test(
            error.message,
          ),
      );
      const sent = proxy.calls('RestoreDBInstanceToPointInTime')[0]!.params;
      assert.equal(sent.get('SourceDBInstanceAutomatedBackupsArn'), arn);
      assert.equal(sent.get('UseLatestRestorableTime'), 'true');
      assert.equal(sent.get('DBInstanceClass'), 'db.t3.medium');
      assert.equal(sent.get('BackupRetentionPeriod'), '0');
      assert.equal(proxy.calls('RestoreDBInstanceFromDBSnapshot').length, 0);
    });

    it('in the primary region an instance without snapshots lists none (its own backups are not replicated ones)', async () => {
      await plane.createInstance('mcp-demo-no-snapshots');
      const listed = await plane.listSnapshots('mcp-demo-no-snapshots');
      assert.deepEqual(
        listed.filter((s) => s.snapshotId.endsWith('-replicated-backups')),
        [],
      );
    });
  });

  describe('deleting instances', () => {
    it('refuses to delete without a final snapshot id unless told to skip it', async () => {
      await rejectsWithoutCalling(
        proxy,
        () => plane.deleteInstance('mcp-demo-pitr-time', { skipFinalSnapshot: false }),
        /finalSnapshotId is required unless skipFinalSnapshot/,
      );
    });

    it('deletes with a final snapshot and keeps automated backups, then polls it to deleted (moto removes it at once)', async () => {
      await plane.deleteInstance('mcp-demo-pitr-time', {
        skipFinalSnapshot: false,
        finalSnapshotId: 'mcp-demo-pitr-time-final',
      });
      const sent = proxy.calls('DeleteDBInstance')[0]!.params;
      assert.equal(sent.get('SkipFinalSnapshot'), 'false');
      assert.equal(sent.get('DeleteAutomatedBackups'), 'false');
      assert.equal(
        (await plane.describeSnapshot('mcp-demo-pitr-time-final')).instanceId,
        'mcp-demo-pitr-time',
      );
      const seen: string[] = [];
      for (;;) {
        try {
          seen.push((await plane.describeInstance('mcp-demo-pitr-time')).status);
        } catch (error) {
          assert.ok(error instanceof NotFoundError);
          break;
        }
      }
      assert.ok(
        seen.every((status) => status === 'deleting'),
        `only deleting before gone: ${seen.join()}`,
      );
    });

    it('deletes a temporary DR instance without a final snapshot; deleting it again succeeds', async () => {
      await plane.deleteInstance('mcp-demo-dr-1', {
        skipFinalSnapshot: true,
        finalSnapshotId: 'ignored-final',
      });
      assert.equal(proxy.calls('DeleteDBInstance')[0]!.params.get('SkipFinalSnapshot'), 'true');
      assert.equal(proxy.calls('DeleteDBInstance')[0]!.params.get('FinalDBSnapshotIdentifier'), null);
      await assert.rejects(plane.describeSnapshot('ignored-final'), NotFoundError);
      await assert.rejects(plane.describeInstance('mcp-demo-dr-1'), NotFoundError);
      await plane.deleteInstance('mcp-demo-dr-1', { skipFinalSnapshot: true });
    });

    it('deletes automated backups only when asked', async () => {
      await plane.deleteInstance('mcp-demo-pitr-latest', {
        skipFinalSnapshot: true,
        deleteAutomatedBackups: true,
      });
      assert.equal(proxy.calls('DeleteDBInstance')[0]!.params.get('DeleteAutomatedBackups'), 'true');
    });
  });

  describe('exports', () => {
    const exportId = 'mcp-demo-manual-20261127-120000-export';

    it('starts an export with the bucket, prefix, IAM role and KMS key, and describes it', async () => {
      const started = await plane.startExport(exportId, 'mcp-demo-manual-20261127-120000', {
        bucket: EXPORTS.bucket,
        prefix: 'manual-backups/20261127-120000',
      });
      assert.equal(started.snapshotId, 'mcp-demo-manual-20261127-120000');
      const sent = proxy.calls('StartExportTask')[0]!.params;
      assert.equal(sent.get('S3BucketName'), EXPORTS.bucket);
      assert.equal(sent.get('S3Prefix'), 'manual-backups/20261127-120000');
      assert.equal(sent.get('IamRoleArn'), EXPORTS.iamRoleArn);
      assert.equal(sent.get('KmsKeyId'), EXPORTS.kmsKeyId);
      assert.match(sent.get('SourceArn') ?? '', /:snapshot:mcp-demo-manual-20261127-120000$/);

      const described = await plane.describeExport(exportId);
      assert.equal(described.status, 'complete');
      assert.equal(described.destination, 's3://mcp-demo-backups/manual-backups/20261127-120000');
      assert.equal(described.failureCause, undefined);
    });

    it('lists the files under <prefix>/<export id>/ (moto writes none: the test puts them where RDS would)', async () => {
      await s3.send(new CreateBucketCommand({ Bucket: EXPORTS.bucket }));
      const base = `manual-backups/20261127-120000/${exportId}`;
      const keys = [
        `${base}/mcp_db/public.conversations/1/part-00000-a.gz.parquet`,
        `${base}/mcp_db/public.conversation_chunks/1/part-00000-b.gz.parquet`,
        `manual-backups/20261127-120000/another-export/mcp_db/x.parquet`,
      ];
      for (const key of keys) {
        await s3.send(new PutObjectCommand({ Bucket: EXPORTS.bucket, Key: key, Body: 'PAR1' }));
      }
      const files = await plane.listExportFiles(exportId);
      assert.deepEqual(files, [
        { location: `s3://${EXPORTS.bucket}/${keys[1]}`, sizeBytes: 4 },
        { location: `s3://${EXPORTS.bucket}/${keys[0]}`, sizeBytes: 4 },
      ]);
    });

    it('rejects an unknown export with NotFoundError naming it', async () => {
      await assert.rejects(
        plane.describeExport('no-such-export'),
        (error: unknown) => error instanceof NotFoundError && /export "no-such-export"/.test(error.message),
      );
    });

    it('refuses to export when exports are not configured, naming the variables', async () => {
      const unconfigured = new AwsRdsControlPlane({ ...deps(), exports: undefined });
      await rejectsWithoutCalling(
        proxy,
        () =>
          unconfigured.startExport('x-export', 'mcp-demo-manual-20261127-120000', {
            bucket: 'b',
            prefix: 'p',
          }),
        /DBOPS_EXPORT_BUCKET, DBOPS_EXPORT_IAM_ROLE_ARN and DBOPS_EXPORT_KMS_KEY_ID/,
      );
    });
  });

  describe('idempotent creates: a retry of the same run finds its own resource', () => {
    // Two runs of one workflow id: only the run id tells them apart.
    const ours = {
      'dbops:workflow-id': 'backup-mcp-demo-prod',
      'dbops:run-id': 'run-1',
      'dbops:purpose': 'backup',
    };
    const theirs = { ...ours, 'dbops:run-id': 'run-2' };
    // What the refusal names: the run that owns the resource.
    const ourRun = /created by workflow backup-mcp-demo-prod run run-1, not by this run/;

    it('a snapshot: the same call twice returns the one snapshot; another run is refused, named', async () => {
      const first = await plane.createSnapshot(SOURCE, 'idem-snap', ours);
      const again = await plane.createSnapshot(SOURCE, 'idem-snap', ours);
      assert.equal(again.snapshotId, first.snapshotId);
      assert.equal(again.tags['dbops:run-id'], 'run-1');
      assert.equal(proxy.calls('CreateDBSnapshot').length, 2, 'the second call reached RDS and was refused');
      const named = (await plane.listSnapshots(SOURCE)).filter((s) => s.snapshotId === 'idem-snap');
      assert.equal(named.length, 1);

      await plane.createInstance('idem-other-src');
      await assert.rejects(
        plane.createSnapshot('idem-other-src', 'idem-snap', ours),
        (error: unknown) =>
          error instanceof AlreadyExistsError && /a snapshot of instance "mcp-demo-prod"/.test(error.message),
        'the same owner asking for a snapshot of another instance is not a retry',
      );
      await assert.rejects(
        plane.createSnapshot(SOURCE, 'idem-snap', theirs),
        (error: unknown) => error instanceof AlreadyExistsError && ourRun.test(error.message),
      );
      const untagged = await plane.createSnapshot(SOURCE, 'idem-untagged').then(() => 'created');
      assert.equal(untagged, 'created');
      await assert.rejects(
        plane.createSnapshot(SOURCE, 'idem-untagged', ours),
        (error: unknown) =>
          error instanceof AlreadyExistsError && /created by no dbops run/.test(error.message),
      );
    });

    it('an instance: the same create twice returns the one instance; another run is refused, named', async () => {
      await plane.createInstance('idem-created', { tags: ours });
      const again = await plane.createInstance('idem-created', { tags: ours });
      assert.equal(again.tags['dbops:run-id'], 'run-1');
      assert.equal((await plane.listInstances()).filter((i) => i.instanceId === 'idem-created').length, 1);
      await assert.rejects(
        plane.createInstance('idem-created', { tags: theirs }),
        (error: unknown) => error instanceof AlreadyExistsError && ourRun.test(error.message),
      );
    });

    it('a snapshot restore: the same call twice returns the instance; another run is refused, named', async () => {
      const tags = { ...ours, 'dbops:purpose': 'restore' };
      const first = await plane.restoreFromSnapshot('idem-snap', 'idem-restore', tags);
      const again = await plane.restoreFromSnapshot('idem-snap', 'idem-restore', tags);
      assert.equal(again.instanceId, first.instanceId);
      assert.equal(again.tags['dbops:run-id'], 'run-1');
      const named = (await plane.listInstances()).filter((i) => i.instanceId === 'idem-restore');
      assert.equal(named.length, 1);
      await assert.rejects(
        plane.restoreFromSnapshot('idem-snap', 'idem-restore', { ...tags, 'dbops:run-id': 'run-2' }),
        (error: unknown) =>
          error instanceof AlreadyExistsError &&
          /instance "idem-restore" already exists \(available\), created by workflow backup-mcp-demo-prod run run-1, not by this run/.test(
            error.message,
          ),
      );
    });

    it('a point-in-time restore: the same call twice returns the instance; another run is refused', async () => {
      const tags = { ...ours, 'dbops:purpose': 'restore' };
      await plane.restoreToPointInTime(SOURCE, 'idem-pitr', 'latest', tags);
      const again = await plane.restoreToPointInTime(SOURCE, 'idem-pitr', 'latest', tags);
      assert.equal(again.instanceId, 'idem-pitr');
      assert.equal((await plane.listInstances()).filter((i) => i.instanceId === 'idem-pitr').length, 1);
      await assert.rejects(
        plane.restoreToPointInTime(SOURCE, 'idem-pitr', 'latest', theirs),
        (error: unknown) => error instanceof AlreadyExistsError && ourRun.test(error.message),
      );
    });

    it('an export: the same task of the same snapshot to the same place is ours; a different one is refused', async () => {
      const destination = { bucket: EXPORTS.bucket, prefix: 'idem' };
      const first = await plane.startExport('idem-snap-export', 'idem-snap', destination);
      const again = await plane.startExport('idem-snap-export', 'idem-snap', destination);
      assert.deepEqual(again, { ...first, status: again.status, percentProgress: again.percentProgress });
      assert.equal(proxy.calls('StartExportTask').length, 2);
      await assert.rejects(
        plane.startExport('idem-snap-export', 'idem-snap', { ...destination, prefix: 'elsewhere' }),
        (error: unknown) =>
          error instanceof AlreadyExistsError &&
          /export "idem-snap-export" already exists, of snapshot "idem-snap" to s3:\/\/mcp-demo-backups\/idem$/.test(
            error.message,
          ),
      );
      await assert.rejects(
        plane.startExport('idem-snap-export', 'idem-untagged', destination),
        AlreadyExistsError,
      );
    });
  });

  describe('conditions to wait out (answered by the proxy: moto is never busy)', () => {
    const refused = (code: string): Fault => ({ status: 400, code, message: `${code} (from the proxy)` });
    const showStatus = (status: string, times = 1) =>
      proxy.rewriteNext('DescribeDBInstances', times, (body) =>
        body.replace(
          '<DBInstanceStatus>available</DBInstanceStatus>',
          `<DBInstanceStatus>${status}</DBInstanceStatus>`,
        ),
      );

    it('a snapshot refused while the instance is backing-up: BusyError naming the instance and its status', async () => {
      proxy.failNext('CreateDBSnapshot', 1, refused('InvalidDBInstanceState'));
      showStatus('backing-up');
      await assert.rejects(
        plane.createSnapshot(SOURCE, 'busy-snap'),
        (error: unknown) =>
          error instanceof BusyError &&
          error.retryable &&
          error.message ===
            'waiting: instance "mcp-demo-prod" is backing-up (creating snapshot "busy-snap" of instance "mcp-demo-prod": InvalidDBInstanceState)',
      );
      await assert.rejects(plane.describeSnapshot('busy-snap'), NotFoundError);
    });

    it('a point-in-time restore refused while the source is modifying names the source', async () => {
      proxy.failNext('RestoreDBInstanceToPointInTime', 1, refused('InvalidDBInstanceState'));
      // The source is looked up before the restore and again after the refusal.
      showStatus('modifying', 2);
      await assert.rejects(
        plane.restoreToPointInTime(SOURCE, 'busy-pitr', 'latest'),
        (error: unknown) =>
          error instanceof BusyError &&
          /^waiting: instance "mcp-demo-prod" is modifying \(/.test(error.message),
      );
    });

    it('an instance that is failed will not get ready: InvalidStateError at once', async () => {
      proxy.failNext('CreateDBSnapshot', 1, refused('InvalidDBInstanceState'));
      showStatus('storage-full');
      await assert.rejects(
        plane.createSnapshot(SOURCE, 'busy-snap'),
        (error: unknown) =>
          error instanceof InvalidStateError &&
          /instance "mcp-demo-prod" is storage-full$/.test(error.message),
      );
    });

    it('a delete refused while the instance is still creating waits; while it is already deleting, it is done', async () => {
      proxy.failNext('DeleteDBInstance', 1, refused('InvalidDBInstanceState'));
      showStatus('creating');
      await assert.rejects(
        plane.deleteInstance(SOURCE, { skipFinalSnapshot: true }),
        (error: unknown) =>
          error instanceof BusyError &&
          /^waiting: instance "mcp-demo-prod" is creating \(deleting instance/.test(error.message),
      );
      proxy.failNext('DeleteDBInstance', 1, refused('InvalidDBInstanceState'));
      showStatus('deleting');
      await plane.deleteInstance(SOURCE, { skipFinalSnapshot: true });
      assert.equal(
        (await plane.describeInstance(SOURCE)).status,
        'available',
        'both were answered by the proxy',
      );
    });

    it('no capacity for a restore, and an export source not ready: BusyError', async () => {
      proxy.failNext('RestoreDBInstanceFromDBSnapshot', 1, refused('InsufficientDBInstanceCapacity'));
      await assert.rejects(
        plane.restoreFromSnapshot('idem-snap', 'busy-restore'),
        (error: unknown) =>
          error instanceof BusyError && /^waiting: restoring snapshot "idem-snap"/.test(error.message),
      );
      proxy.failNext('StartExportTask', 1, refused('InvalidExportSourceState'));
      await assert.rejects(
        plane.startExport('busy-export', 'idem-snap', { bucket: EXPORTS.bucket, prefix: '' }),
        (error: unknown) => error instanceof BusyError && /InvalidExportSourceState/.test(error.message),
      );
    });
  });

  describe('faults injected by the proxy', () => {
    it(`retries throttling inside the SDK and then succeeds (2 Throttling answers, 3 attempts of ${AWS_MAX_ATTEMPTS})`, async () => {
      proxy.failNext('DescribeDBSnapshots', 2, THROTTLING);
      const snapshot = await plane.describeSnapshot('mcp-demo-manual-20261127-120000');
      assert.equal(snapshot.status, 'available');
      assert.equal(proxy.calls('DescribeDBSnapshots').length, 3);
    });

    it('gives up after the SDK attempts with TransientError, for Temporal to retry', async () => {
      proxy.failNext('DescribeDBSnapshots', AWS_MAX_ATTEMPTS, THROTTLING);
      await assert.rejects(
        plane.describeSnapshot('mcp-demo-manual-20261127-120000'),
        (error: unknown) =>
          error instanceof TransientError && error.retryable && /throttled/.test(error.message),
      );
      assert.equal(proxy.calls('DescribeDBSnapshots').length, AWS_MAX_ATTEMPTS);
    });

    it('treats a 5xx as transient', async () => {
      proxy.failNext('DescribeDBInstances', AWS_MAX_ATTEMPTS, {
        status: 503,
        code: 'InternalFailure',
        message: 'try again',
      });
      await assert.rejects(plane.describeInstance(SOURCE), TransientError);
      assert.equal(proxy.calls('DescribeDBInstances').length, AWS_MAX_ATTEMPTS);
    });

    it('fails a non-retryable fault on the first attempt', async () => {
      proxy.failNext('CreateDBSnapshot', 1, {
        status: 400,
        code: 'InvalidParameterValue',
        message: 'The parameter DBSnapshotIdentifier is not valid',
      });
      await assert.rejects(
        plane.createSnapshot(SOURCE, 'mcp-demo-manual-20261127-140000'),
        (error: unknown) => error instanceof InvalidInputError && /InvalidParameterValue/.test(error.message),
      );
      assert.equal(proxy.calls('CreateDBSnapshot').length, 1);
      await assert.rejects(plane.describeSnapshot('mcp-demo-manual-20261127-140000'), NotFoundError);
    });
  });
});

describe('aws provider: the snapshot quota (a second moto with MOTO_RDS_SNAPSHOT_LIMIT)', () => {
  let moto: MotoServer;
  let plane: AwsRdsControlPlane;
  let clients: ReturnType<typeof createAwsClients>;

  before(async () => {
    // Moto counts the automated snapshot taken at creation: a limit of 2 leaves room for one manual.
    moto = await startMoto({ MOTO_RDS_SNAPSHOT_LIMIT: '2' });
    clients = createAwsClients({
      region: moto.region,
      endpoint: moto.endpoint,
      credentials: moto.credentials,
    });
    await createRdsNetwork(moto, SETTINGS);
    plane = new AwsRdsControlPlane({
      ...clients,
      settings: SETTINGS,
      exports: undefined,
      connectAs: { database: 'mcp_db', user: 'dbops' },
    });
    await plane.createInstance(SOURCE);
  });
  after(async () => {
    clients?.rds.destroy();
    clients?.s3.destroy();
    await moto?.stop();
  });

  it('fails with QuotaExceededError naming the snapshot once the quota is reached', async () => {
    await plane.createSnapshot(SOURCE, 'within-quota');
    await assert.rejects(
      plane.createSnapshot(SOURCE, 'over-quota'),
      (error: unknown) => error instanceof QuotaExceededError && /snapshot "over-quota"/.test(error.message),
    );
    await assert.rejects(plane.describeSnapshot('over-quota'), NotFoundError);
  });
});

describe('aws provider: our own logic for what moto never reports', () => {
  it('maps RDS instance status words, keeping unknown ones transitional', () => {
    const cases: [string, string][] = [
      ['available', 'available'],
      ['creating', 'creating'],
      ['backing-up', 'backing-up'],
      ['modifying', 'modifying'],
      ['rebooting', 'modifying'],
      ['storage-optimization', 'modifying'],
      ['configuring-iam-database-auth', 'modifying'],
      ['deleting', 'deleting'],
      ['stopped', 'stopped'],
      ['failed', 'failed'],
      ['restore-error', 'failed'],
      ['incompatible-parameters', 'failed'],
      ['storage-full', 'failed'],
      ['a-word-rds-adds-later', 'modifying'],
    ];
    assert.deepEqual(
      cases.map(([word]) => [word, instanceStatus(word)]),
      cases,
    );
  });

  it('maps snapshot and export status words', () => {
    assert.deepEqual(['creating', 'available', 'deleting', 'failed', 'copying'].map(snapshotStatus), [
      'creating',
      'available',
      'deleting',
      'failed',
      'creating',
    ]);
    assert.deepEqual(
      ['STARTING', 'in_progress', 'COMPLETE', 'failed', 'canceling', 'CANCELED'].map(exportStatus),
      ['starting', 'in-progress', 'complete', 'failed', 'in-progress', 'canceled'],
    );
  });

  it('refuses a restore time before the earliest restorable time, giving the window', () => {
    const source = {
      instanceId: SOURCE,
      earliestRestorableTime: '2026-11-01T00:00:00.000Z',
      latestRestorableTime: '2026-11-27T12:00:00.000Z',
    } as InstanceDescription;
    assert.throws(
      () => assertRestorable(source, new Date('2026-10-31T23:59:59Z')),
      (error: unknown) =>
        error instanceof RestoreTimeOutOfRangeError &&
        error.message.includes('[2026-11-01T00:00:00.000Z, 2026-11-27T12:00:00.000Z]'),
    );
    assertRestorable(source, new Date('2026-11-01T00:00:00Z'));
    assertRestorable(source, new Date('2026-11-27T12:00:00Z'));
  });
});
