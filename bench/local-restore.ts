/**
 * Restore through the local provider vs the same work done by hand, on the same data, in one run.
 *
 * Data: an instance with ~300 MB of rows, a snapshot, then ~100 MB of WAL written after it.
 * Two restores are measured, each from the request until the new instance takes writes:
 *  - point in time: provider `restoreToPointInTime` vs by hand: switch WAL, copy the base backup,
 *    check the copy against its manifest (pg_verifybackup, as the provider does), write the
 *    recovery settings (restore_command, recovery_target_time, promote), start, wait for the
 *    promotion;
 *  - snapshot: provider `restoreFromSnapshot` vs by hand: copy the base backup, check it, write
 *    the settings, start.
 * Each kind: a warm-up of both ways, then BENCH_ROUNDS (>= 5) rounds in alternating order, each
 * run after the source's WAL is drained (checkpoint, archive caught up) and the disk synced
 * (bench/lib/rounds.ts); printed: the median and spread of provider / by hand (goal <= 1.1), and
 * of provider / by hand without its pg_verifybackup (its time taken out), for comparison.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Client } from 'pg';

import type { Endpoint } from '../activities/control-plane/control-plane';
import { LocalControlPlane } from '../activities/control-plane/local';
import { ADMIN_USER } from '../activities/control-plane/local-jobs';
import {
  chownToPostgres,
  makePostgresDir,
  runPgBinary,
  startCluster,
  stopCluster,
  writeClusterSettings,
} from '../activities/postgres/cluster';
import { freePort } from '../activities/ports';
import { alternate, drainWal, median, printRatios, ratio, record, ROUNDS, type Ratio } from './lib/rounds';

const execFileAsync = promisify(execFile);
const ROWS = Number(process.env.BENCH_ROWS ?? 300_000);

async function sql<T extends object>(endpoint: Endpoint, text: string): Promise<T[]> {
  const client = new Client({ ...endpoint });
  client.on('error', () => undefined); // a dropped connection fails the query below, not the benchmark
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

/** Until the server answers and is out of recovery. */
async function waitForWrites(endpoint: Endpoint): Promise<void> {
  for (;;) {
    const rows = await sql<{ r: boolean }>(endpoint, 'SELECT pg_is_in_recovery() AS r').catch(() => []);
    if (rows[0]?.r === false) return;
    await sleep(50);
  }
}

async function waitFor(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 12_000; i++) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function main(): Promise<void> {
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'dbops-bench-'));
  await chmod(stateDir, 0o755);
  const plane = new LocalControlPlane({ stateDir });
  try {
    console.log(`[bench] source instance with ${ROWS} rows ...`);
    await plane.createInstance('bench-source');
    await waitFor(
      'the source',
      async () => (await plane.describeInstance('bench-source')).status !== 'creating',
    );
    // As the superuser: the setup checkpoints and switches WAL, which the endpoint's role may not.
    const source = { ...(await plane.describeInstance('bench-source')).endpoint!, user: ADMIN_USER };
    await sql(
      source,
      `CREATE TABLE chunks (id bigint PRIMARY KEY, body text NOT NULL, version int NOT NULL DEFAULT 0);
       INSERT INTO chunks (id, body) SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, ${ROWS}) g;
       CHECKPOINT;`,
    );
    await plane.createSnapshot('bench-source', 'bench-base');
    await waitFor(
      'the snapshot',
      async () => (await plane.describeSnapshot('bench-base')).status !== 'creating',
    );
    // WAL to replay after the base backup.
    await sql(source, `UPDATE chunks SET version = 1 WHERE id % 3 = 0`);
    await sleep(200);
    const target = new Date().toISOString();
    await sleep(200);
    await sql(source, `UPDATE chunks SET version = 2 WHERE id = 1`);
    const backup = path.join(stateDir, 'snapshots', 'bench-base', 'backup');
    const sourceArchive = path.join(stateDir, 'instances', 'bench-source', 'archive');
    /** Switches WAL segments and waits until the finished one (and so all before it) is archived. */
    async function archiveWal(): Promise<void> {
      await sql(source, 'SELECT txid_current()');
      const [switched] = await sql<{ name: string }>(
        source,
        'SELECT pg_walfile_name(pg_switch_wal()) AS name',
      );
      await waitFor('the archive', () =>
        execFileAsync('test', ['-f', path.join(sourceArchive, switched!.name)]).then(
          () => true,
          () => false,
        ),
      );
    }
    // The setup's WAL is archived before anything is timed, so no run pays for the backlog.
    await archiveWal();
    const expected = await sql<{ n: string }>(
      source,
      'SELECT count(*) FILTER (WHERE version = 1) AS n FROM chunks',
    );
    const { stdout: size } = await execFileAsync('du', ['-sh', backup]);
    console.log(`[bench] base backup ${size.split('\t')[0]}, target ${target}`);

    /** The provider, from the request until the instance takes writes; then cleaned up. */
    async function viaProvider(kind: 'pitr' | 'snapshot', round: number): Promise<number> {
      const id = `bench-${kind}-${round}`;
      const started = performance.now();
      if (kind === 'pitr') await plane.restoreToPointInTime('bench-source', id, { time: target });
      else await plane.restoreFromSnapshot('bench-base', id);
      await waitFor(id, async () => (await plane.describeInstance(id)).status !== 'creating');
      const elapsed = performance.now() - started;
      const description = await plane.describeInstance(id);
      if (description.status !== 'available') throw new Error(`${id}: ${description.providerStatus}`);
      await check({ ...description.endpoint!, user: ADMIN_USER }, kind);
      // The automated backup a restore takes once available is not part of the restore time.
      await waitFor(`${id} backups`, async () =>
        (await plane.listSnapshots(id)).every((s) => s.status !== 'creating'),
      );
      await plane.deleteInstance(id, { skipFinalSnapshot: true, deleteAutomatedBackups: true });
      return elapsed;
    }

    /** How long each by-hand run's pg_verifybackup took, warm-up first. */
    const verifyMs: Record<'pitr' | 'snapshot', number[]> = { pitr: [], snapshot: [] };

    /** The same work by hand with the same tools. */
    async function byHand(kind: 'pitr' | 'snapshot', round: number): Promise<number> {
      const root = path.join(stateDir, `by-hand-${kind}-${round}`);
      const dataDir = path.join(root, 'data');
      const archive = path.join(root, 'archive');
      await makePostgresDir(root);
      await makePostgresDir(archive);
      const port = await freePort();
      const started = performance.now();
      const settings: Record<string, string> = {
        wal_level: 'replica',
        archive_mode: 'on',
        archive_command: `'test ! -f ${archive}/%f && cp %p ${archive}/%f.tmp && mv ${archive}/%f.tmp ${archive}/%f'`,
      };
      if (kind === 'pitr') {
        await archiveWal();
        Object.assign(settings, {
          restore_command: `'cp ${sourceArchive}/%f %p'`,
          recovery_target_time: `'${target.replace('T', ' ').replace('Z', '+00')}'`,
          recovery_target_action: "'promote'",
        });
      }
      await execFileAsync('cp', ['-a', backup, dataDir]);
      // The provider checks every copy against its backup manifest before starting it; so does
      // this side (timed apart, to show the restore without that check too).
      const verifyStarted = performance.now();
      await runPgBinary('pg_verifybackup', [dataDir], { timeoutMs: 0 });
      verifyMs[kind].push(performance.now() - verifyStarted);
      await writeClusterSettings(dataDir, { port, extraConf: settings });
      if (kind === 'pitr') {
        await writeFile(path.join(dataDir, 'recovery.signal'), '');
        await chownToPostgres(path.join(dataDir, 'recovery.signal'));
      }
      await startCluster(dataDir, path.join(root, 'server.log'), 600);
      const endpoint = { host: '127.0.0.1', port, database: 'mcp_db', user: 'postgres' };
      await waitForWrites(endpoint);
      const elapsed = performance.now() - started;
      await check(endpoint, kind);
      await stopCluster(dataDir, 'immediate');
      await rm(root, { recursive: true, force: true });
      return elapsed;
    }

    /** Both ways must restore the same data, or the comparison means nothing. */
    async function check(endpoint: Endpoint, kind: 'pitr' | 'snapshot'): Promise<void> {
      const [row] = await sql<{ n: string; last: number }>(
        endpoint,
        `SELECT count(*) FILTER (WHERE version = 1) AS n, max(version) AS last FROM chunks`,
      );
      const want = kind === 'pitr' ? { n: expected[0]!.n, last: 1 } : { n: '0', last: 0 };
      if (row?.n !== want.n || row.last !== want.last) {
        throw new Error(
          `${kind} restored the wrong data: ${JSON.stringify(row)}, expected ${JSON.stringify(want)}`,
        );
      }
    }

    const admin = new Client({ ...source });
    await admin.connect();
    const ratios: Ratio[] = [];
    try {
      for (const kind of ['pitr', 'snapshot'] as const) {
        let run = 0;
        // Each run starts with the WAL drained and the disk quiet: no checkpoint, archiving or
        // writeback left over from the previous one.
        const quietly =
          (restore: (kind: 'pitr' | 'snapshot', run: number) => Promise<number>) => async () => {
            await drainWal(admin);
            await execFileAsync('sync');
            return restore(kind, ++run);
          };
        const samples = await alternate(
          { provider: quietly(viaProvider), byHand: quietly(byHand) },
          (round, ms) =>
            console.log(
              `[bench] ${kind} round ${round}: provider ${(ms.provider / 1000).toFixed(2)} s, by hand ${(ms.byHand / 1000).toFixed(2)} s`,
            ),
        );
        console.log(
          `local ${kind === 'pitr' ? 'point-in-time' : 'snapshot'} restore, median of ${ROUNDS}: provider ${(median(samples.provider) / 1000).toFixed(2)} s, by hand ${(median(samples.byHand) / 1000).toFixed(2)} s`,
        );
        for (const side of ['provider', 'byHand'] as const) {
          record(
            `${kind === 'pitr' ? 'point-in-time' : 'snapshot'} restore, ${side === 'byHand' ? 'by hand' : side}`,
            samples[side].map((ms) => ms / 1000),
            { unit: 's' },
          );
        }
        const name = kind === 'pitr' ? 'point-in-time' : 'snapshot';
        const verify = verifyMs[kind].slice(1); // the warm-up is not counted
        record(`${name} restore, pg_verifybackup by hand`, verify, { unit: 'ms' });
        ratios.push(
          ratio(`${name} restore: provider / by hand`, samples.provider, samples.byHand, '<= 1.1'),
          ratio(
            `${name} restore: provider / by hand without pg_verifybackup`,
            samples.provider,
            samples.byHand.map((ms, i) => ms - verify[i]!),
          ),
        );
      }
    } finally {
      await admin.end();
    }
    printRatios(ratios);
  } finally {
    for (const instance of await plane.listInstances()) {
      await plane.deleteInstance(instance.instanceId, { skipFinalSnapshot: true });
    }
    await rm(stateDir, { recursive: true, force: true });
  }
}

main().catch((error: Error) => {
  console.error(`bench failed: ${error.stack ?? error.message}`);
  process.exitCode = 1;
});
