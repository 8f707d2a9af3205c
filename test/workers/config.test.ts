import assert from 'node:assert/strict';

import path from 'node:path';

import { ConfigError, loadConfig } from '../../workers/config';

/** The aws provider's required variables (besides AWS_REGION). */
const AWS_REQUIRED = {
  DBOPS_RDS_SUBNET_GROUP: 'mcp-demo-db',
  DBOPS_RDS_SECURITY_GROUP_IDS: 'sg-0123abcd, sg-0456ef78',
  DBOPS_RDS_PARAMETER_GROUP: 'mcp-demo-postgres15',
  PGSSLROOTCERT: '/etc/ssl/rds-global-bundle.pem',
};

describe('config', () => {
  it('has working defaults for the embedded local stack', () => {
    const config = loadConfig({});
    assert.deepEqual(config.temporal, {
      address: 'localhost:7233',
      namespace: 'default',
      taskQueue: 'dbops',
      uiPort: 8233,
    });
    assert.equal(config.provider, 'local');
    assert.equal(config.instanceId, 'mcp-demo-prod');
    assert.equal(config.aws, undefined);
  });

  it('reads every variable', () => {
    const config = loadConfig({
      TEMPORAL_ADDRESS: 'temporal.internal:7233',
      TEMPORAL_NAMESPACE: 'ops',
      DBOPS_TASK_QUEUE: 'dbops-prod',
      DBOPS_PROVIDER: 'aws',
      DBOPS_INSTANCE_ID: 'mcp-demo-prod',
      AWS_REGION: 'us-east-1',
      PGHOST: 'db.internal',
      PGPORT: '6432',
      PGDATABASE: 'app',
      PGUSER: 'dbops',
      ...AWS_REQUIRED,
    });
    assert.equal(config.temporal.address, 'temporal.internal:7233');
    assert.deepEqual(config.database, { host: 'db.internal', port: 6432, database: 'app', user: 'dbops' });
    assert.equal(config.aws?.region, 'us-east-1');
    assert.equal(config.aws?.endpoint, undefined);
  });

  it('reads the aws provider settings, with Multi-AZ, IAM auth and no exports by default', () => {
    const config = loadConfig({ DBOPS_PROVIDER: 'aws', AWS_REGION: 'us-east-1', ...AWS_REQUIRED });
    assert.deepEqual(config.aws?.rds, {
      subnetGroup: 'mcp-demo-db',
      securityGroupIds: ['sg-0123abcd', 'sg-0456ef78'],
      multiAz: true,
      parameterGroup: 'mcp-demo-postgres15',
      instanceClass: 'db.r5.large',
      engineVersion: '15.7',
      allocatedStorageGb: 100,
      tags: {},
    });
    assert.equal(config.aws?.exports, undefined);
    assert.deepEqual(config.aws?.connection, {
      auth: 'iam',
      caBundlePath: path.resolve('/etc/ssl/rds-global-bundle.pem'),
      replica: undefined,
    });
  });

  it('reads tags, exports and a read replica on the primary port', () => {
    const config = loadConfig({
      DBOPS_PROVIDER: 'aws',
      AWS_REGION: 'us-east-1',
      ...AWS_REQUIRED,
      PGPORT: '6432',
      DBOPS_RDS_MULTI_AZ: 'false',
      DBOPS_RDS_INSTANCE_CLASS: 'db.t4g.micro',
      DBOPS_RDS_TAGS: 'Environment=production, Application=mcp-demo,Note=a=b',
      DBOPS_EXPORT_BUCKET: 'mcp-demo-backups',
      DBOPS_EXPORT_IAM_ROLE_ARN: 'arn:aws:iam::123456789012:role/rds-export-role',
      DBOPS_EXPORT_KMS_KEY_ID: 'arn:aws:kms:us-east-1:123456789012:key/abcd',
      DBOPS_DB_AUTH: 'password',
      DBOPS_DB_REPLICA_HOST: 'replica.internal',
    });
    assert.equal(config.aws?.rds.multiAz, false);
    assert.equal(config.aws?.rds.instanceClass, 'db.t4g.micro');
    assert.deepEqual(config.aws?.rds.tags, {
      Environment: 'production',
      Application: 'mcp-demo',
      Note: 'a=b',
    });
    assert.deepEqual(config.aws?.exports, {
      bucket: 'mcp-demo-backups',
      iamRoleArn: 'arn:aws:iam::123456789012:role/rds-export-role',
      kmsKeyId: 'arn:aws:kms:us-east-1:123456789012:key/abcd',
    });
    assert.equal(config.aws?.connection.auth, 'password');
    assert.deepEqual(config.aws?.connection.replica, { host: 'replica.internal', port: 6432 });
  });

  const bad: [string, Record<string, string>, RegExp][] = [
    [
      'an unknown provider',
      { DBOPS_PROVIDER: 'gcp' },
      /^DBOPS_PROVIDER: is "gcp"; expected one of local, aws$/,
    ],
    ['a port that is not a number', { PGPORT: '54x2' }, /^PGPORT: .*expected a port number from 1 to 65535/],
    ['port 0', { PGPORT: '0' }, /^PGPORT: /],
    ['port 70000', { PGPORT: '70000' }, /^PGPORT: /],
    [
      'a Temporal address without a port',
      { TEMPORAL_ADDRESS: 'localhost' },
      /^TEMPORAL_ADDRESS: .*host:port/,
    ],
    ['aws without a region', { DBOPS_PROVIDER: 'aws' }, /^AWS_REGION: is not set; expected an AWS region/],
    [
      'an instance id with SQL in it',
      { DBOPS_INSTANCE_ID: "x'; DROP TABLE t;--" },
      /^DBOPS_INSTANCE_ID: .*letter first/,
    ],
    ['an instance id with a trailing hyphen', { DBOPS_INSTANCE_ID: 'prod-' }, /^DBOPS_INSTANCE_ID: /],
    ['an instance id with a double hyphen', { DBOPS_INSTANCE_ID: 'prod--1' }, /^DBOPS_INSTANCE_ID: /],
    ['an instance id of 64 characters', { DBOPS_INSTANCE_ID: 'a'.repeat(64) }, /^DBOPS_INSTANCE_ID: /],
    [
      'an AWS endpoint that is not a URL',
      { DBOPS_PROVIDER: 'aws', AWS_REGION: 'us-east-1', DBOPS_AWS_ENDPOINT: 'localhost:5000' },
      /^DBOPS_AWS_ENDPOINT: .*http\(s\) URL/,
    ],
    ...(
      [
        ['aws without a subnet group', { DBOPS_RDS_SUBNET_GROUP: '' }, /^DBOPS_RDS_SUBNET_GROUP: is not set/],
        [
          'a security group id without the sg- prefix',
          { DBOPS_RDS_SECURITY_GROUP_IDS: 'sg-0123abcd,0456ef78' },
          /^DBOPS_RDS_SECURITY_GROUP_IDS: has "0456ef78"; expected security group ids/,
        ],
        ['aws without a parameter group', { DBOPS_RDS_PARAMETER_GROUP: '' }, /^DBOPS_RDS_PARAMETER_GROUP: /],
        [
          'Multi-AZ "yes"',
          { DBOPS_RDS_MULTI_AZ: 'yes' },
          /^DBOPS_RDS_MULTI_AZ: is "yes"; expected one of true, false$/,
        ],
        [
          'an instance class without db.',
          { DBOPS_RDS_INSTANCE_CLASS: 'r5.large' },
          /^DBOPS_RDS_INSTANCE_CLASS: /,
        ],
        ['PostgreSQL 16', { DBOPS_RDS_ENGINE_VERSION: '16.3' }, /^DBOPS_RDS_ENGINE_VERSION: .*PostgreSQL 15/],
        [
          '10 GB of storage',
          { DBOPS_RDS_ALLOCATED_STORAGE_GB: '10' },
          /^DBOPS_RDS_ALLOCATED_STORAGE_GB: .*from 20/,
        ],
        ['a tag without a value', { DBOPS_RDS_TAGS: 'Environment' }, /^DBOPS_RDS_TAGS: has "Environment"/],
        ['a tag in the aws: namespace', { DBOPS_RDS_TAGS: 'aws:owner=me' }, /^DBOPS_RDS_TAGS: .*aws:/],
        [
          'an export bucket without its role and key',
          { DBOPS_EXPORT_BUCKET: 'mcp-demo-backups' },
          /^DBOPS_EXPORT_IAM_ROLE_ARN: is not set; exports need all of/,
        ],
        [
          'an export role that is not a role ARN',
          {
            DBOPS_EXPORT_BUCKET: 'mcp-demo-backups',
            DBOPS_EXPORT_IAM_ROLE_ARN: 'rds-export-role',
            DBOPS_EXPORT_KMS_KEY_ID: 'alias/rds',
          },
          /^DBOPS_EXPORT_IAM_ROLE_ARN: .*an IAM role ARN/,
        ],
        ['an unknown auth method', { DBOPS_DB_AUTH: 'kerberos' }, /^DBOPS_DB_AUTH: /],
        ['aws without a CA bundle', { PGSSLROOTCERT: '' }, /^PGSSLROOTCERT: is not set; .*TLS is required/],
        [
          'a replica port that is not a number',
          { DBOPS_DB_REPLICA_HOST: 'replica.internal', DBOPS_DB_REPLICA_PORT: 'x' },
          /^DBOPS_DB_REPLICA_PORT: /,
        ],
      ] as [string, Record<string, string>, RegExp][]
    ).map(([what, env, message]): [string, Record<string, string>, RegExp] => [
      what,
      { DBOPS_PROVIDER: 'aws', AWS_REGION: 'us-east-1', ...AWS_REQUIRED, ...env },
      message,
    ]),
  ];
  for (const [what, env, message] of bad) {
    it(`rejects ${what}, naming the variable`, () => {
      assert.throws(
        () => loadConfig(env),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
      );
    });
  }

  it('accepts a 63-character instance id', () => {
    assert.equal(loadConfig({ DBOPS_INSTANCE_ID: 'a'.repeat(63) }).instanceId, 'a'.repeat(63));
  });
});

describe('config: maintenance window, health-check interval, metrics port', () => {
  it('defaults to the RDS window of the runbook, a 5-minute health check and port 9464', () => {
    assert.deepEqual(loadConfig({}).operations, {
      maintenanceWindow: 'sun:04:00-sun:05:00',
      healthCheckIntervalMinutes: 5,
      metricsPort: 9464,
    });
  });

  it('reads them', () => {
    const { operations } = loadConfig({
      DBOPS_MAINTENANCE_WINDOW: 'Sat:23:30-Sun:00:30',
      DBOPS_HEALTH_CHECK_INTERVAL_MINUTES: '15',
      DBOPS_METRICS_PORT: '9100',
    });
    assert.deepEqual(operations, {
      maintenanceWindow: 'sat:23:30-sun:00:30',
      healthCheckIntervalMinutes: 15,
      metricsPort: 9100,
    });
  });

  const bad: [string, Record<string, string>, RegExp][] = [
    [
      'a window without days',
      { DBOPS_MAINTENANCE_WINDOW: '04:00-05:00' },
      /^DBOPS_MAINTENANCE_WINDOW: is "04:00-05:00"; expected ddd:hh24:mi-ddd:hh24:mi in UTC/,
    ],
    [
      'a window at hour 25',
      { DBOPS_MAINTENANCE_WINDOW: 'sun:25:00-sun:26:00' },
      /^DBOPS_MAINTENANCE_WINDOW: /,
    ],
    ['an unknown day', { DBOPS_MAINTENANCE_WINDOW: 'sun:04:00-xyz:05:00' }, /^DBOPS_MAINTENANCE_WINDOW: /],
    [
      'a window shorter than 30 minutes',
      { DBOPS_MAINTENANCE_WINDOW: 'sun:04:00-sun:04:10' },
      /^DBOPS_MAINTENANCE_WINDOW: .*at least 30 minutes/,
    ],
    [
      'a health-check interval of 0',
      { DBOPS_HEALTH_CHECK_INTERVAL_MINUTES: '0' },
      /^DBOPS_HEALTH_CHECK_INTERVAL_MINUTES: is "0"; expected a whole number from 1 to 1440$/,
    ],
    ['a health-check interval of "5m"', { DBOPS_HEALTH_CHECK_INTERVAL_MINUTES: '5m' }, /^DBOPS_HEALTH_CHECK/],
    ['metrics port 0', { DBOPS_METRICS_PORT: '0' }, /^DBOPS_METRICS_PORT: /],
  ];
  for (const [what, env, message] of bad) {
    it(`rejects ${what}, naming the variable`, () => {
      assert.throws(
        () => loadConfig(env),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
      );
    });
  }
});
