import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { inspect } from 'node:util';

import { ConfigError, loadConfig } from '../../workers/config';
import { makeTestPki, type TestPki } from '../helpers/tls';

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
      shutdownGraceTime: '5 minutes',
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
      DBOPS_SHUTDOWN_GRACE: '90s',
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
    assert.equal(config.temporal.shutdownGraceTime, '90s');
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
    assert.deepEqual(config.aws?.connection.replica, {
      host: 'replica.internal',
      port: 6432,
      maxLagSeconds: 300,
    });
  });

  it('reads the DR copy class and what a real recovery gets (monitoring every 60 s once its role is named)', () => {
    const config = loadConfig({
      DBOPS_PROVIDER: 'aws',
      AWS_REGION: 'us-east-1',
      ...AWS_REQUIRED,
      DBOPS_RDS_DR_INSTANCE_CLASS: 'db.t4g.medium',
      DBOPS_RDS_MONITORING_ROLE_ARN: 'arn:aws:iam::123456789012:role/mcp-demo-prod-rds-monitoring',
      DBOPS_RDS_PERFORMANCE_INSIGHTS_KMS_KEY_ID: 'arn:aws:kms:us-east-1:123456789012:key/abcd',
      DBOPS_RDS_PERFORMANCE_INSIGHTS_RETENTION_DAYS: '93',
      DBOPS_RDS_LOG_EXPORTS: 'postgresql',
      DBOPS_RDS_MAX_ALLOCATED_STORAGE_GB: '2000',
      DBOPS_RDS_CA_CERTIFICATE: 'rds-ca-ecc384-g1',
      DBOPS_RDS_BACKUP_RETENTION_DAYS: '35',
    });
    assert.equal(config.aws?.rds.drInstanceClass, 'db.t4g.medium');
    assert.deepEqual(config.aws?.rds.recovery, {
      backupRetentionDays: 35,
      monitoringIntervalSeconds: 60,
      monitoringRoleArn: 'arn:aws:iam::123456789012:role/mcp-demo-prod-rds-monitoring',
      performanceInsightsKmsKeyId: 'arn:aws:kms:us-east-1:123456789012:key/abcd',
      performanceInsightsRetentionDays: 93,
      logExports: ['postgresql'],
      maxAllocatedStorageGb: 2000,
      caCertificateIdentifier: 'rds-ca-ecc384-g1',
    });
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
          'a DR class without db.',
          { DBOPS_RDS_DR_INSTANCE_CLASS: 't3.medium' },
          /^DBOPS_RDS_DR_INSTANCE_CLASS: /,
        ],
        [
          'enhanced monitoring without its role',
          { DBOPS_RDS_MONITORING_INTERVAL: '60' },
          /^DBOPS_RDS_MONITORING_ROLE_ARN: is not set; enhanced monitoring/,
        ],
        [
          'a monitoring interval RDS does not offer',
          { DBOPS_RDS_MONITORING_INTERVAL: '20' },
          /^DBOPS_RDS_MONITORING_INTERVAL: is "20"; expected one of 0, 1, 5, 10, 15, 30, 60$/,
        ],
        [
          'a Performance Insights retention of 30 days',
          { DBOPS_RDS_PERFORMANCE_INSIGHTS_RETENTION_DAYS: '30' },
          /^DBOPS_RDS_PERFORMANCE_INSIGHTS_RETENTION_DAYS: is 30; expected 7, a multiple of 31 or 731$/,
        ],
        [
          'a log RDS PostgreSQL does not export',
          { DBOPS_RDS_LOG_EXPORTS: 'postgresql,audit' },
          /^DBOPS_RDS_LOG_EXPORTS: has "audit"/,
        ],
        [
          'an autoscaling limit above 64 TiB',
          { DBOPS_RDS_MAX_ALLOCATED_STORAGE_GB: '70000' },
          /^DBOPS_RDS_MAX_ALLOCATED_STORAGE_GB: /,
        ],
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
        [
          'a negative replica lag bound',
          { DBOPS_DB_REPLICA_HOST: 'replica.internal', DBOPS_DB_REPLICA_MAX_LAG_SECONDS: '-5' },
          /^DBOPS_DB_REPLICA_MAX_LAG_SECONDS: /,
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

describe('config: snapshot retention', () => {
  it('reads the policy and the schedule interval', () => {
    const { retention } = loadConfig({
      DBOPS_RETENTION_KEEP_NEWEST: '3',
      DBOPS_RETENTION_KEEP_DAYS: '0',
      DBOPS_RETENTION_INCLUDE_FOREIGN: 'true',
      DBOPS_RETENTION_INCLUDE_AUTOMATED: 'true',
      DBOPS_RETENTION_INTERVAL_HOURS: '6',
    }).operations;
    assert.deepEqual(retention, {
      keepNewest: 3,
      keepDays: 0,
      includeForeign: true,
      includeAutomated: true,
      intervalHours: 6,
    });
  });

  it('rejects keeping fewer than one snapshot, naming the variable', () => {
    assert.throws(
      () => loadConfig({ DBOPS_RETENTION_KEEP_NEWEST: '0' }),
      /^ConfigError: DBOPS_RETENTION_KEEP_NEWEST: is "0"; expected a whole number from 1 to 1000$/,
    );
  });

  it('rejects a negative number of days, naming the variable', () => {
    assert.throws(
      () => loadConfig({ DBOPS_RETENTION_KEEP_DAYS: '-1' }),
      /^ConfigError: DBOPS_RETENTION_KEEP_DAYS: is "-1"; expected a whole number from 0 to 3650$/,
    );
  });
});

describe('config: local snapshots (DBOPS_LOCAL_BACKUP_MAX_RATE, DBOPS_LOCAL_BACKUP_CHECKPOINT)', () => {
  it('defaults to no rate of its own and a fast checkpoint, and reads both', () => {
    assert.deepEqual(loadConfig({}).localBackup, { maxRate: undefined, checkpoint: 'fast' });
    assert.deepEqual(
      loadConfig({ DBOPS_LOCAL_BACKUP_MAX_RATE: '50M', DBOPS_LOCAL_BACKUP_CHECKPOINT: 'spread' }).localBackup,
      { maxRate: '50M', checkpoint: 'spread' },
    );
    assert.equal(loadConfig({ DBOPS_LOCAL_BACKUP_MAX_RATE: '32k' }).localBackup?.maxRate, '32k');
  });

  it('refuses a rate pg_basebackup would refuse, and an unknown checkpoint, naming the variable', () => {
    for (const rate of ['50MB', '10m', '31', '1025M', 'fast']) {
      assert.throws(
        () => loadConfig({ DBOPS_LOCAL_BACKUP_MAX_RATE: rate }),
        new RegExp(
          `^ConfigError: DBOPS_LOCAL_BACKUP_MAX_RATE: is "${rate}"; expected a rate from 32k to 1024M, e\\.g\\. 50M \\(MB/s\\) or 500k \\(kB/s\\)$`,
        ),
      );
    }
    assert.throws(
      () => loadConfig({ DBOPS_LOCAL_BACKUP_CHECKPOINT: 'slow' }),
      /^ConfigError: DBOPS_LOCAL_BACKUP_CHECKPOINT: is "slow"; expected one of fast, spread$/,
    );
  });
});

describe('config: maintenance window, health-check and sweep intervals, metrics port', () => {
  it('defaults to the RDS window of the runbook, a 5-minute health check, an hourly sweep and port 9464', () => {
    assert.deepEqual(loadConfig({}).operations, {
      maintenanceWindow: 'sun:04:00-sun:05:00',
      healthCheckIntervalMinutes: 5,
      sweepIntervalMinutes: 60,
      metricsPort: 9464,
      rpoHeartbeatSeconds: 30,
      drTestPointInTime: 'latest-snapshot',
      retention: {
        keepNewest: 7,
        keepDays: 30,
        includeForeign: false,
        includeAutomated: false,
        intervalHours: 24,
      },
    });
  });

  it('reads them', () => {
    const { operations } = loadConfig({
      DBOPS_MAINTENANCE_WINDOW: 'Sat:23:30-Sun:00:30',
      DBOPS_HEALTH_CHECK_INTERVAL_MINUTES: '15',
      DBOPS_SWEEP_INTERVAL_MINUTES: '30',
      DBOPS_METRICS_PORT: '9100',
    });
    assert.deepEqual(operations, {
      maintenanceWindow: 'sat:23:30-sun:00:30',
      healthCheckIntervalMinutes: 15,
      sweepIntervalMinutes: 30,
      metricsPort: 9100,
      rpoHeartbeatSeconds: 30,
      drTestPointInTime: 'latest-snapshot',
      retention: {
        keepNewest: 7,
        keepDays: 30,
        includeForeign: false,
        includeAutomated: false,
        intervalHours: 24,
      },
    });
  });

  it('reads the RPO heartbeat (on by default, every 30 s; off by DBOPS_RPO_HEARTBEAT=false) and the DR schedule point in time', () => {
    const read = (env: Record<string, string>) => {
      const { rpoHeartbeatSeconds, drTestPointInTime } = loadConfig(env).operations;
      return { rpoHeartbeatSeconds, drTestPointInTime };
    };
    assert.deepEqual(read({ DBOPS_RPO_HEARTBEAT_SECONDS: '5', DBOPS_DR_TEST_POINT_IN_TIME: 'random' }), {
      rpoHeartbeatSeconds: 5,
      drTestPointInTime: 'random',
    });
    assert.equal(read({ DBOPS_RPO_HEARTBEAT: 'false' }).rpoHeartbeatSeconds, undefined);
    assert.throws(
      () => read({ DBOPS_RPO_HEARTBEAT_SECONDS: '0' }),
      /^ConfigError: DBOPS_RPO_HEARTBEAT_SECONDS: is "0"; expected a whole number from 1 to 3600$/,
    );
    assert.throws(
      () => read({ DBOPS_RPO_HEARTBEAT: 'off' }),
      /^ConfigError: DBOPS_RPO_HEARTBEAT: is "off"; expected one of true, false$/,
    );
    assert.throws(
      () => read({ DBOPS_DR_TEST_POINT_IN_TIME: '2026-01-01T00:00:00Z' }),
      /^ConfigError: DBOPS_DR_TEST_POINT_IN_TIME: is "2026-01-01T00:00:00Z"; expected one of latest-snapshot, random$/,
    );
  });

  it('reads the fleet DR schedule (DBOPS_FLEET_DR_TEST: all or key=value; DBOPS_FLEET_CONCURRENCY), off by default', () => {
    const fleet = (env: Record<string, string>) => loadConfig(env).operations.fleetDrTest;
    assert.equal(fleet({}), undefined);
    assert.deepEqual(fleet({ DBOPS_FLEET_DR_TEST: 'env=prod', DBOPS_FLEET_CONCURRENCY: '5' }), {
      tag: 'env=prod',
      concurrency: 5,
    });
    assert.deepEqual(fleet({ DBOPS_FLEET_DR_TEST: 'all' }), { tag: undefined, concurrency: 3 });
    assert.throws(
      () => fleet({ DBOPS_FLEET_DR_TEST: 'prod' }),
      /^ConfigError: DBOPS_FLEET_DR_TEST: is "prod"; expected all or key=value, e.g. env=prod/,
    );
    assert.throws(
      () => fleet({ DBOPS_FLEET_DR_TEST: 'all', DBOPS_FLEET_CONCURRENCY: '21' }),
      /^ConfigError: DBOPS_FLEET_CONCURRENCY: is "21"; expected a whole number from 1 to 20$/,
    );
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
    [
      'a sweep interval of a week',
      { DBOPS_SWEEP_INTERVAL_MINUTES: '10080' },
      /^DBOPS_SWEEP_INTERVAL_MINUTES: is "10080"; expected a whole number from 1 to 1440$/,
    ],
    ['metrics port 0', { DBOPS_METRICS_PORT: '0' }, /^DBOPS_METRICS_PORT: /],
    [
      'a shutdown grace that is no duration',
      { DBOPS_SHUTDOWN_GRACE: 'soon' },
      /^DBOPS_SHUTDOWN_GRACE: is "soon"; expected a duration such as '5 minutes' or '90s'$/,
    ],
    ['a shutdown grace of 0', { DBOPS_SHUTDOWN_GRACE: '0s' }, /^DBOPS_SHUTDOWN_GRACE: is "0s"/],
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

describe('config: Temporal TLS, payload codec keys, codec server', () => {
  let pki: TestPki;
  let keyFile: string;
  const k1 = randomBytes(32).toString('base64');
  const k2 = randomBytes(32).toString('base64');

  before(async () => {
    pki = await makeTestPki();
    keyFile = path.join(pki.dir, 'codec-keys.json');
    await writeFile(keyFile, JSON.stringify({ current: 'k2', keys: { k1, k2 } }));
  });
  after(() => pki?.remove());

  /** The ConfigError message of loading `env`, checked to be one. */
  const failure = (env: Record<string, string>): string => {
    try {
      loadConfig(env);
    } catch (error) {
      assert.ok(error instanceof ConfigError, String(error));
      return error.message;
    }
    assert.fail(`loadConfig(${JSON.stringify(env)}) succeeded`);
  };

  it('reads mTLS file paths (absolute), the CA and the server name; contents are read only when connecting', () => {
    const { temporal } = loadConfig({
      TEMPORAL_TLS_CERT: path.relative(process.cwd(), pki.client.cert),
      TEMPORAL_TLS_KEY: pki.client.key,
      TEMPORAL_TLS_CA: pki.ca,
      TEMPORAL_TLS_SERVER_NAME: 'temporal.internal',
    });
    assert.deepEqual(temporal.tls, {
      clientCertPair: { certPath: pki.client.cert, keyPath: pki.client.key },
      caPath: pki.ca,
      serverName: 'temporal.internal',
    });
  });

  it('accepts TLS with only a CA (server authentication without a client certificate)', () => {
    const { temporal } = loadConfig({ TEMPORAL_TLS_CA: pki.ca });
    assert.deepEqual(temporal.tls, { clientCertPair: undefined, caPath: pki.ca, serverName: undefined });
  });

  it('reads a rotation key file: current key and every old key, no key bytes when printed', () => {
    const { temporal } = loadConfig({ DBOPS_CODEC_KEYS_FILE: keyFile });
    assert.equal(temporal.codecKeys?.currentKeyId, 'k2');
    assert.deepEqual(temporal.codecKeys?.keyIds, ['k1', 'k2']);
    const printed = inspect(temporal, { depth: 10, showHidden: true }) + JSON.stringify(temporal);
    for (const key of [k1, k2]) {
      assert.ok(!printed.includes(key), 'no base64 key');
      assert.ok(!printed.includes(Buffer.from(key, 'base64').toString('hex')), 'no hex key');
    }
  });

  it('reads one key from the environment', () => {
    const { temporal } = loadConfig({ DBOPS_CODEC_KEY: k1, DBOPS_CODEC_KEY_ID: 'prod-2026' });
    assert.equal(temporal.codecKeys?.currentKeyId, 'prod-2026');
    assert.deepEqual(temporal.codecKeys?.keyIds, ['prod-2026']);
  });

  it('reads the codec server settings: loopback, the Web UI origin of DBOPS_UI_PORT, no token by default', () => {
    assert.deepEqual(loadConfig({ DBOPS_UI_PORT: '8300' }).codecServer, {
      host: '127.0.0.1',
      port: 8888,
      allowedOrigins: ['http://localhost:8300'],
      token: undefined,
    });
    const token = 'f'.repeat(64);
    assert.deepEqual(
      loadConfig({
        DBOPS_CODEC_SERVER_HOST: '0.0.0.0',
        DBOPS_CODEC_SERVER_PORT: '9000',
        DBOPS_CODEC_SERVER_ORIGINS: 'https://temporal.example.com, http://localhost:8233',
        DBOPS_CODEC_SERVER_TOKEN: token,
      }).codecServer,
      {
        host: '0.0.0.0',
        port: 9000,
        allowedOrigins: ['https://temporal.example.com', 'http://localhost:8233'],
        token,
      },
    );
  });

  it('names the variable of a missing or unreadable certificate file', () => {
    const missing = path.join(pki.dir, 'missing.crt');
    assert.match(
      failure({ TEMPORAL_TLS_CERT: missing, TEMPORAL_TLS_KEY: pki.client.key }),
      /^TEMPORAL_TLS_CERT: .*missing\.crt cannot be read: ENOENT$/,
    );
    assert.match(
      failure({ TEMPORAL_TLS_CERT: pki.client.cert, TEMPORAL_TLS_KEY: missing }),
      /^TEMPORAL_TLS_KEY: .*missing\.crt cannot be read: ENOENT$/,
    );
    assert.match(failure({ TEMPORAL_TLS_CA: missing }), /^TEMPORAL_TLS_CA: .*cannot be read: ENOENT$/);
  });

  it('refuses a file that is not what the variable names (a key as the certificate, a certificate as the key)', () => {
    assert.match(
      failure({ TEMPORAL_TLS_CERT: pki.client.key, TEMPORAL_TLS_KEY: pki.client.key }),
      /^TEMPORAL_TLS_CERT: .*client\.key holds no PEM certificate$/,
    );
    assert.match(
      failure({ TEMPORAL_TLS_CERT: pki.client.cert, TEMPORAL_TLS_KEY: pki.client.cert }),
      /^TEMPORAL_TLS_KEY: .*client\.crt holds no PEM private key$/,
    );
  });

  it('refuses a certificate without its key and a key without its certificate', () => {
    assert.equal(
      failure({ TEMPORAL_TLS_CERT: pki.client.cert }),
      'TEMPORAL_TLS_KEY: is not set but TEMPORAL_TLS_CERT is; mTLS needs both the client certificate and its private key',
    );
    assert.equal(
      failure({ TEMPORAL_TLS_KEY: pki.client.key, TEMPORAL_TLS_CA: pki.ca }),
      'TEMPORAL_TLS_CERT: is not set but TEMPORAL_TLS_KEY is; mTLS needs both the client certificate and its private key',
    );
  });

  const badKeyFiles: [string, string, RegExp][] = [
    ['not JSON', `{"current": "k1", "keys": {"k1": "${k1}"`, /is not valid JSON/],
    ['an array', '[]', /is not a JSON object/],
    ['no current key id', JSON.stringify({ keys: { k1 } }), /has no "current" key id/],
    ['no keys object', JSON.stringify({ current: 'k1' }), /has no "keys" object/],
    ['no keys at all', JSON.stringify({ current: 'k1', keys: {} }), /has no keys/],
    [
      'a current key that is not among the keys',
      JSON.stringify({ current: 'k3', keys: { k1, k2 } }),
      /names current key "k3", which is not among its keys \(k1, k2\)/,
    ],
    [
      'a 16-byte key',
      JSON.stringify({ current: 'k1', keys: { k1: randomBytes(16).toString('base64') } }),
      /has key "k1" that is not 32 bytes in base64/,
    ],
    [
      'a key that is not base64',
      JSON.stringify({ current: 'k1', keys: { k1: `${k1.slice(0, -4)}!!!!` } }),
      /has key "k1" that is not 32 bytes in base64/,
    ],
    [
      'a number as a key',
      JSON.stringify({ current: 'k1', keys: { k1: 42 } }),
      /has key "k1" that is not a base64 string/,
    ],
    [
      'a key id with a space',
      JSON.stringify({ current: 'k 1', keys: { 'k 1': k1 } }),
      /has key id "k 1"; expected 1 to 64 letters/,
    ],
  ];
  for (const [what, contents, message] of badKeyFiles) {
    it(`refuses a key file with ${what}, naming DBOPS_CODEC_KEYS_FILE and echoing no key`, async () => {
      const file = path.join(pki.dir, 'bad-keys.json');
      await writeFile(file, contents);
      const text = failure({ DBOPS_CODEC_KEYS_FILE: file });
      assert.match(text, /^DBOPS_CODEC_KEYS_FILE: .*bad-keys\.json /);
      assert.match(text, message);
      assert.ok(!text.includes(k1.slice(0, 12)) && !text.includes(k2.slice(0, 12)), text);
    });
  }

  const badEnvironments: [string, Record<string, string>, RegExp][] = [
    [
      'a missing key file',
      { DBOPS_CODEC_KEYS_FILE: '/nonexistent/keys.json' },
      /^DBOPS_CODEC_KEYS_FILE: \/nonexistent\/keys\.json cannot be read: ENOENT$/,
    ],
    [
      'a key without its id',
      { DBOPS_CODEC_KEY: k1 },
      /^DBOPS_CODEC_KEY_ID: is not set but DBOPS_CODEC_KEY is$/,
    ],
    [
      'an id without its key',
      { DBOPS_CODEC_KEY_ID: 'k1' },
      /^DBOPS_CODEC_KEY: is not set but DBOPS_CODEC_KEY_ID is$/,
    ],
    [
      'a short key',
      { DBOPS_CODEC_KEY: 'c2hvcnQ=', DBOPS_CODEC_KEY_ID: 'k1' },
      /^DBOPS_CODEC_KEY: is not 32 bytes in base64/,
    ],
    [
      'a bad key id',
      { DBOPS_CODEC_KEY: k1, DBOPS_CODEC_KEY_ID: "k1'; DROP" },
      /^DBOPS_CODEC_KEY_ID: is "k1'; DROP"; expected 1 to 64 letters/,
    ],
    [
      'a key file and an environment key',
      { DBOPS_CODEC_KEYS_FILE: '/etc/dbops/keys.json', DBOPS_CODEC_KEY: k1 },
      /^DBOPS_CODEC_KEY: is set together with DBOPS_CODEC_KEYS_FILE/,
    ],
    [
      'a short codec server token',
      { DBOPS_CODEC_SERVER_TOKEN: 'hunter2' },
      /^DBOPS_CODEC_SERVER_TOKEN: is shorter than 32 characters/,
    ],
    [
      'an origin with a path',
      { DBOPS_CODEC_SERVER_ORIGINS: 'http://localhost:8233/namespaces' },
      /^DBOPS_CODEC_SERVER_ORIGINS: has "http:\/\/localhost:8233\/namespaces"; expected origins/,
    ],
    [
      'an origin without a scheme',
      { DBOPS_CODEC_SERVER_ORIGINS: 'localhost:8233' },
      /^DBOPS_CODEC_SERVER_ORIGINS: has "localhost:8233"/,
    ],
  ];
  for (const [what, env, message] of badEnvironments) {
    it(`rejects ${what}, naming the variable and echoing no secret`, () => {
      const text = failure(env);
      assert.match(text, message);
      assert.ok(!text.includes(k1.slice(0, 12)), text);
      assert.ok(!text.includes('hunter2'), text);
    });
  }
});

describe('config: rollout hooks (DBOPS_ROLLOUT_HOOKS)', () => {
  it('has none by default', () => {
    assert.deepEqual(loadConfig({}).rolloutHooks, {});
  });

  it('reads command and URL hooks with their timeouts', () => {
    const hooks = loadConfig({
      DBOPS_ROLLOUT_HOOKS: JSON.stringify({
        web: { command: ['kubectl', 'set', 'image', 'deployment/web', 'web=app:v2'], timeoutMs: 300000 },
        ci: { url: 'https://ci.example/hooks/deployed' },
      }),
    }).rolloutHooks;
    assert.deepEqual(hooks, {
      web: { command: ['kubectl', 'set', 'image', 'deployment/web', 'web=app:v2'], timeoutMs: 300000 },
      ci: { url: 'https://ci.example/hooks/deployed' },
    });
  });

  const bad: [string, string, RegExp][] = [
    [
      'text that is not JSON',
      'kubectl set image',
      /^DBOPS_ROLLOUT_HOOKS: is not JSON .*expected e\.g\. \{"web"/,
    ],
    ['a list', '[["kubectl"]]', /^DBOPS_ROLLOUT_HOOKS: expected an object of named hooks/],
    [
      'a name with spaces',
      '{"my hook": {"url": "https://x"}}',
      /^DBOPS_ROLLOUT_HOOKS: hook "my hook": a name is lowercase/,
    ],
    [
      'both command and url',
      '{"web": {"command": ["true"], "url": "https://x"}}',
      /hook "web": give exactly one of command or url$/,
    ],
    [
      'neither command nor url',
      '{"web": {"timeoutMs": 5000}}',
      /hook "web": give exactly one of command or url$/,
    ],
    [
      'a command as one shell string',
      '{"web": {"command": "kubectl set image"}}',
      /hook "web": command is a non-empty array of non-empty strings/,
    ],
    ['an empty command', '{"web": {"command": []}}', /hook "web": command is a non-empty array/],
    [
      'a URL that is not http(s)',
      '{"ci": {"url": "ftp://ci.example"}}',
      /hook "ci": url is an http\(s\) URL$/,
    ],
    [
      'a timeout under a second',
      '{"ci": {"url": "https://x", "timeoutMs": 10}}',
      /hook "ci": timeoutMs 10 is not a whole number of ms from 1000 to 3600000$/,
    ],
    [
      'an unknown key',
      '{"ci": {"url": "https://x", "shell": true}}',
      /hook "ci": unknown shell; expected command or url, and timeoutMs$/,
    ],
  ];
  for (const [what, value, message] of bad) {
    it(`rejects ${what}, naming the variable (and the hook)`, () => {
      assert.throws(
        () => loadConfig({ DBOPS_ROLLOUT_HOOKS: value }),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
      );
    });
  }
});
