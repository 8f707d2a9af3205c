/**
 * What an RDS instance needs to exist on moto (a DB subnet group and a DB parameter group), and the
 * provider settings the aws tests start from.
 */
import { CreateDBParameterGroupCommand, CreateDBSubnetGroupCommand, RDSClient } from '@aws-sdk/client-rds';

import type { RdsConfig } from '../../activities/config-types';
import type { MotoServer } from './moto';

/** The aws provider's settings in tests: production's class and Multi-AZ, DR copies on db.t3.medium. */
export function rdsTestSettings(overrides: Partial<RdsConfig> = {}): RdsConfig {
  return {
    subnetGroup: 'mcp-demo-db',
    securityGroupIds: ['sg-0123abcd'],
    multiAz: true,
    parameterGroup: 'mcp-demo-postgres15',
    instanceClass: 'db.r5.large',
    engineVersion: '15.7',
    allocatedStorageGb: 100,
    tags: {},
    drInstanceClass: 'db.t3.medium',
    recovery: {
      backupRetentionDays: 30,
      monitoringIntervalSeconds: 0,
      monitoringRoleArn: undefined,
      performanceInsightsKmsKeyId: undefined,
      performanceInsightsRetentionDays: 7,
      logExports: ['postgresql', 'upgrade'],
      maxAllocatedStorageGb: 1000,
      caCertificateIdentifier: 'rds-ca-rsa2048-g1',
    },
    ...overrides,
  };
}

/**
 * Creates the subnet group (on two subnets of moto's default VPC) and the parameter group that
 * moto checks for on every create and restore. EC2 is reached with one raw Query call (moto does
 * not check signatures), so the project needs no EC2 client.
 */
export async function createRdsNetwork(
  moto: MotoServer,
  names: { subnetGroup: string; parameterGroup: string },
): Promise<void> {
  const answer = await fetch(`${moto.endpoint}/`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `AWS4-HMAC-SHA256 Credential=testing/20260101/${moto.region}/ec2/aws4_request, SignedHeaders=host, Signature=0`,
    },
    body: 'Action=DescribeSubnets&Version=2016-11-15',
  });
  const subnetIds = [...(await answer.text()).matchAll(/<subnetId>([^<]+)<\/subnetId>/g)].map((m) => m[1]!);
  if (subnetIds.length < 2)
    throw new Error(`moto's default VPC has ${subnetIds.length} subnets, expected 2 or more`);
  const rds = new RDSClient({ region: moto.region, endpoint: moto.endpoint, credentials: moto.credentials });
  try {
    await rds.send(
      new CreateDBSubnetGroupCommand({
        DBSubnetGroupName: names.subnetGroup,
        DBSubnetGroupDescription: 'database subnets',
        SubnetIds: subnetIds.slice(0, 2),
      }),
    );
    await rds.send(
      new CreateDBParameterGroupCommand({
        DBParameterGroupName: names.parameterGroup,
        DBParameterGroupFamily: 'postgres15',
        Description: 'dbops parameters',
      }),
    );
  } finally {
    rds.destroy();
  }
}
