import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, open, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Client } from 'pg';

import type {
  Endpoint,
  InstanceDescription,
  SnapshotDescription,
} from '../../../activities/control-plane/control-plane';
import { LocalControlPlane } from '../../../activities/control-plane/local';
import { createSnapshotRecord } from '../../../activities/control-plane/local-jobs';
import { StateLayout } from '../../../activities/control-plane/local-state';
import { withClient } from '../../../activities/postgres/connect';
import { beginFingerprints, fingerprintTable } from '../../../activities/postgres/fingerprints';
import {
  AlreadyExistsError,
  BusyError,
  InvalidInputError,
  InvalidStateError,
  NotFoundError,
  RestoreTimeOutOfRangeError,
} from '../../../workflows/lib/errors';

const execFileAsync = promisify(execFile);

async function query<T extends object>(endpoint: Endpoint, sql: string): Promise<T[]> {
  const client = new Client({ ...endpoint });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

/** Polls until the instance leaves `creating` (bounded: a hung job fails the test, not the suite). */
async function settledInstance(plane: LocalControlPlane, id: string): Promise<InstanceDescription> {
  for (let i = 0; i < 1200; i++) {
    const description = await plane.describeInstance(id);
    if (description.status !== 'creating') return description;
    await sleep(100);
  }
  throw new Error(`instance ${id} is still creating`);
}

async function settledSnapshot(plane: LocalControlPlane, id: string): Promise<SnapshotDescription> {
  for (let i = 0; i < 1200; i++) {
    const description = await plane.describeSnapshot(id);
    if (description.status !== 'creating') return description;
    await sleep(100);
  }
  throw new Error(`snapshot ${id} is still creating`);
}

/** Phases of the chunks table, with the number of rows of each. */
async function phases(endpoint: Endpoint): Promise<Record<string, number>> {
  const rows = await query<{ phase: string; n: string }>(
    endpoint,
    'SELECT phase, count(*) AS n FROM chunks GROUP BY phase ORDER BY phase',
  );
  return Object.fromEntries(rows.map((row) => [row.phase, Number(row.n)]));
}

async function dataChecksum(endpoint: Endpoint): Promise<string> {
  const rows = await query<{ sum: string }>(
    endpoint,
    `SELECT md5(string_agg(c::text, '|' ORDER BY id)) AS sum FROM chunks c`,
  );
  return rows[0]!.sum;
}

/** What a user would look at to see whether anything was created: files, instances, clusters. */
async function footprint(plane: LocalControlPlane, stateDir: string) {
  const top = async (dir: string) => (await readdir(path.join(stateDir, dir)).catch(() => [])).sort();
  const instances = await plane.listInstances();
  const { stdout } = await execFileAsync('ps', ['-eo', 'args']);
  return {
    stateDir: (await readdir(stateDir)).sort(),
    instances: await top('instances'),
    snapshots: await top('snapshots'),
    exports: await top('exports'),
    buckets: await top('buckets'),
    described: instances.map((i) => `${i.instanceId}:${i.status}`),
    servers: stdout.split('\n').filter((line) => line.includes(stateDir)).length,
  };
}

describe('local control plane (real PostgreSQL 15 clusters)', () => {
  let stateDir: string;
  let plane: LocalControlPlane;
  let source: Endpoint;
  let checksumBefore: string;
  let betweenT2AndT3: string;

  before(async () => {
    stateDir = await mkdtemp(path.join(os.tmpdir(), 'dbops-local-'));
    await chmod(stateDir, 0o755); // the postgres user must reach the clusters inside
    plane = new LocalControlPlane({ stateDir });
    await plane.createInstance('Source-DB');
    const created = await settledInstance(plane, 'source-db');
    assert.equal(created.status, 'available', created.providerStatus);
    source = created.endpoint!;

    // T1: 2000 rows with embeddings and an HNSW index, then a manual snapshot.
    await query(
      source,
      `CREATE TABLE chunks (id bigserial PRIMARY KEY, phase text NOT NULL, embedding vector(3) NOT NULL);
       CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops);
       INSERT INTO chunks (phase, embedding)
         SELECT 't1', ARRAY[random(), random(), random()]::vector FROM generate_series(1, 2000);
       ANALYZE chunks;`,
    );
    await plane.createSnapshot('source-db', 'snap-t1', { purpose: 'test' });
    assert.equal((await settledSnapshot(plane, 'snap-t1')).status, 'available');
    // T2, the target time a millisecond after T2 committed, and T3 once the server's clock is past it.
    await query(
      source,
      `INSERT INTO chunks (phase, embedding) SELECT 't2', '[1,0,0]' FROM generate_series(1, 20)`,
    );
    betweenT2AndT3 = new Date(Date.now() + 1).toISOString();
    for (let i = 0; i < 1200; i++) {
      const [row] = await query<{ past: boolean }>(
        source,
        `SELECT clock_timestamp() > '${betweenT2AndT3}'::timestamptz + interval '1 millisecond' AS past`,
      );
      if (row?.past) break;
    }
    await query(
      source,
      `INSERT INTO chunks (phase, embedding) SELECT 't3', '[0,1,0]' FROM generate_series(1, 30)`,
    );
    checksumBefore = await dataChecksum(source);
  });

  after(async () => {
    if (!plane) return;
    for (const instance of await plane.listInstances()) {
      await plane.deleteInstance(instance.instanceId, { skipFinalSnapshot: true });
    }
    await rm(stateDir, { recursive: true, force: true });
  });

  it("creates an instance like RDS: available, endpoint (the worker's role, no superuser), WAL archiving, pg_stat_statements, an automated backup", async () => {
    const description = await plane.describeInstance('source-db');
    assert.equal(description.instanceId, 'source-db', 'identifiers are lower-cased as on RDS');
    assert.deepEqual(
      { ...description.endpoint, port: 0 },
      { host: '127.0.0.1', port: 0, database: 'mcp_db', user: 'dbops' },
    );
    assert.deepEqual(
      await query(
        source,
        `SELECT rolsuper, pg_has_role('pg_monitor', 'member') AS monitor FROM pg_roles WHERE rolname = current_user`,
      ),
      [{ rolsuper: false, monitor: true }],
    );
    assert.match(description.engineVersion, /^15\.\d+$/);
    const settings = await query<{ name: string; setting: string }>(
      source,
      `SELECT name, setting FROM pg_settings
        WHERE name IN ('archive_mode', 'wal_level', 'shared_preload_libraries') ORDER BY name`,
    );
    assert.deepEqual(
      settings.map((s) => `${s.name}=${s.setting}`),
      ['archive_mode=on', 'shared_preload_libraries=pg_stat_statements', 'wal_level=replica'],
    );
    // The snapshots made so far in before() (other tests add their own).
    const snapshots = (await plane.listSnapshots('source-db')).filter(
      (s) => s.type === 'automated' || s.snapshotId === 'snap-t1',
    );
    assert.deepEqual(
      snapshots.map((s) => `${s.type}:${s.status}`),
      ['manual:available', 'automated:available'],
      'newest first, manual and automated',
    );
    assert.match(snapshots[1]!.snapshotId, /^rds:source-db-\d{4}-\d\d-\d\d-\d\d-\d\d$/);
    assert.equal(description.earliestRestorableTime, snapshots[1]!.createdAt);
    assert.ok(description.latestRestorableTime! > betweenT2AndT3);
  });

  it('records a snapshot with its source, time, size, exact per-table row counts and content hashes', async () => {
    const snapshot = await plane.describeSnapshot('snap-t1');
    assert.equal(snapshot.instanceId, 'source-db');
    assert.equal(snapshot.percentProgress, 100);
    assert.ok(snapshot.sizeBytes! > 1_000_000, `size ${snapshot.sizeBytes}`);
    assert.deepEqual(snapshot.tableRowCounts, { 'mcp_db.public.chunks': 2000 });
    assert.deepEqual(Object.keys(snapshot.tableContentHashes ?? {}), ['mcp_db.public.chunks']);
    assert.match(snapshot.tableContentHashes!['mcp_db.public.chunks']!, /^[0-9a-f]{64}$/);
    assert.deepEqual(snapshot.tags, { purpose: 'test' });
  });

  it('describes recoverability from what outlives the instance: its newest archived WAL segment and newest available snapshot', async () => {
    const archive = new StateLayout(stateDir).archiveDir('source-db');
    const newestArchived = async () => {
      const segments = (await readdir(archive)).filter((name) => /^[0-9A-F]{24}$/.test(name)).sort();
      return (await stat(path.join(archive, segments.at(-1)!))).mtime.toISOString();
    };
    const newestAvailable = async () => {
      const snapshot = (await plane.listSnapshots('source-db')).find((s) => s.status === 'available')!;
      return { snapshotId: snapshot.snapshotId, createdAt: snapshot.createdAt };
    };
    const described = await plane.describeRecoverability('source-db');
    assert.equal(described.latestRestorableTime, await newestArchived());
    assert.deepEqual(described.newestAvailableSnapshot, await newestAvailable());
    // The instance's own window ends now (a restore archives the current WAL first): a lost one cannot.
    assert.ok(
      (await plane.describeInstance('source-db')).latestRestorableTime! > described.latestRestorableTime,
    );
    await assert.rejects(plane.describeRecoverability('no-such-db'), NotFoundError);
  });

  describe('restores (each a new instance on its own port)', () => {
    let fromSnapshot: InstanceDescription;
    let pointInTime: InstanceDescription;
    let latest: InstanceDescription;

    before(async () => {
      const started = await Promise.all([
        plane.restoreFromSnapshot('snap-t1', 'from-snapshot'),
        plane.restoreToPointInTime('source-db', 'between-t2-t3', { time: betweenT2AndT3 }),
        plane.restoreToPointInTime('source-db', 'at-latest', 'latest'),
      ]);
      assert.deepEqual(
        started.map((d) => d.status),
        ['creating', 'creating', 'creating'],
      );
      [fromSnapshot, pointInTime, latest] = await Promise.all([
        settledInstance(plane, 'from-snapshot'),
        settledInstance(plane, 'between-t2-t3'),
        settledInstance(plane, 'at-latest'),
      ]);
    });

    it('all become available on new ports', () => {
      for (const restored of [fromSnapshot, pointInTime, latest]) {
        assert.equal(restored.status, 'available', restored.providerStatus);
      }
      const ports = [source, fromSnapshot.endpoint!, pointInTime.endpoint!, latest.endpoint!].map(
        (e) => e.port,
      );
      assert.equal(new Set(ports).size, 4, `ports ${ports.join(', ')}`);
    });

    it('a point-in-time restore between T2 and T3 holds exactly the T1 and T2 rows', async () => {
      assert.deepEqual(await phases(pointInTime.endpoint!), { t1: 2000, t2: 20 });
    });

    it("'latest' holds the rows of all three", async () => {
      assert.deepEqual(await phases(latest.endpoint!), { t1: 2000, t2: 20, t3: 30 });
    });

    it('a snapshot restore holds exactly the rows at snapshot time, with the content hash recorded', async () => {
      assert.deepEqual(await phases(fromSnapshot.endpoint!), { t1: 2000 });
      const restored = await withClient(fromSnapshot.endpoint!, async (client) => {
        await beginFingerprints(client);
        try {
          return await fingerprintTable(client, { schema: 'public', name: 'chunks' });
        } finally {
          await client.query('ROLLBACK');
        }
      });
      const { tableContentHashes } = await plane.describeSnapshot('snap-t1');
      assert.deepEqual(restored, { rows: 2000, hash: tableContentHashes!['mcp_db.public.chunks'] });
    });

    it('the vector column, the HNSW index and a kNN query work on the restored instance', async () => {
      const endpoint = fromSnapshot.endpoint!;
      const plan = await query<{ 'QUERY PLAN': string }>(
        endpoint,
        `EXPLAIN SELECT id FROM chunks ORDER BY embedding <=> '[0.1,0.2,0.3]' LIMIT 5`,
      );
      const text = plan.map((row) => row['QUERY PLAN']).join('\n');
      assert.match(text, /Index Scan using chunks_embedding_hnsw/, text);
      const knn = await query<{ id: string }>(
        endpoint,
        `SELECT id FROM chunks ORDER BY embedding <=> '[0.1,0.2,0.3]' LIMIT 5`,
      );
      assert.equal(knn.length, 5);
      await query(endpoint, `INSERT INTO chunks (phase, embedding) VALUES ('new', '[0.1,0.2,0.3]')`);
      try {
        const nearest = await query<{ phase: string }>(
          endpoint,
          `SELECT phase FROM chunks ORDER BY embedding <=> '[0.1,0.2,0.3]' LIMIT 1`,
        );
        assert.equal(nearest[0]?.phase, 'new', 'the restored instance takes writes and finds them');
      } finally {
        await query(endpoint, `DELETE FROM chunks WHERE phase = 'new'`); // the snapshot's rows again
      }
    });

    it('the source is unchanged: same data checksum, still available', async () => {
      assert.equal(await dataChecksum(source), checksumBefore);
      assert.equal((await plane.describeInstance('source-db')).status, 'available');
    });

    it('a restored instance archives its own WAL, not into the source archive', async () => {
      const conf = await readFile(
        path.join(stateDir, 'instances', 'between-t2-t3', 'data', 'dbops.conf'),
        'utf8',
      );
      assert.match(conf, /instances\/between-t2-t3\/archive/);
      assert.doesNotMatch(conf, /source-db/);
    });

    it('a stopped instance reports stopped, refuses a snapshot, and starts again', async () => {
      await plane.stopInstance('at-latest');
      assert.equal((await plane.describeInstance('at-latest')).status, 'stopped');
      await assert.rejects(plane.createSnapshot('at-latest', 'of-stopped'), InvalidStateError);
      assert.equal((await plane.startInstance('at-latest')).status, 'available');
      assert.deepEqual(await phases(latest.endpoint!), { t1: 2000, t2: 20, t3: 30 });
    });
  });

  describe('after the restores', () => {
    it('exports a snapshot as SQL dumps with a manifest of row counts and checksums', async () => {
      const started = await plane.startExport('export-t1', 'snap-t1', {
        bucket: 'dbops-exports',
        prefix: 'daily/',
      });
      assert.equal(started.status, 'starting');
      let description = started;
      for (let i = 0; i < 1200 && ['starting', 'in-progress'].includes(description.status); i++) {
        await sleep(100);
        description = await plane.describeExport('export-t1');
      }
      assert.equal(description.status, 'complete', description.failureCause);
      const dir = path.join(stateDir, 'buckets', 'dbops-exports', 'daily', 'export-t1');
      assert.equal(description.destination, `file://${dir}`);
      const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as {
        tableRowCounts: Record<string, number>;
        files: { name: string; bytes: number; sha256: string }[];
      };
      assert.deepEqual(manifest.tableRowCounts, { 'mcp_db.public.chunks': 2000 });
      const dump = manifest.files.find((f) => f.name === 'mcp_db.sql')!;
      assert.equal((await stat(path.join(dir, 'mcp_db.sql'))).size, dump.bytes);
      const { stdout } = await execFileAsync('sha256sum', [path.join(dir, 'mcp_db.sql')]);
      assert.equal(stdout.split(' ')[0], dump.sha256);
      assert.match(
        await readFile(path.join(dir, 'mcp_db.sql'), 'utf8'),
        /CREATE INDEX chunks_embedding_hnsw/,
      );
    });

    it('every bad input gets its typed error naming what was wrong, and creates nothing', async () => {
      // An export of its own, for the case of an id already in use.
      await plane.startExport('export-dup', 'snap-t1', { bucket: 'dbops-exports', prefix: 'dup/' });
      for (let i = 0; i < 1200; i++) {
        const { status } = await plane.describeExport('export-dup');
        if (status !== 'starting' && status !== 'in-progress') break;
        await sleep(100);
      }
      const before = await footprint(plane, stateDir);
      const future = new Date(Date.now() + 3_600_000).toISOString();
      const cases: [string, () => Promise<unknown>, new (...args: never[]) => Error, RegExp][] = [
        [
          'instance id starting with a digit',
          () => plane.createInstance('1db'),
          InvalidInputError,
          /instanceId "1db"/,
        ],
        [
          'instance id with a double hyphen',
          () => plane.createInstance('my--db'),
          InvalidInputError,
          /instanceId/,
        ],
        [
          'instance id with a trailing hyphen',
          () => plane.createInstance('my-db-'),
          InvalidInputError,
          /instanceId/,
        ],
        [
          'instance id of 64 characters',
          () => plane.createInstance(`a${'b'.repeat(63)}`),
          InvalidInputError,
          /instanceId/,
        ],
        [
          'instance id with an underscore',
          () => plane.createInstance('my_db'),
          InvalidInputError,
          /instanceId/,
        ],
        ['an existing instance id', () => plane.createInstance('source-db'), AlreadyExistsError, /source-db/],
        ['describe a missing instance', () => plane.describeInstance('nope'), NotFoundError, /nope/],
        [
          'snapshot of a missing instance',
          () => plane.createSnapshot('nope', 'snap-x'),
          NotFoundError,
          /nope/,
        ],
        [
          'an existing snapshot id',
          () => plane.createSnapshot('source-db', 'snap-t1'),
          AlreadyExistsError,
          /snap-t1/,
        ],
        [
          'snapshot id with a dot',
          () => plane.createSnapshot('source-db', 'snap.1'),
          InvalidInputError,
          /snapshotId/,
        ],
        [
          "a manual snapshot id with RDS's automated prefix",
          () => plane.createSnapshot('source-db', 'rds:x'),
          InvalidInputError,
          /snapshotId/,
        ],
        ['describe a missing snapshot', () => plane.describeSnapshot('nope'), NotFoundError, /nope/],
        [
          'an automated snapshot id with a double hyphen',
          () => plane.describeSnapshot('rds:source--db-2026-01-01-00-00'),
          InvalidInputError,
          /snapshotId "rds:source--db/,
        ],
        ['delete a missing snapshot', () => plane.deleteSnapshot('nope'), NotFoundError, /nope/],
        [
          'restore a missing snapshot',
          () => plane.restoreFromSnapshot('nope', 'new-db'),
          NotFoundError,
          /nope/,
        ],
        [
          'restore a snapshot onto an existing instance',
          () => plane.restoreFromSnapshot('snap-t1', 'source-db'),
          AlreadyExistsError,
          /source-db/,
        ],
        [
          'restore a snapshot with a bad target id',
          () => plane.restoreFromSnapshot('snap-t1', 'new db'),
          InvalidInputError,
          /targetInstanceId/,
        ],
        [
          'restore to a time before the earliest backup',
          () => plane.restoreToPointInTime('source-db', 'new-db', { time: '2000-01-01T00:00:00Z' }),
          RestoreTimeOutOfRangeError,
          /restorable range of instance source-db: \d{4}-.+ to \d{4}-/,
        ],
        [
          'restore to a time in the future',
          () => plane.restoreToPointInTime('source-db', 'new-db', { time: future }),
          RestoreTimeOutOfRangeError,
          /outside the restorable range/,
        ],
        [
          'restore to a time that is not a time',
          () => plane.restoreToPointInTime('source-db', 'new-db', { time: 'yesterday' }),
          InvalidInputError,
          /target/,
        ],
        [
          'point-in-time restore of a missing instance',
          () => plane.restoreToPointInTime('nope', 'new-db', 'latest'),
          NotFoundError,
          /nope/,
        ],
        [
          'point-in-time restore onto an existing instance',
          () => plane.restoreToPointInTime('source-db', 'source-db', 'latest'),
          AlreadyExistsError,
          /source-db/,
        ],
        [
          'delete without skipping or naming a final snapshot',
          () => plane.deleteInstance('source-db', { skipFinalSnapshot: false }),
          InvalidInputError,
          /finalSnapshotId/,
        ],
        [
          'delete with a final snapshot id that exists',
          () => plane.deleteInstance('source-db', { skipFinalSnapshot: false, finalSnapshotId: 'snap-t1' }),
          AlreadyExistsError,
          /snap-t1/,
        ],
        [
          "delete an instance's own automated backup",
          async () => plane.deleteSnapshot((await plane.listSnapshots('source-db')).at(-1)!.snapshotId),
          InvalidStateError,
          /automated backup/,
        ],
        [
          'export of a missing snapshot',
          () => plane.startExport('export-x', 'nope', { bucket: 'b-1', prefix: '' }),
          NotFoundError,
          /nope/,
        ],
        [
          'export to a bucket name S3 would refuse',
          () => plane.startExport('export-x', 'snap-t1', { bucket: 'Bad_Bucket', prefix: '' }),
          InvalidInputError,
          /destination\.bucket/,
        ],
        [
          'export to a prefix climbing out of the bucket',
          () => plane.startExport('export-x', 'snap-t1', { bucket: 'b-1', prefix: '../etc' }),
          InvalidInputError,
          /destination\.prefix/,
        ],
        [
          'an existing export id',
          () => plane.startExport('export-dup', 'snap-t1', { bucket: 'b-1', prefix: '' }),
          AlreadyExistsError,
          /export-dup/,
        ],
      ];
      for (const [what, attempt, type, message] of cases) {
        await assert.rejects(attempt(), (error: Error) => {
          assert.ok(
            error instanceof type,
            `${what}: expected ${type.name}, got ${error.name}: ${error.message}`,
          );
          assert.match(error.message, message, what);
          return true;
        });
      }
      assert.deepEqual(await footprint(plane, stateDir), before);
    });

    it('deleting a missing instance succeeds', async () => {
      await plane.deleteInstance('never-existed', { skipFinalSnapshot: true });
      await plane.deleteInstance('never-existed', { skipFinalSnapshot: false, finalSnapshotId: 'final-x' });
    });

    it('a snapshot whose job is killed mid-backup is never reported available, and the next describe settles it', async () => {
      // Throttled so the backup is surely still running when its job is killed.
      const slow = new LocalControlPlane({ stateDir, backupMaxRate: '32k' });
      assert.equal((await slow.createSnapshot('source-db', 'killed-snap')).status, 'creating');
      const snapshotDir = path.join(stateDir, 'snapshots', 'killed-snap');
      while (!(await readdir(snapshotDir)).includes('backup.partial')) await sleep(50);
      const job = JSON.parse(await readFile(path.join(snapshotDir, 'job.json'), 'utf8')) as { pid: number };
      assert.equal((await slow.describeSnapshot('killed-snap')).status, 'creating');

      process.kill(job.pid, 'SIGKILL');
      let settled = await slow.describeSnapshot('killed-snap');
      while (settled.status === 'creating') {
        await sleep(50); // until the killed job has been reaped
        settled = await slow.describeSnapshot('killed-snap');
      }
      assert.equal(settled.status, 'failed');
      assert.deepEqual(
        (await readdir(snapshotDir)).filter((name) => name.startsWith('backup')),
        [],
      );
      const { stdout } = await execFileAsync('ps', ['-eo', 'args']);
      assert.doesNotMatch(stdout, /pg_basebackup.*killed-snap/, 'the backup process outlived its job');
      const listed = (await plane.listSnapshots('source-db')).find((s) => s.snapshotId === 'killed-snap');
      assert.equal(listed?.status, 'failed');
      assert.equal((await plane.describeInstance('source-db')).status, 'available');
    });

    it('an instance whose create job is killed is settled as failed by the next describe, not creating forever', async () => {
      assert.equal((await plane.createInstance('killed-create')).status, 'creating');
      const dir = path.join(stateDir, 'instances', 'killed-create');
      // Killed once initdb is at work on the cluster.
      while (!(await readdir(dir)).includes('data') || !(await readdir(dir)).includes('job.json')) {
        await sleep(20);
      }
      const job = JSON.parse(await readFile(path.join(dir, 'job.json'), 'utf8')) as { pid: number };
      process.kill(job.pid, 'SIGKILL');
      let settled = await plane.describeInstance('killed-create');
      while (settled.status === 'creating') {
        await sleep(50); // until the killed job has been reaped
        settled = await plane.describeInstance('killed-create');
      }
      assert.equal(settled.status, 'failed');
      assert.match(settled.providerStatus, /background job .* ended before the instance was ready/);
      const { stdout } = await execFileAsync('ps', ['-eo', 'args']);
      assert.doesNotMatch(stdout, /killed-create\/data/, 'a process of the killed create still runs');
      await plane.deleteInstance('killed-create', { skipFinalSnapshot: true });
      await assert.rejects(plane.describeInstance('killed-create'), NotFoundError);
    });

    it('deleting an instance while it is being created stops its job and leaves nothing running', async () => {
      await plane.createInstance('deleted-early');
      const dir = path.join(stateDir, 'instances', 'deleted-early');
      while (!(await readdir(dir)).includes('data')) await sleep(20);
      await plane.deleteInstance('deleted-early', { skipFinalSnapshot: true });
      await assert.rejects(plane.describeInstance('deleted-early'), NotFoundError);
      await sleep(1000); // anything the job had started would have shown up by now
      const { stdout } = await execFileAsync('ps', ['-eo', 'args']);
      assert.doesNotMatch(stdout, /deleted-early/, 'a process of the deleted instance still runs');
      assert.equal((await readdir(path.join(stateDir, 'instances'))).includes('deleted-early'), false);
    });

    it('deletes an instance after a final snapshot, which stays restorable', async () => {
      // An instance of its own, one row past the snapshot it came from.
      await plane.restoreFromSnapshot('snap-t1', 'to-delete');
      const restored = await settledInstance(plane, 'to-delete');
      assert.equal(restored.status, 'available', restored.providerStatus);
      await query(
        restored.endpoint!,
        `INSERT INTO chunks (phase, embedding) VALUES ('new', '[0.1,0.2,0.3]')`,
      );
      await plane.deleteInstance('to-delete', {
        skipFinalSnapshot: false,
        finalSnapshotId: 'final-to-delete',
      });
      assert.equal((await plane.describeInstance('to-delete')).status, 'deleting');
      for (let i = 0; i < 1200; i++) {
        const gone = await plane.describeInstance('to-delete').then(
          () => false,
          (error: Error) => error instanceof NotFoundError,
        );
        if (gone) break;
        await sleep(100);
      }
      await assert.rejects(plane.describeInstance('to-delete'), NotFoundError);
      const final = await plane.describeSnapshot('final-to-delete');
      assert.equal(final.status, 'available');
      assert.equal(final.type, 'manual');
      assert.deepEqual(final.tableRowCounts, { 'mcp_db.public.chunks': 2001 });
    });

    it('runs a job as one bundled script on plain node (no TypeScript start), written again when it was removed', async () => {
      const scripts = path.join(stateDir, 'job-scripts');
      await rm(scripts, { recursive: true, force: true });
      await plane.createSnapshot('source-db', 'bundled-job');
      const job = path.join(stateDir, 'snapshots', 'bundled-job', 'job.json');
      const { pid } = JSON.parse(await readFile(job, 'utf8')) as { pid: number };
      const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter((a) => a !== '');
      assert.equal(args[0], process.execPath);
      assert.match(args[1]!, /\/job-scripts\/local-jobs-[0-9a-f]{16}\.js$/);
      assert.ok((await stat(args[1]!)).isFile(), `${args[1]} is missing`);
      assert.deepEqual(args.slice(2), [stateDir, 'snapshot', 'bundled-job']);
      // What the job does is what every other test here shows: end it rather than wait for it.
      process.kill(pid, 'SIGKILL');
      assert.equal((await settledSnapshot(plane, 'bundled-job')).status, 'failed');
      await plane.deleteSnapshot('bundled-job');
    });
  });

  describe('idempotent creates: a retry of the same run finds its own resource', () => {
    // Two runs of one workflow id: only the run id tells them apart.
    const ours = { 'dbops:workflow-id': 'restore-x', 'dbops:run-id': 'run-1', 'dbops:purpose': 'restore' };
    const theirs = { ...ours, 'dbops:run-id': 'run-2' };
    const ourRun = /created by workflow restore-x run run-1, not by this run/;
    const jobPid = async (kind: string, id: string) =>
      (JSON.parse(await readFile(path.join(stateDir, kind, id, 'job.json'), 'utf8')) as { pid: number }).pid;

    it('a snapshot: the same call twice is the one snapshot and one job; another run is refused, named', async () => {
      const tags = { ...ours, 'dbops:purpose': 'backup' };
      await plane.createSnapshot('source-db', 'idem-snap', tags);
      const pid = await jobPid('snapshots', 'idem-snap');
      const again = await plane.createSnapshot('source-db', 'idem-snap', tags);
      assert.equal(again.snapshotId, 'idem-snap');
      assert.equal(await jobPid('snapshots', 'idem-snap'), pid, 'no second backup job');
      await assert.rejects(
        plane.createSnapshot('source-db', 'idem-snap', { ...tags, 'dbops:run-id': 'run-2' }),
        (error: Error) => error instanceof AlreadyExistsError && ourRun.test(error.message),
      );
      assert.equal((await settledSnapshot(plane, 'idem-snap')).status, 'available');
      assert.equal(
        (await plane.listSnapshots('source-db')).filter((s) => s.snapshotId === 'idem-snap').length,
        1,
      );
    });

    it('restores: the same call twice is the one instance; another run is refused, named', async () => {
      const first = await plane.restoreFromSnapshot('snap-t1', 'idem-restore', ours);
      const again = await plane.restoreFromSnapshot('snap-t1', 'idem-restore', ours);
      assert.equal(again.instanceId, 'idem-restore');
      assert.equal(
        again.endpoint?.port ?? first.endpoint?.port,
        first.endpoint?.port ?? again.endpoint?.port,
      );
      const pitr = await plane.restoreToPointInTime('source-db', 'idem-pitr', 'latest', ours);
      assert.equal(
        (await plane.restoreToPointInTime('source-db', 'idem-pitr', 'latest', ours)).instanceId,
        pitr.instanceId,
      );
      for (const attempt of [
        () => plane.restoreFromSnapshot('snap-t1', 'idem-restore', theirs),
        () => plane.restoreToPointInTime('source-db', 'idem-pitr', 'latest', theirs),
        () => plane.restoreFromSnapshot('snap-t1', 'idem-pitr', {}),
      ]) {
        await assert.rejects(
          attempt(),
          (error: Error) => error instanceof AlreadyExistsError && ourRun.test(error.message),
        );
      }
      const [restored, pointInTime] = await Promise.all([
        settledInstance(plane, 'idem-restore'),
        settledInstance(plane, 'idem-pitr'),
      ]);
      assert.equal(restored.status, 'available', restored.providerStatus);
      assert.equal(pointInTime.status, 'available', pointInTime.providerStatus);
      assert.equal(restored.tags['dbops:run-id'], 'run-1');
      const ids = (await plane.listInstances()).map((i) => i.instanceId);
      assert.deepEqual(
        ids.filter((id) => id.startsWith('idem-')),
        ['idem-pitr', 'idem-restore'],
      );
      await plane.deleteInstance('idem-restore', { skipFinalSnapshot: true });
      await plane.deleteInstance('idem-pitr', { skipFinalSnapshot: true });
    });

    it('an export: the same export of the same snapshot to the same place is ours; a different one is refused', async () => {
      const destination = { bucket: 'idem-bucket', prefix: 'a/b' };
      await plane.startExport('idem-export', 'snap-t1', destination);
      const pid = await jobPid('exports', 'idem-export');
      const again = await plane.startExport('idem-export', 'snap-t1', { ...destination, prefix: '/a/b/' });
      assert.equal(again.exportId, 'idem-export');
      assert.equal(await jobPid('exports', 'idem-export'), pid, 'no second export job');
      await assert.rejects(
        plane.startExport('idem-export', 'snap-t1', { ...destination, prefix: 'c' }),
        (error: Error) =>
          error instanceof AlreadyExistsError &&
          error.message ===
            'export idem-export already exists: an export of snapshot snap-t1 to bucket idem-bucket prefix "a/b"',
      );
      let state = await plane.describeExport('idem-export');
      while (state.status === 'starting' || state.status === 'in-progress') {
        await sleep(100);
        state = await plane.describeExport('idem-export');
      }
      assert.equal(state.status, 'complete', state.failureCause);
    });

    it('a retry after an attempt that died between writing the record and starting the job starts the job', async () => {
      const tags = { ...ours, 'dbops:purpose': 'backup' };
      const instance = JSON.parse(
        await readFile(path.join(stateDir, 'instances', 'source-db', 'instance.json'), 'utf8'),
      ) as { incarnation: string; engineVersion: string };
      // What the dead attempt left: the record, no job.
      await createSnapshotRecord(new StateLayout(stateDir), {
        snapshotId: 'orphaned-record',
        instanceId: 'source-db',
        incarnation: instance.incarnation,
        type: 'manual',
        engineVersion: instance.engineVersion,
        tags,
      });
      assert.equal((await plane.createSnapshot('source-db', 'orphaned-record', tags)).status, 'creating');
      const done = await settledSnapshot(plane, 'orphaned-record');
      assert.equal(done.status, 'available');
      const [count] = await query<{ n: string }>(source, 'SELECT count(*) AS n FROM chunks');
      assert.deepEqual(done.tableRowCounts, { 'mcp_db.public.chunks': Number(count?.n) });
    });

    it('an instance: the same create twice is the one instance; a snapshot of it while creating waits (BusyError)', async () => {
      const first = await plane.createInstance('still-creating', { tags: ours });
      const pid = await jobPid('instances', 'still-creating');
      const again = await plane.createInstance('still-creating', { tags: ours });
      assert.equal(again.instanceId, first.instanceId);
      assert.equal(await jobPid('instances', 'still-creating'), pid, 'no second create job');
      await assert.rejects(
        plane.createInstance('still-creating', { tags: theirs }),
        (error: Error) => error instanceof AlreadyExistsError && ourRun.test(error.message),
      );
      await assert.rejects(
        plane.createSnapshot('still-creating', 'too-early'),
        (error: Error) =>
          error instanceof BusyError &&
          error.retryable &&
          error.message === 'waiting: instance still-creating is creating: cannot snapshot it yet',
      );
      await assert.rejects(plane.describeSnapshot('too-early'), NotFoundError);
      await plane.deleteInstance('still-creating', { skipFinalSnapshot: true });
    });
  });

  describe('a describe that read the record while the job worked, and checked the job after it finished', () => {
    /**
     * Runs `describe` across the end of a job: its read of the record sees the job at work, and
     * its look at the job (job.json) comes after the job has finished and exited. The job is held
     * (SIGSTOP) while the describe reads the record; job.json is a named pipe the describe waits on
     * until the job, let go, has exited.
     */
    async function describeAcrossJobEnd<T>(
      kind: 'instances' | 'snapshots',
      id: string,
      describe: () => Promise<T>,
    ): Promise<T> {
      const dir = path.join(stateDir, kind, id);
      const jobFile = path.join(dir, 'job.json');
      const jobText = await readFile(jobFile, 'utf8');
      const { pid } = JSON.parse(jobText) as { pid: number };
      const record = path.join(dir, kind === 'instances' ? 'instance.json' : 'snapshot.json');
      let described: Promise<T>;
      let pipe;
      process.kill(pid, 'SIGSTOP');
      try {
        const held = JSON.parse(await readFile(record, 'utf8')) as { status: string };
        assert.equal(held.status, 'creating', 'the job was done before it could be held');
        await rm(jobFile);
        await execFileAsync('mkfifo', ['--mode=600', jobFile]);
        described = describe();
        // Returns once the describe opens job.json to read it: it has read the record by then.
        pipe = await open(jobFile, 'w');
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      const log = path.join(dir, 'job.log');
      for (let i = 0; i < 1200 && !/: done in \d+ ms/.test(await readFile(log, 'utf8')); i++)
        await sleep(100);
      assert.match(await readFile(log, 'utf8'), /: done in \d+ ms/);
      for (let i = 0; i < 100 && isAlive(pid); i++) await sleep(50); // until the ended job is reaped
      assert.equal(isAlive(pid), false, `job ${pid} is still there`);
      await pipe.writeFile(jobText);
      await pipe.close();
      const result = await described;
      // job.json back as the job left it, for what reads it later (a delete does).
      await rm(jobFile);
      await writeFile(jobFile, jobText);
      return result;
    }

    function isAlive(pid: number): boolean {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    }

    it('a snapshot whose job verified it meanwhile is available, its backup kept', async () => {
      assert.equal((await plane.createSnapshot('source-db', 'raced-snap')).status, 'creating');
      const described = await describeAcrossJobEnd('snapshots', 'raced-snap', () =>
        plane.describeSnapshot('raced-snap'),
      );
      assert.equal(described.status, 'available');
      assert.equal((await plane.describeSnapshot('raced-snap')).status, 'available');
      const backup = path.join(stateDir, 'snapshots', 'raced-snap', 'backup');
      assert.ok(
        (await stat(path.join(backup, 'backup_manifest'))).isFile(),
        'the verified backup was removed',
      );
    });

    it('an instance whose restore job made it available meanwhile is available and serves the data', async () => {
      await plane.restoreFromSnapshot('snap-t1', 'raced-restore');
      const described = await describeAcrossJobEnd('instances', 'raced-restore', () =>
        plane.describeInstance('raced-restore'),
      );
      assert.equal(described.status, 'available', described.providerStatus);
      const again = await plane.describeInstance('raced-restore');
      assert.equal(again.status, 'available', again.providerStatus);
      const { tableRowCounts } = await plane.describeSnapshot('snap-t1');
      const [count] = await query<{ n: string }>(again.endpoint!, 'SELECT count(*) AS n FROM chunks');
      assert.equal(Number(count?.n), tableRowCounts?.['mcp_db.public.chunks']);
      await plane.deleteInstance('raced-restore', { skipFinalSnapshot: true });
    });
  });

  describe("a delete while the instance's automated snapshot is streaming", () => {
    /** The processes working in a directory (or in it after a rename): pid and command line. */
    async function processesIn(name: string): Promise<[number, string][]> {
      const found: [number, string][] = [];
      for (const entry of await readdir('/proc')) {
        if (!/^\d+$/.test(entry)) continue;
        const cwd = await readlink(`/proc/${entry}/cwd`).catch(() => '');
        if (!cwd.startsWith(stateDir) || !cwd.includes(name)) continue;
        const args = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
        found.push([Number(entry), args.replace(/\0/g, ' ').trim()]);
      }
      return found;
    }

    it('stops the server and every child of it, one slow to notice too, then removes the instance', async () => {
      // Its backups read at 32 kB/s: the restore's automated snapshot streams for minutes.
      const slow = new LocalControlPlane({ stateDir, backupMaxRate: '32k' });
      await slow.restoreFromSnapshot('snap-t1', 'slow-backup');
      assert.equal((await settledInstance(slow, 'slow-backup')).status, 'available');
      let walsender: [number, string] | undefined;
      for (let i = 0; i < 600 && walsender === undefined; i++) {
        walsender = (await processesIn('slow-backup')).find(([, args]) => args.includes('walsender'));
        await sleep(100);
      }
      assert.ok(walsender, 'the automated snapshot never streamed');
      // Held, it stands for a child slow to notice that its server died (and to drop its
      // replication slot in the directory then).
      process.kill(walsender[0], 'SIGSTOP');
      try {
        await slow.deleteInstance('slow-backup', { skipFinalSnapshot: true });
        assert.deepEqual(await processesIn('slow-backup'), []);
      } finally {
        for (const [pid] of await processesIn('slow-backup')) process.kill(pid, 'SIGKILL');
      }
      await assert.rejects(slow.describeInstance('slow-backup'), NotFoundError);
      const trash = await readdir(path.join(stateDir, 'trash')).catch(() => []);
      assert.deepEqual(
        trash.filter((name) => name.startsWith('slow-backup')),
        [],
      );
    });
  });

  describe("a snapshot's progress while its fingerprints are read", () => {
    it('moves from 70% towards 95% with the share of pages read, never back, then 100%', async () => {
      await plane.createInstance('progress-db');
      const created = await settledInstance(plane, 'progress-db');
      assert.equal(created.status, 'available', created.providerStatus);
      for (let i = 0; i < 600; i++) {
        const snapshots = await plane.listSnapshots('progress-db');
        if (snapshots.length > 0 && snapshots.every((s) => s.status !== 'creating')) break;
        await sleep(100);
      }
      // About 24 MB: six pieces of 4 MB, each a few percents.
      await query(
        created.endpoint!,
        `CREATE TABLE wide (id bigint, body text);
         INSERT INTO wide SELECT g, repeat('x', 200) FROM generate_series(1, 100000) g;`,
      );
      // A session of the application in a statement: the reading pauses after every piece.
      const application = new Client({ ...created.endpoint! });
      await application.connect();
      const statement = application.query('SELECT pg_sleep(120)').catch(() => undefined);
      const seen: number[] = [];
      try {
        await plane.createSnapshot('progress-db', 'progress-snap', { purpose: 'test' });
        for (let i = 0; i < 12_000; i++) {
          const snapshot = await plane.describeSnapshot('progress-snap');
          if (seen.at(-1) !== snapshot.percentProgress) seen.push(snapshot.percentProgress);
          if (snapshot.status !== 'creating') break;
          await sleep(10);
        }
      } finally {
        await application.end();
        await statement;
      }
      assert.equal(seen.at(-1), 100, `progress seen: ${seen.join(', ')}`);
      assert.deepEqual(
        seen,
        [...seen].sort((a, b) => a - b),
        `progress went back: ${seen.join(', ')}`,
      );
      const reading = seen.filter((percent) => percent > 70 && percent <= 95);
      assert.ok(reading.length >= 4, `progress seen while reading: ${seen.join(', ')}`);
    });
  });
});
