/**
 * How a point-in-time restore's time grows with the WAL it replays, so a user can predict a
 * production restore from a small one: the local provider's restoreToPointInTime (real PG clusters,
 * as bench/local-restore.ts) from one base backup to points BENCH_PITR_WAL_MB megabytes of WAL
 * after it (default 100, 400, 1600), each timed from the request until the new instance takes
 * writes, and checked to hold exactly the commits up to its point.
 *
 * The WAL is written once, after the snapshot, by updating a fixed table of BENCH_PITR_ROWS rows
 * (default 20,000, about 20 MB) in small transactions until the next size is reached, where a mark
 * row is committed and the point in time taken. Each restore is deleted (with its automated
 * backup) before the next; the source's archive is kept for every round, so the disk holds at most
 * the archive (the largest size plus a segment per restore), the base backup and one restored
 * instance. A warm-up of every size, then BENCH_ROUNDS (>= 5) rounds in alternating order, each
 * restore after the source's WAL is drained and the disk synced (bench/lib/rounds.ts).
 *
 * Printed: each size's WAL replayed, median restore time, spread and replay rate; for each next
 * size its growth factor, the time ratio over the WAL ratio per round (goal: within 10% of linear,
 * 0.9 to 1.1), and the seconds per GB between the two sizes, from which a restore of any WAL
 * size can be predicted. Takes 9 to 11 minutes with the default sizes on 2 cores.
 *   BENCH_PITR_WAL_MB=50,200 npx tsx bench/pitr-growth.ts
 */
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm, statfs } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Client } from 'pg';

import type { Endpoint } from '../activities/control-plane/control-plane';
import { LocalControlPlane } from '../activities/control-plane/local';
import { ADMIN_USER } from '../activities/control-plane/local-jobs';
import { alternate, drainWal, median, printRatios, ratio, record } from './lib/rounds';

const execFileAsync = promisify(execFile);
const MB = 1024 * 1024;
const SIZES_MB = (process.env.BENCH_PITR_WAL_MB ?? '100,400,1600').split(',').map(Number);
const ROWS = Number(process.env.BENCH_PITR_ROWS ?? 20_000);
/** Rows per writing transaction: about 1 MB of WAL each. */
const CHUNK = 1000;
const SOURCE = 'bench-pitr-source';

async function connect(endpoint: Endpoint): Promise<Client> {
  const client = new Client({ ...endpoint });
  client.on('error', () => undefined); // a dropped connection fails the next query, not the benchmark
  await client.connect();
  return client;
}

async function waitFor(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 12_000; i++) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A point to restore to: when it was taken and the WAL written after the base backup up to it. */
interface Mark {
  megabytes: number;
  time: string;
  walBytes: number;
}

async function main(): Promise<void> {
  if (
    SIZES_MB.some((n) => !Number.isFinite(n) || n <= 0) ||
    SIZES_MB.some((n, i) => i > 0 && n <= SIZES_MB[i - 1]!)
  ) {
    throw new Error(
      `BENCH_PITR_WAL_MB: expected increasing megabytes like 100,400,1600, got ${SIZES_MB.join(',')}`,
    );
  }
  if (!Number.isInteger(ROWS) || ROWS < CHUNK) {
    throw new Error(`BENCH_PITR_ROWS: expected a whole number of at least ${CHUNK}, got ${ROWS}`);
  }
  const largest = SIZES_MB.at(-1)!;
  // The archive (the largest size, a segment per restore), the base backup, one restored instance.
  const neededBytes = largest * MB * 1.5 + 2048 * MB;
  const disk = await statfs(os.tmpdir());
  if (disk.bavail * disk.bsize < neededBytes) {
    throw new Error(
      `${os.tmpdir()} has ${Math.round((disk.bavail * disk.bsize) / MB)} MB free; the bench needs about ${Math.round(neededBytes / MB)} MB`,
    );
  }
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'dbops-bench-pitr-'));
  await chmod(stateDir, 0o755);
  const plane = new LocalControlPlane({ stateDir });
  let admin: Client | undefined;
  try {
    console.log(`[bench] source instance with ${ROWS} rows ...`);
    await plane.createInstance(SOURCE);
    await waitFor('the source', async () => (await plane.describeInstance(SOURCE)).status !== 'creating');
    // The superuser: checkpoints and WAL switches are not the application's to do.
    admin = await connect({ ...(await plane.describeInstance(SOURCE)).endpoint!, user: ADMIN_USER });
    await admin.query(
      `CREATE TABLE bench_wal (id int PRIMARY KEY, version int NOT NULL DEFAULT 0, body text NOT NULL)
         WITH (fillfactor = 50);
       INSERT INTO bench_wal (id, body) SELECT g, repeat(md5(g::text), 28) FROM generate_series(1, ${ROWS}) g;
       CREATE TABLE bench_marks (megabytes int PRIMARY KEY);`,
    );
    await drainWal(admin);
    await plane.createSnapshot(SOURCE, 'bench-pitr-base');
    await waitFor(
      'the snapshot',
      async () => (await plane.describeSnapshot('bench-pitr-base')).status !== 'creating',
    );
    // Counted from here: the WAL written after the snapshot, all of which a restore replays.
    const { rows: start } = await admin.query<{ lsn: string }>(
      'SELECT pg_current_wal_insert_lsn()::text AS lsn',
    );
    const base = start[0]!.lsn;
    const written = async () =>
      Number(
        (
          await admin!.query<{ n: string }>('SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1) AS n', [
            base,
          ])
        ).rows[0]!.n,
      );

    console.log(
      `[bench] writing ${largest} MB of WAL after the snapshot, marking ${SIZES_MB.join(', ')} MB ...`,
    );
    const marks: Mark[] = [];
    const writing = performance.now();
    let next = 0;
    for (const megabytes of SIZES_MB) {
      while ((await written()) < megabytes * MB) {
        await admin.query('UPDATE bench_wal SET version = version + 1 WHERE id > $1 AND id <= $2', [
          next,
          next + CHUNK,
        ]);
        next = (next + CHUNK) % ROWS;
      }
      await admin.query('INSERT INTO bench_marks VALUES ($1)', [megabytes]);
      const walBytes = await written();
      // The point lies between the mark's commit and the next one.
      await sleep(300);
      marks.push({ megabytes, time: new Date().toISOString(), walBytes });
      await sleep(300);
    }
    // Every mark in the archive before anything is timed.
    await drainWal(admin);
    console.log(`[bench] written and archived in ${((performance.now() - writing) / 1000).toFixed(0)} s`);

    let run = 0;
    /** Restores to `mark`: from the request until the instance takes writes; then checks and deletes it. */
    const restore = (mark: Mark, index: number) => async () => {
      await drainWal(admin!);
      await execFileAsync('sync');
      const id = `bench-pitr-${mark.megabytes}-${++run}`;
      const started = performance.now();
      await plane.restoreToPointInTime(SOURCE, id, { time: mark.time });
      await waitFor(id, async () => (await plane.describeInstance(id)).status !== 'creating');
      const seconds = (performance.now() - started) / 1000;
      const description = await plane.describeInstance(id);
      if (description.status !== 'available') throw new Error(`${id}: ${description.providerStatus}`);
      const restored = await connect({ ...description.endpoint!, user: ADMIN_USER });
      try {
        const { rows } = await restored.query<{ megabytes: number }>(
          'SELECT megabytes FROM bench_marks ORDER BY megabytes',
        );
        const want = SIZES_MB.slice(0, index + 1);
        if (rows.map((row) => row.megabytes).join(',') !== want.join(',')) {
          throw new Error(
            `${id} holds the marks ${rows.map((row) => row.megabytes).join(',')}, not ${want.join(',')}`,
          );
        }
        // A write, as an application's first one after the restore.
        await restored.query('UPDATE bench_wal SET version = -1 WHERE id = 1');
      } finally {
        await restored.end();
      }
      // The automated backup a restore takes once available is not part of the restore time.
      await waitFor(`${id} backups`, async () =>
        (await plane.listSnapshots(id)).every((s) => s.status !== 'creating'),
      );
      await plane.deleteInstance(id, { skipFinalSnapshot: true, deleteAutomatedBackups: true });
      return seconds;
    };
    const label = (mark: Mark) => `${mark.megabytes} MB`;
    const samples = await alternate(
      Object.fromEntries(marks.map((mark, i) => [label(mark), restore(mark, i)])),
      (round, figures) =>
        console.log(
          `[bench] round ${round}: ${marks.map((mark) => `${label(mark)} ${figures[label(mark)]!.toFixed(1)} s`).join(', ')}`,
        ),
    );

    const { stdout: backupSize } = await execFileAsync('du', ['-sm', path.join(stateDir, 'snapshots')]);
    console.log('');
    console.log(
      `point-in-time restore from one base backup (snapshots ${backupSize.split('\t')[0]} MB), until it takes writes`,
    );
    console.log(
      `${'WAL replayed'.padStart(12)}  ${'median s'.padStart(8)}  ${'min'.padStart(6)}  ${'max'.padStart(6)}  MB/s`,
    );
    for (const mark of marks) {
      const seconds = samples[label(mark)]!;
      const mb = mark.walBytes / MB;
      console.log(
        `${`${mb.toFixed(0)} MB`.padStart(12)}  ${median(seconds).toFixed(1).padStart(8)}  ${Math.min(
          ...seconds,
        )
          .toFixed(1)
          .padStart(6)}  ${Math.max(...seconds)
          .toFixed(1)
          .padStart(6)}  ${(mb / median(seconds)).toFixed(0)}`,
      );
      record(`restore time, ${mb.toFixed(0)} MB of WAL`, seconds, { unit: 's' });
    }
    console.log('');
    const steps = marks.slice(1).map((mark, i) => {
      const before = marks[i]!;
      const after = samples[label(mark)]!;
      const earlier = samples[label(before)]!;
      const gigabytes = (mark.walBytes - before.walBytes) / (1024 * MB);
      return {
        name: `${label(before)} -> ${label(mark)}`,
        walRatio: mark.walBytes / before.walBytes,
        after,
        earlier,
        // What each further GB of WAL costs: the restore time without its fixed part.
        perGigabyte: after.map((seconds, round) => (seconds - earlier[round]!) / gigabytes),
        mark,
      };
    });
    for (const step of steps) {
      console.log(
        `${step.name}: ${median(step.perGigabyte).toFixed(1)} s per further GB of WAL (${Math.min(...step.perGigabyte).toFixed(1)} to ${Math.max(...step.perGigabyte).toFixed(1)})`,
      );
      record(`seconds per further GB of WAL, ${step.name}`, step.perGigabyte, { unit: 's/GB' });
    }
    console.log('');
    printRatios([
      ...steps.map((step) =>
        ratio(
          `growth ${step.name} (time ratio / WAL ratio x${step.walRatio.toFixed(2)})`,
          step.after.map((seconds) => seconds / step.walRatio),
          step.earlier,
          '0.9 to 1.1 (linear)',
        ),
      ),
      // Whether replay itself is linear: each step's seconds per further GB against the step before.
      ...steps
        .slice(1)
        .map((step, i) =>
          ratio(
            `seconds per further GB, ${step.name} / ${steps[i]!.name}`,
            step.perGigabyte,
            steps[i]!.perGigabyte,
            '0.9 to 1.1 (linear)',
          ),
        ),
    ]);
    const last = steps.at(-1);
    if (last !== undefined) {
      const perGigabyte = median(last.perGigabyte);
      const fixed = median(last.after) - perGigabyte * (last.mark.walBytes / (1024 * MB));
      console.log('');
      console.log(
        `prediction from the largest step: restore ≈ ${fixed.toFixed(1)} s + ${perGigabyte.toFixed(1)} s per GB of WAL replayed`,
      );
    }
  } finally {
    await admin?.end().catch(() => undefined);
    for (const instance of await plane.listInstances().catch(() => [])) {
      await plane
        .deleteInstance(instance.instanceId, { skipFinalSnapshot: true, deleteAutomatedBackups: true })
        .catch(() => undefined);
    }
    await rm(stateDir, { recursive: true, force: true });
  }
}

main().catch((error: Error) => {
  console.error(`bench failed: ${error.stack ?? error.message}`);
  process.exitCode = 1;
});
