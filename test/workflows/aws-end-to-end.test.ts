/**
 * Every recovery and deploy workflow driven end to end on the aws provider: a real worker on a
 * dev server, the provider talking to moto through the fault proxy, whose state-delay layer makes
 * instances, snapshots and exports pass through RDS's transitional states for seconds, so each
 * workflow's waits poll through them. moto's instances have no database: the proxy points their
 * endpoints at one local Postgres (verified TLS, the worker's role `dbops`), so the database half
 * of each workflow (migrations, DR checks) runs for real. One moto server, one dev server and one
 * worker serve the whole suite; the tests run in order (the deploy creates the schema the others
 * restore and check).
 */
import assert from 'node:assert/strict';

import { CreateBucketCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { RDSClient } from '@aws-sdk/client-rds';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { WorkflowFailedError } from '@temporalio/client';
import { Worker } from '@temporalio/worker';

import { createActivities } from '../../activities';
import { AwsRdsControlPlane, createAwsClients } from '../../activities/control-plane/aws-rds';
import { createDatabaseConnector, withClient } from '../../activities/postgres/connect';
import { setUpWorkerRole, WORKER_ROLE } from '../../activities/postgres/worker-role';
import { s3ReportStore } from '../../activities/recovery/reports';
import { backup, deployMigration, drTest, pitrRestore, snapshotRestore, sweepOrphans } from '../../workflows';
import { OWNER_TAGS } from '../../workflows/lib/owner-tags';
import { seedDemoData } from '../../workers/seed';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy';
import { startMoto, type MotoServer } from '../helpers/moto';
import { createRdsNetwork, rdsTestSettings } from '../helpers/moto-rds';
import { startThrowawayCluster, type ThrowawayCluster } from '../helpers/postgres';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';
import { makeTestPki, type TestPki } from '../helpers/tls';

const SOURCE = 'mcp-demo-prod';
const BUCKET = 'dbops-exports-e2e';
const SETTINGS = rdsTestSettings();
/** How long each transitional state lasts: the workflows poll every second, so each is seen. */
const PHASE_MS = 2000;
const fast = { pollInterval: '1 second' };

describe('every workflow on the aws provider (moto with RDS state delays; the database: a local Postgres behind moto endpoints)', function () {
  this.timeout(180_000);
  let moto: MotoServer;
  let proxy: FaultProxy;
  let clients: { rds: RDSClient; s3: S3Client };
  let plane: AwsRdsControlPlane;
  let env: TestWorkflowEnvironment;
  let pki: TestPki;
  let cluster: ThrowawayCluster;
  let worker: Worker;
  let running: Promise<void>;
  const taskQueue = 'aws-end-to-end';
  let database: { host: string; port: number; database: string; user: string };

  before(async () => {
    pki = await makeTestPki();
    [moto, env, cluster] = await Promise.all([
      startMoto(),
      createDevServerEnv(),
      startThrowawayCluster({}, pki.server),
    ]);
    // The application database with the worker's role, set up as a deployer does on RDS.
    await withClient(cluster.database, (client) => client.query('CREATE DATABASE mcp_db'));
    await withClient({ ...cluster.database, database: 'mcp_db' }, setUpWorkerRole);
    database = { ...cluster.database, database: 'mcp_db', user: WORKER_ROLE };

    proxy = await startFaultProxy(moto.endpoint);
    proxy.pointEndpointsAt({ host: '127.0.0.1', port: cluster.database.port });
    proxy.completeAutomatedBackups();
    clients = createAwsClients({
      region: moto.region,
      endpoint: proxy.endpoint,
      credentials: moto.credentials,
    });
    await clients.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    plane = new AwsRdsControlPlane({
      ...clients,
      settings: SETTINGS,
      exports: {
        bucket: BUCKET,
        iamRoleArn: 'arn:aws:iam::123456789012:role/rds-export',
        kmsKeyId: 'arn:aws:kms:us-east-1:123456789012:key/0b1d2c3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e',
      },
      connectAs: { database: 'mcp_db', user: WORKER_ROLE },
    });
    await createRdsNetwork(moto, SETTINGS);
    await plane.createInstance(SOURCE);
    // From here on, what the workflows create passes through RDS's transitional states.
    proxy.delayStates(PHASE_MS);

    worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities({
        database,
        controlPlane: plane,
        // Verified TLS as on aws; the local server does not ask for a password, so no IAM token is checked.
        connector: createDatabaseConnector({ primary: database, caBundlePath: pki.ca, requireTls: true }),
        storage: { reports: s3ReportStore(clients.s3, BUCKET, 'reports'), exportBucket: BUCKET },
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
    await cluster?.stop();
    await pki?.remove();
  });

  const execute = <A extends unknown[], R>(
    workflow: (...args: A) => Promise<R>,
    workflowId: string,
    ...args: A
  ) => env.client.workflow.execute(workflow, { taskQueue, workflowId, args });

  it('deployMigration: a pre-migration snapshot waited for through creating, then the migrations applied as dbops', async () => {
    const result = await execute(deployMigration, 'e2e-deploy', { instanceId: SOURCE, lockTimeoutMs: 1000 });
    assert.equal(result.status, 'migrated');
    assert.ok(result.applied.includes('0001_conversations'), result.applied.join(', '));
    assert.match(result.snapshotId ?? '', new RegExp(`^${SOURCE}-pre-migration-\\d{8}-\\d{6}$`));
    assert.deepEqual(proxy.statesShown('snapshot', result.snapshotId!), ['creating', 'available']);
    const snapshot = await plane.describeSnapshot(result.snapshotId!);
    assert.equal(snapshot.tags[OWNER_TAGS.purpose], 'pre-migration');
    const owners = await withClient(database, async (client) => {
      const { rows } = await client.query<{ owner: string }>(
        `SELECT DISTINCT tableowner AS owner FROM pg_tables WHERE schemaname = 'public'`,
      );
      return rows.map((row) => row.owner);
    });
    assert.deepEqual(owners, [WORKER_ROLE], 'the tables the migrations created belong to the worker role');
    // Demo rows for the restores and the DR test below (the schema is now in place).
    await seedDemoData(database, { conversations: 300, chunksPerConversation: 2 });
  });

  it('backup with export: waits through the snapshot creating and the export STARTING then IN_PROGRESS', async () => {
    const result = await execute(backup, 'e2e-backup', {
      instanceId: SOURCE,
      snapshotId: 'e2e-backup',
      export: true,
      timeouts: fast,
    });
    assert.equal(result.snapshotId, 'e2e-backup');
    assert.ok(result.snapshotSeconds !== null && result.snapshotSeconds >= 1, `${result.snapshotSeconds} s`);
    assert.equal(result.export?.status, 'complete');
    assert.equal(result.export.destination.startsWith(`s3://${BUCKET}`), true, result.export.destination);
    assert.deepEqual(proxy.statesShown('snapshot', 'e2e-backup'), ['creating', 'available']);
    assert.deepEqual(proxy.statesShown('export', result.export.exportId), [
      'STARTING',
      'IN_PROGRESS',
      'complete',
    ]);
  });

  it('snapshotRestore: waits through creating, backing-up and modifying; the endpoint reaches the data', async () => {
    const result = await execute(snapshotRestore, 'e2e-snapshot-restore', {
      snapshotId: 'e2e-backup',
      targetInstanceId: 'e2e-from-snapshot',
      timeouts: fast,
    });
    assert.equal(result.targetInstanceId, 'e2e-from-snapshot');
    // As RDS does: available once restored, then modifying while production's monitoring is set.
    assert.deepEqual(proxy.statesShown('instance', 'e2e-from-snapshot'), [
      'creating',
      'backing-up',
      'available',
      'modifying',
      'available',
    ]);
    const conversations = await withClient(result.endpoint, async (client) => {
      const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM conversations');
      return rows[0]!.n;
    });
    assert.equal(conversations, 300);
  });

  it('a snapshotRestore cancelled while its real recovery is creating fails saying the protected instance is kept and how to remove it', async () => {
    const target = 'e2e-cancelled-restore';
    await plane.createSnapshot(SOURCE, 'e2e-cancel-source');
    for (
      let i = 0;
      i < 300 && (await plane.describeSnapshot('e2e-cancel-source')).status !== 'available';
      i++
    ) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const handle = await env.client.workflow.start(snapshotRestore, {
      taskQueue,
      workflowId: 'e2e-cancelled-restore',
      args: [{ snapshotId: 'e2e-cancel-source', targetInstanceId: target, timeouts: fast }],
    });
    for (let i = 0; i < 300 && proxy.statesShown('instance', target).length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.deepEqual(proxy.statesShown('instance', target), ['creating']);
    await handle.cancel();
    const failure = await handle.result().then(
      () => assert.fail('the cancelled restore completed'),
      (error: unknown) => error,
    );
    assert.ok(failure instanceof WorkflowFailedError, String(failure));
    assert.match(
      failure.cause?.message ?? '',
      new RegExp(
        `^restore cancelled, but the instance ${target} it created is kept: .*deletion protection.*` +
          `aws rds modify-db-instance --db-instance-identifier ${target} --no-deletion-protection --apply-immediately, ` +
          `then aws rds delete-db-instance --db-instance-identifier ${target} --skip-final-snapshot$`,
      ),
    );
    const left = (await plane.listInstances()).map((instance) => instance.instanceId);
    assert.ok(left.includes(target), `the protected instance is still there: ${left.join(', ')}`);
  });

  it("pitrRestore to the latest restorable time (the restore window: moto's automated backups completed as RDS reports them): waits through creating, backing-up and modifying", async () => {
    const result = await execute(pitrRestore, 'e2e-pitr', {
      instanceId: SOURCE,
      restoreTime: 'latest',
      targetInstanceId: 'e2e-pitr',
      timeouts: fast,
    });
    assert.equal(result.targetInstanceId, 'e2e-pitr');
    assert.deepEqual(proxy.statesShown('instance', 'e2e-pitr'), [
      'creating',
      'backing-up',
      'available',
      'modifying',
      'available',
    ]);
    assert.deepEqual(result.endpoint, { ...database });
  });

  it('drTest: restores the newest snapshot, checks the copy for real, deletes it and writes the report to S3', async () => {
    const report = await execute(drTest, 'e2e-dr-test', { instanceId: SOURCE, timeouts: fast });
    const failed = report.checks.filter((check) => check.status === 'failed');
    assert.deepEqual(failed, []);
    assert.equal(report.ok, true, report.error ?? '');
    assert.ok(report.checks.length > 0);
    assert.ok(report.rtoSeconds !== null && report.rtoSeconds >= 2, `RTO ${report.rtoSeconds} s`);
    assert.equal(report.temporaryInstanceDeleted, true);
    assert.deepEqual(proxy.statesShown('instance', report.temporaryInstanceId).slice(0, 3), [
      'creating',
      'backing-up',
      'available',
    ]);
    const left = (await plane.listInstances()).map((instance) => instance.instanceId);
    assert.ok(!left.includes(report.temporaryInstanceId), left.join(', '));
    const json = report.reportLocations.find((location) => location.endsWith('.json'));
    assert.match(json ?? '', new RegExp(`^s3://${BUCKET}/reports/`));
    const stored = await clients.s3.send(
      new GetObjectCommand({ Bucket: BUCKET, Key: json!.slice(`s3://${BUCKET}/`.length) }),
    );
    const body = JSON.parse(await stored.Body!.transformToString()) as { ok: boolean; workflowId: string };
    assert.deepEqual([body.ok, body.workflowId], [true, 'e2e-dr-test']);
  });

  it('sweepOrphans: deletes the copy of a DR test terminated while its copy was creating', async () => {
    const handle = await env.client.workflow.start(drTest, {
      taskQueue,
      workflowId: 'e2e-orphaned-dr-test',
      args: [{ instanceId: SOURCE, timeouts: fast }],
    });
    let copy: string | undefined;
    for (let i = 0; i < 300 && copy === undefined; i++) {
      copy = (await plane.listInstances()).find(
        (instance) => instance.tags[OWNER_TAGS.workflowId] === 'e2e-orphaned-dr-test',
      )?.instanceId;
      if (copy === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(copy, 'the DR test restored its copy');
    // The copy has the name of the DR test's above (one a day): its latest state is this one's.
    assert.equal(proxy.statesShown('instance', copy).at(-1), 'creating');
    await handle.terminate('left behind on purpose');
    const report = await execute(sweepOrphans, 'e2e-sweep', { timeouts: fast });
    assert.deepEqual(
      report.removed.map((instance) => instance.instanceId),
      [copy],
    );
    const left = (await plane.listInstances()).map((instance) => instance.instanceId);
    assert.ok(!left.includes(copy), left.join(', '));
  });
});
