import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { Client } from 'pg';

import {
  makePostgresDir,
  runPgBinary,
  startCluster,
  stopCluster,
  writeClusterSettings,
} from '../../../activities/postgres/cluster';
import { createDatabaseConnector, type ConnectorOptions } from '../../../activities/postgres/connect';
import { createHealthActivities, type HealthSnapshot } from '../../../activities/postgres/health';
import { setUpWorkerRole, WORKER_ROLE } from '../../../activities/postgres/worker-role';
import { freePort } from '../../../activities/ports';
import { startThrowawayCluster, type ThrowawayCluster } from '../../helpers/postgres';

const STANDBY_NAME = 'health_standby';

/** A streaming replica of `primary` (pg_basebackup -R), on its own port; connections as the superuser. */
async function startStandby(primary: ThrowawayCluster) {
  const root = await mkdtemp(path.join(os.tmpdir(), 'dbops-standby-'));
  await makePostgresDir(root);
  const dataDir = path.join(root, 'data');
  const port = await freePort();
  await runPgBinary('pg_basebackup', [
    ...['--host', '127.0.0.1', '--port', String(primary.database.port), '--username', 'postgres'],
    ...['--pgdata', dataDir, '--write-recovery-conf', '--checkpoint', 'fast'],
    ...['--create-slot', '--slot', STANDBY_NAME],
  ]);
  await writeClusterSettings(dataDir, { port, extraConf: { cluster_name: `'${STANDBY_NAME}'` } });
  await startCluster(dataDir, path.join(root, 'server.log'));
  const admin = new Client({ ...primary.database, port });
  admin.on('error', () => undefined);
  await admin.connect();
  return {
    port,
    admin,
    async stop() {
      await admin.end().catch(() => undefined);
      await stopCluster(dataDir, 'immediate');
      await rm(root, { recursive: true, force: true });
    },
  };
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting until ${what}`);
}

describe('health activity (real Postgres, as the worker role, with a streaming replica)', () => {
  let cluster: ThrowawayCluster;
  let standby: Awaited<ReturnType<typeof startStandby>>;
  /** The superuser: what the application and the operator do. */
  let sql: Client;
  let worker: ConnectorOptions['primary'];

  /** Health activities of a worker whose connector has these options (the worker role on the primary). */
  const healthActivities = (options: Omit<ConnectorOptions, 'primary'> = {}) => {
    const connector = createDatabaseConnector({ primary: worker, ...options });
    return createHealthActivities(
      (_instanceId, fn) => connector.withPrimary(fn),
      (_instanceId, fn) => connector.withReadOnly(fn),
    );
  };
  const replica = (maxLagSeconds?: number) => ({
    replica: { host: '127.0.0.1', port: standby.port, maxLagSeconds },
  });

  /** Waits until the standby has replayed everything the primary wrote so far. */
  const replayed = async () => {
    const { rows } = await sql.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    await until('the standby replayed the primary', async () => {
      const standbyAt = await standby.admin.query<{ ok: boolean }>(
        'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok',
        [rows[0]!.lsn],
      );
      return standbyAt.rows[0]!.ok;
    });
  };

  /** measureHealth in a (mock) activity context, as the worker runs it. */
  const measure = (
    activities = healthActivities(),
    env = new MockActivityEnvironment(),
  ): Promise<HealthSnapshot> => env.run(() => activities.measureHealth({}));

  before(async () => {
    cluster = await startThrowawayCluster();
    sql = await cluster.connect();
    await setUpWorkerRole(sql);
    worker = { ...cluster.database, user: WORKER_ROLE };
    standby = await startStandby(cluster);
    await until('the standby streams', async () => {
      const { rows } = await sql.query(
        `SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'`,
        [STANDBY_NAME],
      );
      return rows.length === 1;
    });
    // A replayed commit: the standby's lag is measurable from here on (its replay time is set).
    await sql.query('CREATE TABLE replayed_marker (at timestamptz)');
    await replayed();
  });
  after(async () => {
    await standby?.stop();
    await cluster?.stop();
  });

  it('runs as a role that is no superuser', async () => {
    const { rows } = await sql.query<{ rolsuper: boolean }>(
      'SELECT rolsuper FROM pg_roles WHERE rolname = $1',
      [WORKER_ROLE],
    );
    assert.deepEqual(rows, [{ rolsuper: false }]);
  });

  it('sees the sessions of other roles and the streaming replica (pg_monitor), and runs the kNN query on the replica', async () => {
    const others = await Promise.all([cluster.connect(), cluster.connect(), cluster.connect()]);
    assert.equal(others.length, 3);
    const snapshot = await measure(healthActivities(replica()));
    // The three sessions above, `sql`, and the worker's own.
    assert.ok(snapshot.connections.used >= 5, `${snapshot.connections.used} sessions seen`);
    assert.equal(snapshot.isReplica, false);
    assert.deepEqual(
      snapshot.replicas.map((r) => r.name),
      [STANDBY_NAME],
    );
    assert.deepEqual(snapshot.knn, { status: 'no-table' });
    assert.equal(snapshot.knnReadFrom.server, 'replica', snapshot.knnReadFrom.reason);
    assert.match(snapshot.knnReadFrom.reason, /within the bound of 300 s/);
    assert.ok(snapshot.cache.hits > 0);
  });

  it('reads the statement statistics of every role, and says why when pg_stat_statements is not created', async () => {
    await sql.query('DROP EXTENSION pg_stat_statements');
    const missing = await measure();
    assert.equal(missing.slowest, null);
    assert.match(missing.statementsProblem!, /pg_stat_statements extension is not created.*worker-role\.sql/);
    await setUpWorkerRole(sql);
    for (let i = 0; i < 30; i++) await sql.query('SELECT $1::int AS health_probe', [i]);
    const snapshot = await measure();
    assert.equal(snapshot.statementsProblem, null);
    const other = snapshot.mostFrequent!.find((s) => s.query.includes('health_probe'));
    assert.equal(other?.query, 'SELECT $1::int AS health_probe', "the superuser's statement, with its text");
  });

  it('never returns a statement that carries a password (utility statements keep their literals)', async () => {
    await sql.query('CREATE ROLE app LOGIN');
    for (let i = 0; i < 50; i++) await sql.query(`ALTER ROLE app PASSWORD 'hunter2-secret'`);
    const snapshot = await measure();
    const frequent = snapshot.mostFrequent!.find((s) => s.calls === 50)!;
    assert.equal(frequent.query, '(statement mentioning a password, not shown)');
    assert.doesNotMatch(JSON.stringify(snapshot), /hunter2/);
  });

  it('reads on the primary while the replica lags more than the bound, and on the replica within it', async () => {
    // A commit the standby replays, then replay paused and more written on the primary: the
    // standby receives it but stays at that commit, and its lag grows from there.
    await sql.query('INSERT INTO replayed_marker VALUES (now())');
    await replayed();
    await standby.admin.query('SELECT pg_wal_replay_pause()');
    try {
      await sql.query('INSERT INTO replayed_marker VALUES (now())');
      await until('the standby lags more than 1 s', async () => {
        const lag = await standby.admin.query<{ behind: boolean }>(
          `SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()
                  AND now() - pg_last_xact_replay_timestamp() > interval '1 second' AS behind`,
        );
        return lag.rows[0]!.behind;
      });
      const fellBack = await measure(healthActivities(replica(1)));
      assert.equal(fellBack.knnReadFrom.server, 'primary');
      assert.match(fellBack.knnReadFrom.reason, /^replica lag [\d.]+ s is above the bound of 1 s$/);
      assert.ok(fellBack.knnReadFrom.replicaLagSeconds! > 1);

      const within = await measure(healthActivities(replica()));
      assert.equal(within.knnReadFrom.server, 'replica', 'a lag of seconds is within the default bound');
    } finally {
      await standby.admin.query('SELECT pg_wal_replay_resume()');
    }
  });

  it('reads on the primary when the replica cannot be reached, saying so', async () => {
    const snapshot = await measure(healthActivities({ replica: { host: '127.0.0.1', port: 1 } }));
    assert.equal(snapshot.knnReadFrom.server, 'primary');
    assert.match(snapshot.knnReadFrom.reason, /^the replica cannot be reached/);
  });

  it('heartbeats on its timer while a measurement waits, and cancelling the activity cancels its query', async () => {
    const owner = new Client(worker);
    await owner.connect();
    await owner.query('CREATE TABLE conversation_chunks (id bigserial PRIMARY KEY, embedding vector(3))');
    const locker = await cluster.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE conversation_chunks IN ACCESS EXCLUSIVE MODE');
    const env = new MockActivityEnvironment();
    let beats = 0;
    let wanted = Infinity;
    let enough!: () => void;
    const reached = new Promise<void>((resolve) => (enough = resolve));
    env.on('heartbeat', () => {
      beats += 1;
      if (beats >= wanted) enough();
    });
    const running = measure(healthActivities(), env);
    try {
      await until('the kNN query waits for the lock', async () => {
        const { rows } = await sql.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE wait_event_type = 'Lock' AND query LIKE '%FROM conversation_chunks%'`,
        );
        return rows[0]!.n === 1;
      });
      // Two more heartbeats while the query still waits.
      wanted = beats + 2;
      await reached;
      env.cancel();
      await assert.rejects(running, (error: Error) => error instanceof CancelledFailure);
      const { rows } = await sql.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'`,
      );
      assert.equal(rows[0]!.n, 0, 'the waiting query was cancelled');
    } finally {
      await locker.query('ROLLBACK');
      await owner.query('DROP TABLE conversation_chunks');
      await owner.end();
    }
  });
});
