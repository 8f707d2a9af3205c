import assert from 'node:assert/strict';

import {
  CreateDBInstanceCommand,
  CreateDBSnapshotCommand,
  DescribeDBSnapshotsCommand,
  RDSClient,
} from '@aws-sdk/client-rds';

import { startMoto, type MotoServer } from './moto';

describe('moto server (AWS API peer on loopback)', () => {
  let moto: MotoServer;
  let rds: RDSClient;
  before(async () => {
    moto = await startMoto();
    rds = new RDSClient({ endpoint: moto.endpoint, region: moto.region, credentials: moto.credentials });
  });
  after(async () => {
    rds?.destroy();
    await moto?.stop();
  });

  it('creates a DB instance and a snapshot of it through @aws-sdk/client-rds', async () => {
    const created = await rds.send(
      new CreateDBInstanceCommand({
        DBInstanceIdentifier: 'mcp-demo-prod',
        DBInstanceClass: 'db.r5.large',
        Engine: 'postgres',
        EngineVersion: '15.7',
        AllocatedStorage: 100,
        MasterUsername: 'dbops',
        MasterUserPassword: 'not-a-real-secret',
      }),
    );
    assert.equal(created.DBInstance?.DBInstanceIdentifier, 'mcp-demo-prod');

    const snapshot = await rds.send(
      new CreateDBSnapshotCommand({
        DBInstanceIdentifier: 'mcp-demo-prod',
        DBSnapshotIdentifier: 'mcp-demo-manual-20261127-120000',
      }),
    );
    assert.equal(snapshot.DBSnapshot?.DBInstanceIdentifier, 'mcp-demo-prod');

    const listed = await rds.send(new DescribeDBSnapshotsCommand({ DBInstanceIdentifier: 'mcp-demo-prod' }));
    const byType = (type: string) =>
      listed.DBSnapshots?.filter((s) => s.SnapshotType === type).map((s) => s.DBSnapshotIdentifier);
    assert.deepEqual(byType('manual'), ['mcp-demo-manual-20261127-120000']);
    // Like RDS, moto takes an automated backup of a new instance.
    assert.equal(byType('automated')?.length, 1);
  });

  it('starts empty again after a reset', async () => {
    await moto.reset();
    const listed = await rds.send(new DescribeDBSnapshotsCommand({}));
    assert.deepEqual(listed.DBSnapshots ?? [], []);
  });
});
