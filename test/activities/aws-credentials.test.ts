/**
 * One AWS credentials provider per worker process: however many database connections (each with
 * its own IAM token) and AWS clients a worker makes, it looks its credentials up once. The worker
 * is a child process with the default credential chain pointed at a loopback container-credentials
 * endpoint (the ECS task role's interface) that counts how often it is asked.
 */
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mock } from 'node:test';

import { iamAuthToken } from '../../activities/postgres/connect';
import { startThrowawayCluster, type ThrowawayCluster } from '../helpers/postgres';
import { makeTestPki, type TestPki } from '../helpers/tls';

const CREDENTIALS = {
  accessKeyId: 'ASIAIOSFODNN7EXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  sessionToken: 'a-session-token-of-the-task-role',
};
const FIXED_NOW = Date.parse('2026-11-27T12:00:00Z');
const CONNECTIONS = 20;

describe('AWS credentials: one provider per worker (a worker process, real PostgreSQL with TLS, a loopback credentials endpoint)', () => {
  let pki: TestPki;
  let cluster: ThrowawayCluster;
  let server: http.Server;
  let endpoint: string;
  let home: string;
  let lookups = 0;

  before(async () => {
    pki = await makeTestPki();
    cluster = await startThrowawayCluster({}, pki.server);
    home = await mkdtemp(path.join(os.tmpdir(), 'dbops-home-'));
    // The worker's tokens at the stopped clock: the role's password, so the server accepts exactly those.
    mock.timers.enable({ apis: ['Date'], now: FIXED_NOW });
    let token: string;
    try {
      token = await iamAuthToken(
        { ...cluster.database, user: 'dbops_iam' },
        { region: 'us-east-1', credentials: CREDENTIALS },
      );
    } finally {
      mock.timers.reset();
    }
    const admin = await cluster.connect();
    await admin.query(`CREATE ROLE dbops_iam LOGIN PASSWORD '${token.replace(/'/g, "''")}'`);
    await writeFile(
      path.join(cluster.dataDir, 'pg_hba.conf'),
      [
        'local all all trust',
        'hostssl all dbops_iam 127.0.0.1/32 password',
        'host all all 127.0.0.1/32 trust',
        '',
      ].join('\n'),
    );
    await admin.query('SELECT pg_reload_conf()');
    server = http.createServer((_request, response) => {
      lookups += 1;
      response.setHeader('content-type', 'application/json');
      response.end(
        JSON.stringify({
          AccessKeyId: CREDENTIALS.accessKeyId,
          SecretAccessKey: CREDENTIALS.secretAccessKey,
          Token: CREDENTIALS.sessionToken,
          Expiration: '2030-01-01T00:00:00Z',
        }),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/credentials`;
  });
  after(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await cluster?.stop();
    await pki?.remove();
    if (home) await rm(home, { recursive: true, force: true });
  });

  it(`${CONNECTIONS} IAM database connections and four AWS clients look the credentials up once`, async () => {
    // Nothing but the container endpoint can answer: no keys, profile or instance metadata.
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !/^(AWS_|PG|DBOPS_)/.test(name)),
    );
    const child = fork(path.join(__dirname, '..', 'fixtures', 'iam-connections.ts'), [], {
      execArgv: ['--require', 'tsx/cjs'],
      env: {
        ...inherited,
        HOME: home,
        AWS_CONTAINER_CREDENTIALS_FULL_URI: endpoint,
        AWS_EC2_METADATA_DISABLED: 'true',
        DBOPS_PROVIDER: 'aws',
        AWS_REGION: 'us-east-1',
        PGHOST: cluster.database.host,
        PGPORT: String(cluster.database.port),
        PGDATABASE: cluster.database.database,
        PGUSER: 'dbops_iam',
        PGSSLROOTCERT: pki.ca,
        DBOPS_RDS_SUBNET_GROUP: 'mcp-demo-db',
        DBOPS_RDS_SECURITY_GROUP_IDS: 'sg-0123abcd',
        DBOPS_RDS_PARAMETER_GROUP: 'mcp-demo-postgres15',
        DBOPS_TEST_NOW: String(FIXED_NOW),
        DBOPS_TEST_CONNECTIONS: String(CONNECTIONS),
      },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 0, `the worker process failed: ${stderr}`);
    const { users, keys } = JSON.parse(stdout) as { users: string[]; keys: string[] };
    assert.deepEqual(
      users,
      Array(CONNECTIONS).fill('dbops_iam'),
      'every connection logged in with its IAM token',
    );
    assert.deepEqual(keys, Array(4).fill(CREDENTIALS.accessKeyId));
    assert.equal(lookups, 1, `credential lookups for ${CONNECTIONS} connections and 4 clients`);
  });
});
