import assert from 'node:assert/strict';

import { ConfigError, loadConfig } from '../../workers/config';

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
    });
    assert.equal(config.temporal.address, 'temporal.internal:7233');
    assert.deepEqual(config.database, { host: 'db.internal', port: 6432, database: 'app', user: 'dbops' });
    assert.deepEqual(config.aws, { region: 'us-east-1', endpoint: undefined });
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
