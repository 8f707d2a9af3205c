import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mock } from 'node:test';
import { inspect } from 'node:util';

import type { Client } from 'pg';

import {
  connectorFromConfig,
  createDatabaseConnector,
  DatabaseConnectionError,
  iamAuthToken,
  type ConnectorOptions,
} from '../../../activities/postgres/connect';
import { createActivities } from '../../../activities';
import { freePort } from '../../../activities/ports';
import { loadConfig } from '../../../workers/config';
import { localActivityDeps } from '../../helpers/activity-deps';
import { startThrowawayCluster, type ThrowawayCluster } from '../../helpers/postgres';
import {
  backendPid,
  restartImmediately,
  terminateBackend,
  testSession,
  waitForDbopsBackend,
} from '../../helpers/sessions';
import { makeTestPki, type TestPki } from '../../helpers/tls';

const CREDENTIALS = {
  accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
};
const IAM: NonNullable<ConnectorOptions['iam']> = { region: 'us-east-1', credentials: CREDENTIALS };
const FIXED_NOW = Date.parse('2026-11-27T12:00:00Z');

/** Runs `fn` with the JavaScript clock stopped at `now` (a mock: the signer reads `new Date()`). */
async function atFixedClock<T>(now: number, fn: () => Promise<T>): Promise<T> {
  mock.timers.enable({ apis: ['Date'], now });
  try {
    return await fn();
  } finally {
    mock.timers.reset();
  }
}

/** Everything written to stdout / stderr (console included) and every process warning while `fn` runs. */
async function captureOutput(fn: () => Promise<void>): Promise<string> {
  const written: string[] = [];
  const stdout = process.stdout.write.bind(process.stdout);
  const stderr = process.stderr.write.bind(process.stderr);
  const onWarning = (warning: Error) => written.push(inspect(warning));
  const collect = (chunk: unknown) => {
    written.push(String(chunk));
    return true;
  };
  process.stdout.write = collect;
  process.stderr.write = collect;
  process.on('warning', onWarning);
  try {
    await fn();
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.stdout.write = stdout;
    process.stderr.write = stderr;
    process.off('warning', onWarning);
  }
  return written.join('');
}

/** SigV4 computed here from the specification, independently of the SDK. */
function expectedSignature(canonicalRequest: string, amzDate: string, scope: string): string {
  const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
  const hmac = (key: string | Buffer, text: string) => createHmac('sha256', key).update(text).digest();
  const [day, region, service] = scope.split('/');
  const key = hmac(
    hmac(hmac(hmac(`AWS4${CREDENTIALS.secretAccessKey}`, day!), region!), service!),
    'aws4_request',
  );
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonicalRequest)].join('\n');
  return createHmac('sha256', key).update(toSign).digest('hex');
}

/** A loopback TCP forwarder to `port`, counting the connections it carried (stands in for a replica host). */
async function startForwarder(port: number) {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections += 1;
    const upstream = net.connect(port, '127.0.0.1');
    socket.pipe(upstream).pipe(socket);
    socket.on('error', () => upstream.destroy());
    upstream.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => connections,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('IAM auth token (fixed credentials, clock mocked)', () => {
  const endpoint = {
    host: 'mcp-demo-prod.abc123.us-east-1.rds.amazonaws.com',
    port: 5432,
    user: 'mcp_admin',
  };

  it('is a presigned connect URL for host:port and the user, valid 900 seconds, with a correct SigV4 signature', async () => {
    const token = await atFixedClock(FIXED_NOW, () => iamAuthToken(endpoint, IAM));
    const url = new URL(`https://${token}`);
    assert.equal(url.host, 'mcp-demo-prod.abc123.us-east-1.rds.amazonaws.com:5432');
    assert.ok(token.startsWith('mcp-demo-prod.abc123.us-east-1.rds.amazonaws.com:5432/?'), 'no scheme');
    const query = Object.fromEntries(url.searchParams);
    assert.deepEqual(Object.keys(query).sort(), [
      'Action',
      'DBUser',
      'X-Amz-Algorithm',
      'X-Amz-Credential',
      'X-Amz-Date',
      'X-Amz-Expires',
      'X-Amz-Signature',
      'X-Amz-SignedHeaders',
    ]);
    assert.equal(query.Action, 'connect');
    assert.equal(query.DBUser, 'mcp_admin');
    assert.equal(query['X-Amz-Algorithm'], 'AWS4-HMAC-SHA256');
    assert.equal(query['X-Amz-Credential'], 'AKIAIOSFODNN7EXAMPLE/20261127/us-east-1/rds-db/aws4_request');
    assert.equal(query['X-Amz-Date'], '20261127T120000Z');
    assert.equal(query['X-Amz-Expires'], '900');
    assert.equal(query['X-Amz-SignedHeaders'], 'host');

    const canonicalQuery = Object.entries(query)
      .filter(([key]) => key !== 'X-Amz-Signature')
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(value)}`)
      .join('&');
    const emptyPayload = createHash('sha256').update('').digest('hex');
    const canonicalRequest = ['GET', '/', canonicalQuery, `host:${url.host}`, '', 'host', emptyPayload].join(
      '\n',
    );
    assert.equal(
      query['X-Amz-Signature'],
      expectedSignature(canonicalRequest, '20261127T120000Z', '20261127/us-east-1/rds-db/aws4_request'),
    );
  });

  it('is generated anew at each call: another instant gives another token', async () => {
    const first = await atFixedClock(FIXED_NOW, () => iamAuthToken(endpoint, IAM));
    const again = await atFixedClock(FIXED_NOW, () => iamAuthToken(endpoint, IAM));
    const later = await atFixedClock(FIXED_NOW + 60_000, () => iamAuthToken(endpoint, IAM));
    assert.equal(first, again);
    assert.notEqual(first, later);
    assert.match(later, /X-Amz-Date=20261127T120100Z/);
  });
});

describe('database connector (real PostgreSQL 15 with TLS from a test CA)', () => {
  let cluster: ThrowawayCluster;
  let pki: TestPki;
  const PASSWORD = 'a-password-from-the-environment';
  let iamToken: string;

  before(async () => {
    pki = await makeTestPki();
    cluster = await startThrowawayCluster({}, pki.server);
    // The token the connector will send at the fixed instant: the role's password, so the server
    // accepts exactly that token (PostgreSQL cannot check an IAM signature; RDS does).
    iamToken = await atFixedClock(FIXED_NOW, () =>
      iamAuthToken({ ...cluster.database, user: 'dbops_iam' }, IAM),
    );
    const admin = await cluster.connect();
    await admin.query(`CREATE ROLE dbops_iam LOGIN PASSWORD '${iamToken.replace(/'/g, "''")}'`);
    await admin.query(`CREATE ROLE dbops_pw LOGIN PASSWORD '${PASSWORD}'`);
    // Password roles only over TLS, as on RDS; everything else keeps initdb's trust for the harness.
    const hba = path.join(cluster.dataDir, 'pg_hba.conf');
    await writeFile(
      hba,
      [
        'local all all trust',
        'hostssl all dbops_iam,dbops_pw 127.0.0.1/32 password',
        'host all dbops_iam,dbops_pw 127.0.0.1/32 reject',
        'host all all 127.0.0.1/32 trust',
        '',
      ].join('\n'),
    );
    await admin.query('SELECT pg_reload_conf()');
  });
  after(async () => {
    await cluster?.stop();
    await pki?.remove();
  });

  /** Who the server says we are, and whether this connection is TLS. */
  const whoAmI = async (client: Client) =>
    (
      await client.query<{ user: string; ssl: boolean }>(
        'SELECT current_user AS user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
      )
    ).rows[0];

  it('connects over verified TLS with an IAM token generated at connect time, logging neither token nor password (clock mocked)', async () => {
    const connector = createDatabaseConnector({
      primary: { ...cluster.database, user: 'dbops_iam' },
      caBundlePath: pki.ca,
      iam: IAM,
    });
    let row: { user: string; ssl: boolean } | undefined;
    const output = await captureOutput(() =>
      atFixedClock(FIXED_NOW, async () => {
        row = await connector.withPrimary(whoAmI);
        // A failing connection, logged the way a worker logs a failed activity.
        const wrongUser = createDatabaseConnector({
          primary: { ...cluster.database, user: 'dbops_pw' },
          caBundlePath: pki.ca,
          iam: IAM,
        });
        await wrongUser
          .withPrimary(() => Promise.resolve())
          .catch((error: unknown) => {
            console.error('activity failed:', error, inspect(error, { depth: 5, showHidden: true }));
          });
      }),
    );
    assert.deepEqual(row, { user: 'dbops_iam', ssl: true });
    assert.match(
      output,
      /activity failed:.*password authentication failed for user "dbops_pw"/s,
      'output was captured',
    );
    assert.ok(!output.includes(iamToken), 'the token of dbops_iam appears nowhere');
    assert.ok(!output.includes('X-Amz-Signature'), 'no token appears anywhere');
    assert.ok(!output.includes(CREDENTIALS.secretAccessKey));
  });

  it('falls back to PGPASSWORD over TLS without IAM, logging no password', async () => {
    const saved = process.env.PGPASSWORD;
    process.env.PGPASSWORD = PASSWORD;
    try {
      const connector = createDatabaseConnector({
        primary: { ...cluster.database, user: 'dbops_pw' },
        caBundlePath: pki.ca,
      });
      let row: unknown;
      const output = await captureOutput(async () => {
        row = await connector.withPrimary(whoAmI);
        await createDatabaseConnector({
          primary: { ...cluster.database, user: 'dbops_iam' },
          caBundlePath: pki.ca,
        })
          .withPrimary(() => Promise.resolve())
          .catch((error: unknown) => console.error('activity failed:', error));
      });
      assert.deepEqual(row, { user: 'dbops_pw', ssl: true });
      assert.match(output, /activity failed:.*password authentication failed for user "dbops_iam"/s);
      assert.ok(!output.includes(PASSWORD));
    } finally {
      if (saved === undefined) delete process.env.PGPASSWORD;
      else process.env.PGPASSWORD = saved;
    }
  });

  it('refuses a server whose certificate does not chain to the configured CA bundle', async () => {
    const connector = createDatabaseConnector({
      primary: { ...cluster.database, user: 'dbops_iam' },
      caBundlePath: pki.otherCa,
      iam: IAM,
    });
    let ran = false;
    await assert.rejects(
      connector.withPrimary(() => {
        ran = true;
        return Promise.resolve();
      }),
      /self[- ]signed certificate in certificate chain|unable to verify/i,
    );
    assert.equal(ran, false);
  });

  it('names PGSSLROOTCERT when the CA bundle cannot be read', async () => {
    const connector = createDatabaseConnector({
      primary: cluster.database,
      caBundlePath: path.join(pki.dir, 'missing.pem'),
    });
    await assert.rejects(
      connector.withPrimary(() => Promise.resolve()),
      /CA bundle .*missing\.pem \(PGSSLROOTCERT\) cannot be read/,
    );
  });

  it('asks the configured replica first for read-only work (over the same TLS), read-write work goes to the primary, and reaches another endpoint', async () => {
    // One server plays both roles: the "replica" address is a forwarder that counts connections.
    const replica = await startForwarder(cluster.database.port);
    const saved = process.env.PGPASSWORD;
    process.env.PGPASSWORD = PASSWORD;
    try {
      const connector = createDatabaseConnector({
        primary: { ...cluster.database, user: 'dbops_pw' },
        replica: { host: '127.0.0.1', port: replica.port },
        caBundlePath: pki.ca,
      });
      await connector.withPrimary((client) => client.query('SELECT 1'));
      assert.equal(replica.connections(), 0, 'read-write work stays on the primary');
      const { row, route } = await connector.withReadOnly(async (session) => ({
        row: await whoAmI(session.client),
        route: session.route,
      }));
      assert.equal(replica.connections(), 1, 'read-only work asked the replica first');
      // The "replica" is the primary itself, not in recovery: the work goes to the primary, saying why.
      assert.equal(route.server, 'primary');
      assert.match(route.reason, /not in recovery/);
      assert.deepEqual(row, { user: 'dbops_pw', ssl: true });

      const restored = { ...cluster.database, user: 'dbops_pw', port: replica.port };
      assert.deepEqual(await connector.withEndpoint(restored, whoAmI), { user: 'dbops_pw', ssl: true });
      assert.equal(
        replica.connections(),
        2,
        'another endpoint (a restored instance) is reached with the same TLS',
      );

      const noReplica = createDatabaseConnector({ primary: cluster.database });
      await noReplica.withReadOnly(({ client }) => client.query('SELECT 1'));
      assert.equal(replica.connections(), 2, 'without a replica, read-only work uses the primary');
    } finally {
      if (saved === undefined) delete process.env.PGPASSWORD;
      else process.env.PGPASSWORD = saved;
      await replica.stop();
    }
  });

  it('builds a plain connector for the local provider from the configuration (no TLS, no IAM)', async () => {
    const config = loadConfig({
      PGHOST: '127.0.0.1',
      PGPORT: String(cluster.database.port),
      PGDATABASE: 'postgres',
    });
    const row = await connectorFromConfig(config).withReadOnly(({ client }) => whoAmI(client));
    assert.deepEqual(row, { user: 'postgres', ssl: false });
  });
});

/** A loopback forwarder to `port` that records every byte the client sent. */
async function startRecordingForwarder(port: number) {
  const sent: Buffer[] = [];
  const server = net.createServer((socket) => {
    const upstream = net.connect(port, '127.0.0.1');
    socket.on('data', (chunk: Buffer) => sent.push(chunk));
    socket.pipe(upstream).pipe(socket);
    socket.on('error', () => upstream.destroy());
    upstream.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    sent: () => Buffer.concat(sent),
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('aws provider: no database connection without TLS (real PostgreSQL 15 with TLS off)', () => {
  let cluster: ThrowawayCluster;
  let pki: TestPki;
  /** The 8-byte SSLRequest: length 8, code 80877103. */
  const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
  const PASSWORD = 'a-password-that-must-not-travel-in-clear';

  before(async () => {
    [cluster, pki] = await Promise.all([startThrowawayCluster(), makeTestPki()]);
  });
  after(async () => {
    await cluster?.stop();
    await pki?.remove();
  });

  const awsConfig = (port: number, auth: 'iam' | 'password') =>
    loadConfig({
      DBOPS_PROVIDER: 'aws',
      AWS_REGION: 'us-east-1',
      DBOPS_RDS_SUBNET_GROUP: 'mcp-demo-db',
      DBOPS_RDS_SECURITY_GROUP_IDS: 'sg-0123abcd',
      DBOPS_RDS_PARAMETER_GROUP: 'mcp-demo-postgres15',
      PGSSLROOTCERT: pki.ca,
      DBOPS_DB_AUTH: auth,
      PGHOST: '127.0.0.1',
      PGPORT: String(port),
      PGDATABASE: 'postgres',
      PGUSER: 'postgres',
    });

  for (const auth of ['password', 'iam'] as const) {
    it(`the configured connector (${auth} auth) fails on a server without TLS after sending only the TLS request: no startup, no ${auth === 'iam' ? 'token' : 'password'}`, async () => {
      const forwarder = await startRecordingForwarder(cluster.database.port);
      const saved = { password: process.env.PGPASSWORD, sslmode: process.env.PGSSLMODE };
      process.env.PGPASSWORD = PASSWORD;
      // Even an environment asking for plaintext changes nothing.
      process.env.PGSSLMODE = 'disable';
      try {
        const connector = connectorFromConfig(awsConfig(forwarder.port, auth));
        let ran = false;
        await assert.rejects(
          connector.withPrimary(() => {
            ran = true;
            return Promise.resolve();
          }),
          /The server does not support SSL connections/,
        );
        assert.equal(ran, false);
        assert.deepEqual(forwarder.sent(), SSL_REQUEST);
      } finally {
        for (const [name, value] of [
          ['PGPASSWORD', saved.password],
          ['PGSSLMODE', saved.sslmode],
        ] as const) {
          if (value === undefined) delete process.env[name];
          else process.env[name] = value;
        }
        await forwarder.stop();
      }
    });
  }

  it('the ping activity goes through the same connector: refused on a server without TLS', async () => {
    const connector = connectorFromConfig(awsConfig(cluster.database.port, 'password'));
    const activities = createActivities({ ...localActivityDeps(cluster.database), connector });
    await assert.rejects(activities.pingDatabase(), /The server does not support SSL connections/);
  });

  it('refuses to build a connector that would connect without TLS when TLS is required or IAM is on', () => {
    assert.throws(
      () => createDatabaseConnector({ primary: cluster.database, requireTls: true }),
      /^Error: database connections must use TLS here, and no CA bundle is configured \(set PGSSLROOTCERT/,
    );
    assert.throws(
      () => createDatabaseConnector({ primary: cluster.database, iam: IAM }),
      /^Error: IAM database authentication needs TLS: an auth token is a password and is only sent over verified TLS/,
    );
  });
});

describe('a dropped connection fails the attempt, not the process (real PostgreSQL 15)', () => {
  let cluster: ThrowawayCluster;
  let monitor: Client;
  let logDir: string;
  const connector = () => createDatabaseConnector({ primary: cluster.database });

  before(async () => {
    cluster = await startThrowawayCluster();
    monitor = await testSession(cluster.database);
    logDir = await mkdtemp(path.join(os.tmpdir(), 'dbops-restart-'));
  });
  after(async () => {
    await monitor?.end().catch(() => undefined);
    await cluster?.stop();
    await rm(logDir, { recursive: true, force: true });
  });

  /** The attempt's error: typed, retryable, and saying what happened. */
  const droppedBy = (reason: RegExp) => (error: unknown) => {
    assert.ok(error instanceof DatabaseConnectionError, String(error));
    assert.equal(error.name, 'DatabaseConnectionError');
    assert.equal(error.retryable, true);
    assert.match(
      error.message,
      new RegExp(`^the database connection to 127\\.0\\.0\\.1:\\d+/postgres was closed: `),
    );
    assert.match(error.message, reason);
    return true;
  };

  it('a query running when its session is terminated: rejected with DatabaseConnectionError naming the administrator', async () => {
    const attempt = connector().withPrimary((client) =>
      client.query('SELECT pg_sleep(60) AS dropped_running'),
    );
    const pid = await waitForDbopsBackend(monitor, 'running the query', `query LIKE '%dropped_running%'`);
    assert.equal(await terminateBackend(monitor, pid), true);
    await assert.rejects(
      attempt,
      droppedBy(/terminated by an administrator \(pg_terminate_backend\).*SQLSTATE 57P01/),
    );
    // The next attempt gets a fresh connection.
    const { rows } = await connector().withPrimary((client) =>
      client.query<{ ok: number }>('SELECT 1 AS ok'),
    );
    assert.deepEqual(rows, [{ ok: 1 }]);
  });

  it('an idle session terminated between two queries: the next query fails at once with the reason of the loss', async () => {
    const attempt = connector().withPrimary(async (client) => {
      await client.query('SELECT 1 AS dropped_idle');
      // Only an 'end' listener (events.once would add an 'error' one and hide a missing listener).
      const ended = new Promise((resolve) => client.once('end', resolve));
      assert.equal(await terminateBackend(monitor, await backendPid(client)), true);
      await ended; // the client has seen its connection go (and emitted 'error' while idle)
      return client.query('SELECT 2');
    });
    await assert.rejects(
      attempt,
      droppedBy(/terminated by an administrator \(pg_terminate_backend\).*SQLSTATE 57P01/),
    );
  });

  it('a server restarted at once (as after a crashed backend) under a running query: typed error, then the retry succeeds', async () => {
    const attempt = connector().withPrimary((client) =>
      client.query('SELECT pg_sleep(60) AS dropped_restart'),
    );
    const failed = assert.rejects(
      attempt,
      droppedBy(/terminated by an administrator|closed the connection unexpectedly/),
    );
    await waitForDbopsBackend(monitor, 'running the query', `query LIKE '%dropped_restart%'`);
    await restartImmediately(cluster.dataDir, logDir);
    await failed;
    monitor = await testSession(cluster.database);
    const { rows } = await connector().withPrimary((client) =>
      client.query<{ ok: number }>('SELECT 1 AS ok'),
    );
    assert.deepEqual(rows, [{ ok: 1 }]);
  });

  it('a peer that goes silent (a network partition): closing the connection gives up after 5 s instead of hanging', async () => {
    // A relay to the server that, once told to, passes nothing on and never closes its side.
    let silent = false;
    const relays: net.Socket[] = [];
    const relay = net.createServer({ allowHalfOpen: true }, (socket) => {
      const upstream = net.connect(cluster.database.port, '127.0.0.1');
      relays.push(socket, upstream);
      socket.on('data', (chunk) => silent || upstream.write(chunk));
      upstream.on('data', (chunk) => silent || socket.write(chunk));
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    try {
      const port = (relay.address() as net.AddressInfo).port;
      const started = Date.now();
      const { rows } = await createDatabaseConnector({ primary: { ...cluster.database, port } }).withPrimary(
        async (client) => {
          const result = await client.query<{ ok: number }>('SELECT 1 AS ok');
          silent = true;
          return result;
        },
      );
      const closedAfter = Date.now() - started;
      assert.deepEqual(rows, [{ ok: 1 }]);
      assert.ok(closedAfter >= 4_500 && closedAfter < 15_000, `closed after ${closedAfter} ms`);
    } finally {
      relays.forEach((socket) => socket.destroy());
      relay.close();
    }
  });

  it('no server listening: DatabaseConnectionError saying the connection was refused', async () => {
    const port = await freePort();
    await assert.rejects(
      createDatabaseConnector({ primary: { ...cluster.database, port } }).withPrimary(() =>
        Promise.resolve(),
      ),
      (error: unknown) => {
        assert.ok(error instanceof DatabaseConnectionError, String(error));
        assert.match(
          error.message,
          new RegExp(
            `^could not connect to the database at 127\\.0\\.0\\.1:${port}/postgres: network error \\(connect ECONNREFUSED`,
          ),
        );
        return true;
      },
    );
  });

  it('an SQL error is no connection failure: it reaches the caller unchanged', async () => {
    await assert.rejects(
      connector().withPrimary((client) => client.query('SELECT * FROM no_such_table')),
      (error: unknown) => !(error instanceof DatabaseConnectionError) && /no_such_table/.test(String(error)),
    );
  });
});
