/**
 * `dbops dr-test --region R`: the DR test of the primary run in its backup region, from the
 * automated backups replicated there, by the worker serving `<task queue>-R`. The worker here is
 * the aws provider in us-west-2 on moto, as far as moto allows: moto replicates no backups and
 * cannot restore from one, so the fault proxy gives the replicated backups RDS would list in
 * us-west-2 and refuses the restore; the test checks that the run went to that region's worker,
 * found the replicated backups, and asked RDS for the right restore, and that the CLI reports the
 * failed test. `dbops restore --to latest` there takes the same path.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';

import { createActivities } from '../../activities';
import { AwsRdsControlPlane, createAwsClients } from '../../activities/control-plane/aws-rds';
import { createDatabaseConnector } from '../../activities/postgres/connect';
import { directoryReportStore } from '../../activities/recovery/reports';
import type { DrTestReport } from '../../workflows/lib/recovery';
import { utcDate } from '../../workflows/lib/recovery';
import { runDbops } from '../helpers/cli';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy';
import { startMoto, type MotoServer } from '../helpers/moto';
import { rdsTestSettings } from '../helpers/moto-rds';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';

const SOURCE = 'mcp-demo-prod';
const REGION = 'us-west-2';
const BACKUPS_ARN = `arn:aws:rds:${REGION}:123456789012:auto-backup:ab-REPLICATEDFROMUSEAST1`;
const SETTINGS = rdsTestSettings({
  subnetGroup: 'mcp-demo-prod-subnets',
  securityGroupIds: ['sg-0fedcba9'],
  parameterGroup: 'mcp-demo-prod-postgres15',
});

/** What RDS lists in the backup region: the primary's backups, replicated from us-east-1. */
const REPLICATED = `<DescribeDBInstanceAutomatedBackupsResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBInstanceAutomatedBackupsResult><DBInstanceAutomatedBackups><DBInstanceAutomatedBackup><DBInstanceIdentifier>${SOURCE}</DBInstanceIdentifier><DBInstanceAutomatedBackupsArn>${BACKUPS_ARN}</DBInstanceAutomatedBackupsArn><Region>us-east-1</Region><Status>replicating</Status><AllocatedStorage>100</AllocatedStorage><EngineVersion>15.7</EngineVersion><RestoreWindow><EarliestTime>2026-11-01T00:00:00Z</EarliestTime><LatestTime>2026-11-27T11:55:00Z</LatestTime></RestoreWindow></DBInstanceAutomatedBackup></DBInstanceAutomatedBackups></DescribeDBInstanceAutomatedBackupsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeDBInstanceAutomatedBackupsResponse>`;

describe('dbops dr-test --region (a worker of the backup region, the aws provider on moto as far as moto allows)', function () {
  this.timeout(180_000);
  let moto: MotoServer;
  let proxy: FaultProxy;
  let clients: ReturnType<typeof createAwsClients>;
  let env: TestWorkflowEnvironment;
  let worker: Worker;
  let running: Promise<void>;
  let stateDir: string;
  const taskQueue = 'cli-dr-region';

  before(async () => {
    [moto, env] = await Promise.all([startMoto(), createDevServerEnv()]);
    stateDir = await mkdtemp(path.join(os.tmpdir(), 'dbops-dr-region-'));
    proxy = await startFaultProxy(moto.endpoint);
    clients = createAwsClients({ region: REGION, endpoint: proxy.endpoint, credentials: moto.credentials });
    const plane = new AwsRdsControlPlane({
      ...clients,
      settings: SETTINGS,
      exports: undefined,
      connectAs: { database: 'mcp_db', user: 'dbops' },
    });
    // The checks never run (the restore is refused): no database is reached.
    const database = { host: '127.0.0.1', port: 5432, database: 'mcp_db', user: 'dbops' };
    worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: `${taskQueue}-${REGION}`,
      workflowBundle: await workflowBundle(),
      activities: createActivities({
        database,
        controlPlane: plane,
        connector: createDatabaseConnector({ primary: database }),
        storage: { reports: directoryReportStore(path.join(stateDir, 'reports')), exportBucket: undefined },
      }),
    });
    running = worker.run();
  });
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

  it('runs on <task queue>-us-west-2, restores the replicated backups by their ARN to the latest point as a cheap DR copy, and reports the refused restore (moto cannot restore from an ARN: the proxy refuses it)', async () => {
    proxy.rewriteNext('DescribeDBInstanceAutomatedBackups', 50, () => REPLICATED);
    proxy.failNext('RestoreDBInstanceToPointInTime', 50, {
      status: 400,
      code: 'InvalidParameterCombination',
      message: 'from the proxy: moto cannot restore from SourceDBInstanceAutomatedBackupsArn',
    });
    const run = await runDbops({ address: env.address, taskQueue, stateDir }, [
      'dr-test',
      '--instance',
      SOURCE,
      '--region',
      REGION,
      '--json',
    ]);
    assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
    const workflowId = `dr-test-${SOURCE}-${REGION}-${utcDate(new Date())}`;
    const report = JSON.parse(run.stdout) as DrTestReport;
    assert.equal(report.workflowId, workflowId);
    assert.deepEqual(report.snapshot, {
      snapshotId: 'rds:mcp-demo-prod-replicated-backups',
      type: 'automated',
      createdAt: '2026-11-27T11:55:00.000Z',
      sizeBytes: 100 * 2 ** 30,
    });
    assert.match(
      report.error ?? '',
      /restoring the automated backups of instance "mcp-demo-prod" replicated from us-east-1 to us-west-2 to its latest restorable time/,
    );
    const sent = proxy.calls('RestoreDBInstanceToPointInTime').map((call) => call.params);
    assert.equal(sent.length, 1, 'refused as bad input: not retried');
    assert.equal(sent[0]!.get('SourceDBInstanceAutomatedBackupsArn'), BACKUPS_ARN);
    assert.equal(sent[0]!.get('UseLatestRestorableTime'), 'true');
    assert.equal(sent[0]!.get('TargetDBInstanceIdentifier'), `${SOURCE}-dr-test-${utcDate(new Date())}`);
    assert.equal(sent[0]!.get('DBInstanceClass'), 'db.t3.medium');
    assert.equal(sent[0]!.get('DBSubnetGroupName'), SETTINGS.subnetGroup);
    const description = await env.client.workflow.getHandle(workflowId).describe();
    assert.equal(description.taskQueue, `${taskQueue}-${REGION}`);
  });

  it("dbops restore --to latest on the backup region's worker restores the replicated backups of the primary, which is not there (moto cannot restore from an ARN: the proxy refuses it)", async () => {
    proxy.clear();
    proxy.rewriteNext('DescribeDBInstanceAutomatedBackups', 50, () => REPLICATED);
    proxy.failNext('RestoreDBInstanceToPointInTime', 50, {
      status: 400,
      code: 'InvalidParameterCombination',
      message: 'from the proxy: moto cannot restore from SourceDBInstanceAutomatedBackupsArn',
    });
    const run = await runDbops({ address: env.address, taskQueue: `${taskQueue}-${REGION}`, stateDir }, [
      'restore',
      '--instance',
      SOURCE,
      '--to',
      'latest',
      '--target',
      'mcp-demo-prod-west',
    ]);
    assert.notEqual(run.code, 0, run.stdout);
    assert.match(
      run.stderr,
      /restoring the automated backups of instance "mcp-demo-prod" replicated from us-east-1 to us-west-2 to its latest restorable time as instance "mcp-demo-prod-west"/,
    );
    const sent = proxy.calls('RestoreDBInstanceToPointInTime').map((call) => call.params);
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.get('SourceDBInstanceAutomatedBackupsArn'), BACKUPS_ARN);
    assert.equal(sent[0]!.get('DeletionProtection'), 'true', 'a real recovery');
    assert.equal(proxy.calls('DescribeDBInstances')[0]?.params.get('DBInstanceIdentifier'), SOURCE);
  });

  it('refuses a region that is not one before starting anything', async () => {
    const run = await runDbops({ address: env.address, stateDir }, [
      'dr-test',
      '--instance',
      SOURCE,
      '--region',
      'west',
    ]);
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /--region "west" is not an AWS region such as us-west-2/);
  });
});
