/**
 * The local provider's background jobs: the slow part of create, restore, snapshot, export and
 * delete, run in a detached process (this file bundled: `node local-jobs-<hash>.js <stateDir> <job>
 * <id>`, see local-job-script.ts) so they go on when the caller's process ends, as RDS operations
 * do. A job records its progress in the state directory; if it dies, the provider's next describe
 * settles what it left (see local.ts).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

import type { Client } from 'pg';

import type { DatabaseConfig } from '../config-types';
import { freePort } from '../ports';
import {
  chownToPostgres,
  initCluster,
  isClusterRunning,
  makePostgresDir,
  runPgBinary,
  startCluster,
  stopCluster,
  writeClusterSettings,
} from '../postgres/cluster';
import { withClient } from '../postgres/connect';
import {
  beginFingerprints,
  fingerprintTable,
  tablePages,
  userTables,
  type FingerprintPace,
} from '../postgres/fingerprints';
import { readBusySessions } from '../postgres/throttle/busy-sessions';
import { setUpWorkerRole } from '../postgres/worker-role';
import { isTemporaryCopy, OWNER_TAGS } from '../../workflows/lib/owner-tags';
import {
  StateLayout,
  readJson,
  updateRecord,
  writeJsonAtomic,
  type ExportRecord,
  type InstanceRecord,
  type SnapshotRecord,
} from './local-state';
import { syncAsWritten } from './local-sync';

const execFileAsync = promisify(execFile);

/**
 * The database every local instance serves (the application's), and the superuser the provider
 * itself works as (backups, exports, archiving); endpoints connect as the worker's role instead.
 */
export const APP_DATABASE = 'mcp_db';
export const ADMIN_USER = 'postgres';

/** Environment variable limiting pg_basebackup's transfer rate (e.g. `32k`, `10M`): less I/O impact. */
export const BACKUP_MAX_RATE_ENV = 'DBOPS_LOCAL_BACKUP_MAX_RATE';
/**
 * A pre-migration snapshot is taken of an instance serving its application, just before a
 * deploy: unless BACKUP_MAX_RATE_ENV says otherwise, it reads at most this fast, so the copy
 * does not take the disk and CPU the application's queries need (100 MB/s: a 1 GB instance in ten
 * seconds; small instances, e.g. in tests, hardly notice).
 */
export const PRE_MIGRATION_MAX_RATE = '100M';

/**
 * The settings of a copy of a backup started only to be read (fingerprints, an export) and then
 * removed: no archiving, and nothing of it needs to reach the disk (with fsync on, its start alone
 * would flush every file just copied, stalling the commits of the instance that shares the disk).
 */
const SCRATCH_COPY_SETTINGS = { archive_mode: 'off', fsync: 'off', full_page_writes: 'off' };

/** A snapshot's fingerprints are read this many pages (8 kB) at a time: 4 MB, about 0.1 s of hashing. */
const FINGERPRINT_PIECE_PAGES = 512;
/** While the instance is busy, the pause after each piece, in multiples of the piece's time. */
const FINGERPRINT_PAUSE_FACTOR = 2;

/**
 * Environment variable choosing the base backup's start checkpoint: `fast` (default) or `spread`.
 * `spread` writes the dirty buffers at the pace of checkpoint_completion_target (about ten
 * buffers a second at least), gentler on a busy instance, but a snapshot then waits up to
 * 0.9 × checkpoint_timeout (4.5 minutes by default) before it starts copying.
 */
export const BACKUP_CHECKPOINT_ENV = 'DBOPS_LOCAL_BACKUP_CHECKPOINT';

export type JobName = 'create-instance' | 'restore-instance' | 'delete-instance' | 'snapshot' | 'export';

/** Quotes a string for a single-quoted postgresql.conf value. */
function confString(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** Quotes a path for /bin/sh. */
function shellWord(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * WAL archiving into the instance's own archive. Copy to a temporary name, then rename: a crash
 * mid-copy never leaves a truncated segment under its real name, and an existing segment is never
 * overwritten.
 */
export function instanceSettings(layout: StateLayout, instanceId: string): Record<string, string> {
  const archive = layout.archiveDir(instanceId);
  const target = shellWord(path.join(archive, '%f'));
  const temp = shellWord(path.join(archive, '%f.tmp'));
  return {
    wal_level: 'replica',
    archive_mode: 'on',
    archive_command: confString(`test ! -f ${target} && cp %p ${temp} && mv ${temp} ${target}`),
    // Like RDS's five-minute upload of transaction logs: a quiet instance still archives.
    archive_timeout: '300',
  };
}

/** Settings for replaying an instance's archive up to a target, then promoting. */
function recoverySettings(archiveDir: string, targetTime: string | undefined): Record<string, string> {
  const settings: Record<string, string> = {
    restore_command: confString(`cp ${shellWord(path.join(archiveDir, '%f'))} %p`),
  };
  if (targetTime !== undefined) {
    // Postgres reads '2026-01-31 12:00:00.000+00', not the ISO 'T'/'Z' spelling.
    settings.recovery_target_time = confString(targetTime.replace('T', ' ').replace('Z', '+00'));
    settings.recovery_target_action = "'promote'";
  }
  return settings;
}

export function adminEndpoint(port: number, database = 'postgres') {
  return { host: '127.0.0.1', port, database, user: ADMIN_USER };
}

/** The databases of a cluster that hold data: every one that accepts connections and is not a template. */
async function listDatabases(port: number): Promise<string[]> {
  return withClient(adminEndpoint(port), async (client) => {
    const { rows } = await client.query<{ datname: string }>(
      'SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname',
    );
    return rows.map((row) => row.datname);
  });
}

/** Exact row count of every user table of every database that accepts connections, keyed `db.schema.table`. */
export async function countTableRows(port: number): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const database of await listDatabases(port)) {
    await withClient(adminEndpoint(port, database), async (client) => {
      // One snapshot for all the tables of a database.
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const { rows: tables } = await client.query<{ schema: string; name: string }>(
        `SELECT n.nspname AS schema, c.relname AS name
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
            AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
          ORDER BY 1, 2`,
      );
      for (const table of tables) {
        const qualified = `${client.escapeIdentifier(table.schema)}.${client.escapeIdentifier(table.name)}`;
        const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${qualified}`);
        counts[`${database}.${table.schema}.${table.name}`] = Number(rows[0]?.n);
      }
      await client.query('COMMIT');
    });
  }
  return counts;
}

async function directorySize(dir: string): Promise<number> {
  const { stdout } = await execFileAsync('du', ['-sb', dir]);
  return Number(stdout.split('\t')[0]);
}

/** Copies a verified backup (or any cluster directory) keeping owners and modes. */
async function copyCluster(from: string, to: string): Promise<void> {
  await execFileAsync('cp', ['-a', from, to], { maxBuffer: 1024 * 1024 });
}

/** The end of the backup in the WAL, from pg_basebackup's manifest. */
async function backupEndLsn(backupDir: string): Promise<string | undefined> {
  const manifest = JSON.parse(await readFile(path.join(backupDir, 'backup_manifest'), 'utf8')) as {
    'WAL-Ranges'?: { 'End-LSN': string }[];
  };
  return manifest['WAL-Ranges']?.at(-1)?.['End-LSN'];
}

async function tailOf(file: string, lines = 8): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-lines).join('\n');
}

/** What a snapshot records of its own data, read from the backup itself. */
interface BackupFingerprints {
  tableRowCounts: Record<string, number>;
  tableContentHashes: Record<string, string>;
  relationFiles: Record<string, string>;
}

/** What each relation file of a database is (`base/<db oid>/<file>`: `table mcp_db.public.t`, ...). */
async function relationFiles(client: Client, database: string): Promise<Record<string, string>> {
  const { rows } = await client.query<{ file: string | null; kind: string; schema: string; name: string }>(
    `WITH owned AS (
       SELECT c.oid, c.relkind, c.reltoastrelid, n.nspname, c.relname
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
          AND c.relpersistence <> 't')
     SELECT pg_relation_filepath(oid) AS file, CASE relkind WHEN 'i' THEN 'index' ELSE 'table' END AS kind,
            nspname AS schema, relname AS name FROM owned WHERE relkind IN ('r', 'm', 'i')
     UNION ALL
     SELECT pg_relation_filepath(reltoastrelid), 'TOAST of table', nspname, relname FROM owned WHERE reltoastrelid <> 0
     UNION ALL
     SELECT pg_relation_filepath(x.indexrelid), 'TOAST index of table', nspname, relname
       FROM owned JOIN pg_index x ON x.indrelid = owned.reltoastrelid
     UNION ALL
     SELECT 'base/' || oid, 'database', '', '' FROM pg_database WHERE datname = current_database()`,
  );
  const files: Record<string, string> = {};
  for (const row of rows) {
    if (row.file === null) continue;
    files[row.file] =
      row.kind === 'database' ? `database ${database}` : `${row.kind} ${database}.${row.schema}.${row.name}`;
  }
  return files;
}

/**
 * Row counts and content hashes of every user table, and what each relation file is, read from
 * the backup itself: a copy of it is started as a snapshot restore would start it (it replays the
 * backup's own WAL to the point the backup is consistent at), with archiving off and read-only
 * sessions, read and removed. The source cannot give these: it has moved on since the backup's
 * consistent point, so counting it afterwards would record another moment than the snapshot holds.
 * Every table's pages are counted first, so `progress` hears the share of them read after each piece.
 */
async function fingerprintBackup(
  backupDir: string,
  workDir: string,
  pace: FingerprintPace,
  progress: (fraction: number) => Promise<void>,
): Promise<BackupFingerprints> {
  const dataDir = path.join(workDir, 'data');
  const result: BackupFingerprints = { tableRowCounts: {}, tableContentHashes: {}, relationFiles: {} };
  await rm(workDir, { recursive: true, force: true });
  await makePostgresDir(workDir);
  try {
    await copyCluster(backupDir, dataDir);
    const port = await freePort();
    await writeClusterSettings(dataDir, {
      port,
      extraConf: { ...SCRATCH_COPY_SETTINGS, default_transaction_read_only: 'on' },
    });
    await startCluster(dataDir, path.join(workDir, 'server.log'));
    const databases = await listDatabases(port);
    let totalPages = 0;
    for (const database of databases) {
      await withClient(adminEndpoint(port, database), async (client) => {
        for (const table of await userTables(client)) totalPages += await tablePages(client, table);
      });
    }
    let readPages = 0;
    const counted: FingerprintPace = {
      blocks: pace.blocks,
      async pauseAfter(pieceMs, pages) {
        readPages += pages;
        await progress(totalPages === 0 ? 1 : readPages / totalPages);
        return pace.pauseAfter(pieceMs, pages);
      },
    };
    for (const database of databases) {
      await withClient(adminEndpoint(port, database), async (client) => {
        await beginFingerprints(client);
        try {
          for (const table of await userTables(client)) {
            const key = `${database}.${table.schema}.${table.name}`;
            const { rows, hash } = await fingerprintTable(client, table, counted);
            result.tableRowCounts[key] = rows;
            result.tableContentHashes[key] = hash;
          }
          Object.assign(result.relationFiles, await relationFiles(client, database));
        } finally {
          await client.query('ROLLBACK');
        }
      });
    }
  } finally {
    await stopCluster(dataDir, 'immediate').catch(() => undefined);
    await rm(workDir, { recursive: true, force: true });
  }
  return result;
}

/**
 * Fingerprints read from a snapshot's copy while its instance serves its application: in pieces,
 * each followed, while the instance's database has busy sessions, by a pause twice as long as the
 * piece took (as a backfill does), so the hashing takes a third of the machine the application
 * runs on; on a quiet instance there is no pause. The busy sessions are read at most once a
 * second, each time on a connection of its own; a count that cannot be read counts as busy.
 */
export function pacedWhileBusy(source: DatabaseConfig): FingerprintPace {
  let known: { busy: boolean; at: number } | undefined;
  return {
    blocks: FINGERPRINT_PIECE_PAGES,
    async pauseAfter(pieceMs) {
      if (known === undefined || Date.now() - known.at >= 1000) {
        const busy = await withClient(source, readBusySessions).then(
          (sessions) => sessions > 0,
          () => true,
        );
        known = { busy, at: Date.now() };
      }
      return known.busy ? FINGERPRINT_PAUSE_FACTOR * pieceMs : 0;
    },
  };
}

/**
 * pg_verifybackup of a copy of a snapshot's backup, before it is started: every file against the
 * backup manifest's size and checksum, and the WAL the backup needs. A damaged backup fails the
 * restore naming what is damaged: the files (with the table or index each one holds) and the WAL.
 */
async function verifyBackupCopy(dataDir: string, snapshot: SnapshotRecord): Promise<void> {
  const args = [dataDir];
  try {
    await runPgBinary('pg_verifybackup', args, { timeoutMs: 0 });
  } catch (error) {
    const message = (error as Error).message;
    const prefix = `pg_verifybackup ${args.join(' ')} failed: `;
    const lines = (message.startsWith(prefix) ? message.slice(prefix.length) : message)
      .split('\n')
      .map((line) => line.replace(/^pg_(verifybackup|waldump): error: /, '').trim())
      .filter((line) => line !== '')
      .map((line) => nameRelationFiles(line, snapshot.relationFiles ?? {}));
    const shown = lines.slice(0, 5).join('; ');
    const more = lines.length > 5 ? ` (and ${lines.length - 5} more)` : '';
    throw new Error(`snapshot ${snapshot.snapshotId} is damaged: pg_verifybackup found ${shown}${more}`);
  }
}

/** `... "base/16384/16390" ...` with what the file holds: `... "base/16384/16390" (table mcp_db.public.t) ...`. */
function nameRelationFiles(line: string, files: Record<string, string>): string {
  return line.replace(/"(base\/\d+\/\d+)((?:_\w+)?(?:\.\d+)?)"/g, (quoted, file: string) => {
    const what = files[file] ?? files[file.slice(0, file.lastIndexOf('/'))];
    return what === undefined ? quoted : `${quoted} (${what})`;
  });
}

/**
 * Takes a base backup of a running instance into the snapshot's directory, verifies it with
 * pg_verifybackup, records its fingerprints (fingerprintBackup) and only then marks it available.
 * The snapshot record exists (status creating).
 */
export async function runSnapshot(layout: StateLayout, snapshotId: string): Promise<void> {
  const file = layout.record('snapshots', snapshotId);
  const snapshot = await readJson<SnapshotRecord>(file);
  if (snapshot === undefined) throw new Error(`snapshot ${snapshotId} has no record`);
  const instance = await readJson<InstanceRecord>(layout.record('instances', snapshot.instanceId));
  if (instance === undefined) throw new Error(`instance ${snapshot.instanceId} no longer exists`);
  const partial = layout.partialBackupDir(snapshotId);
  try {
    await rm(partial, { recursive: true, force: true });
    const preMigration = snapshot.tags[OWNER_TAGS.purpose] === 'pre-migration';
    const maxRate = process.env[BACKUP_MAX_RATE_ENV] || (preMigration ? PRE_MIGRATION_MAX_RATE : '');
    const checkpoint = process.env[BACKUP_CHECKPOINT_ENV] || 'fast';
    if (checkpoint !== 'fast' && checkpoint !== 'spread') {
      throw new Error(`${BACKUP_CHECKPOINT_ENV} is ${JSON.stringify(checkpoint)}; expected fast or spread`);
    }
    const basebackup = runPgBinary(
      'pg_basebackup',
      [
        ...['--host', '127.0.0.1', '--port', String(instance.port), '--username', ADMIN_USER],
        ...['--pgdata', partial, '--format', 'plain', '--wal-method', 'stream', '--checkpoint', checkpoint],
        ...(maxRate ? ['--max-rate', maxRate] : []),
        '--no-sync', // synced as it is written instead
      ],
      { timeoutMs: 0 },
    );
    await syncAsWritten(partial, basebackup);
    const createdAt = new Date().toISOString();
    await updateRecord<SnapshotRecord>(file, (r) => ({ ...r, percentProgress: 60 }));
    await runPgBinary('pg_verifybackup', [partial], { timeoutMs: 0 });
    // Reading the fingerprints takes the progress from 70% to 95%, a percent at a time.
    let percent = 70;
    await updateRecord<SnapshotRecord>(file, (r) => ({ ...r, percentProgress: percent }));
    const { tableRowCounts, tableContentHashes, relationFiles } = await fingerprintBackup(
      partial,
      layout.snapshotCopyDir(snapshotId),
      pacedWhileBusy(adminEndpoint(instance.port, APP_DATABASE)),
      async (fraction) => {
        const now = 70 + Math.floor(25 * fraction);
        if (now === percent) return;
        percent = now;
        await updateRecord<SnapshotRecord>(file, (r) => ({ ...r, percentProgress: percent }));
      },
    );
    const sizeBytes = await directorySize(partial);
    const endLsn = await backupEndLsn(partial);
    await rename(partial, layout.backupDir(snapshotId));
    await updateRecord<SnapshotRecord>(file, (r) => ({
      ...r,
      status: 'available',
      createdAt,
      percentProgress: 100,
      sizeBytes,
      endLsn,
      tableRowCounts,
      tableContentHashes,
      relationFiles,
    }));
  } catch (error) {
    await rm(partial, { recursive: true, force: true });
    await updateRecord<SnapshotRecord>(file, (r) => ({
      ...r,
      status: 'failed',
      failureCause: (error as Error).message,
    }));
    throw error;
  }
}

/** RDS's automated snapshot name: `rds:<instance>-YYYY-MM-DD-HH-MM`, made unique if needed. */
export function automatedSnapshotId(instanceId: string, at: Date, attempt: number): string {
  const stamp = at.toISOString().slice(0, 16).replace(/[T:]/g, '-');
  return `rds:${instanceId}-${stamp}${attempt > 0 ? `-${attempt + 1}` : ''}`;
}

/** Creates the record of a new snapshot (its directory must not exist: that is the lock). */
export async function createSnapshotRecord(
  layout: StateLayout,
  record: Omit<SnapshotRecord, 'status' | 'createdAt' | 'requestedAt' | 'percentProgress'>,
): Promise<SnapshotRecord> {
  await layout.ensureDir('snapshots');
  const dir = layout.dir('snapshots', record.snapshotId);
  await mkdir(dir, { mode: 0o700 });
  await chownToPostgres(dir);
  const full: SnapshotRecord = {
    ...record,
    status: 'creating',
    createdAt: undefined,
    requestedAt: new Date().toISOString(),
    percentProgress: 0,
  };
  await writeJsonAtomic(layout.record('snapshots', record.snapshotId), full);
  return full;
}

/** The automated backup taken when an instance is created or restored, so PITR works from then on. */
async function takeAutomatedSnapshot(layout: StateLayout, instance: InstanceRecord): Promise<void> {
  const now = new Date();
  for (let attempt = 0; ; attempt++) {
    const snapshotId = automatedSnapshotId(instance.instanceId, now, attempt);
    try {
      await createSnapshotRecord(layout, {
        snapshotId,
        instanceId: instance.instanceId,
        incarnation: instance.incarnation,
        type: 'automated',
        engineVersion: instance.engineVersion,
        tags: {},
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw error;
    }
    await writeJsonAtomic(layout.job('snapshots', snapshotId), {
      pid: process.pid,
      startedAt: now.toISOString(),
    });
    await runSnapshot(layout, snapshotId);
    return;
  }
}

async function createInstance(layout: StateLayout, instanceId: string): Promise<void> {
  const file = layout.record('instances', instanceId);
  const instance = (await readJson<InstanceRecord>(file))!;
  const dataDir = layout.dataDir(instanceId);
  await makePostgresDir(layout.archiveDir(instanceId));
  await initCluster(dataDir, { port: instance.port, extraConf: instanceSettings(layout, instanceId) });
  await startCluster(dataDir, layout.serverLog(instanceId));
  await withClient(adminEndpoint(instance.port), (client) => client.query(`CREATE DATABASE ${APP_DATABASE}`));
  // Before the first snapshot, so every copy restored from one has the worker's role too.
  await withClient(adminEndpoint(instance.port, APP_DATABASE), setUpWorkerRole);
  await takeAutomatedSnapshot(layout, instance);
  await updateRecord<InstanceRecord>(file, (r) => ({ ...r, status: 'available' }));
}

/** Waits until a restored cluster has finished recovery (promoted) or has died. */
async function waitForPromotion(layout: StateLayout, instanceId: string, port: number): Promise<void> {
  for (;;) {
    const inRecovery = await withClient(adminEndpoint(port), async (client) => {
      const { rows } = await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
      return rows[0]?.r;
    }).catch(() => undefined);
    if (inRecovery === false) return;
    // Only when it does not answer: is it still there at all?
    if (inRecovery === undefined && !(await isClusterRunning(layout.dataDir(instanceId)))) {
      throw new Error(`recovery stopped: ${await tailOf(layout.serverLog(instanceId))}`);
    }
    await sleep(50);
  }
}

/**
 * Restores a snapshot (or the base backup of a point-in-time restore) as a new cluster with its
 * own port and archive. A snapshot restore starts the self-contained backup as it is; a
 * point-in-time restore replays the source's archive up to the target, then promotes.
 */
async function restoreInstance(layout: StateLayout, instanceId: string): Promise<void> {
  const file = layout.record('instances', instanceId);
  const instance = (await readJson<InstanceRecord>(file))!;
  const { origin } = instance;
  if (origin.kind === 'new') throw new Error(`instance ${instanceId} is not a restore`);
  const dataDir = layout.dataDir(instanceId);
  const log = layout.serverLog(instanceId);
  const snapshotId = origin.kind === 'snapshot' ? origin.snapshotId : origin.baseSnapshotId;
  const snapshot = await readJson<SnapshotRecord>(layout.record('snapshots', snapshotId));
  if (snapshot === undefined) throw new Error(`snapshot ${snapshotId} no longer exists`);
  await copyCluster(layout.backupDir(snapshotId), dataDir);
  await verifyBackupCopy(dataDir, snapshot);
  await makePostgresDir(layout.archiveDir(instanceId));
  const own = { port: instance.port, extraConf: instanceSettings(layout, instanceId) };

  if (origin.kind === 'snapshot') {
    await writeClusterSettings(dataDir, own);
    await startCluster(dataDir, log);
  } else {
    const sourceArchive = layout.archiveDir(origin.sourceInstanceId);
    const targetTime = origin.target === 'latest' ? undefined : origin.target.time;
    await writeClusterSettings(dataDir, {
      ...own,
      extraConf: { ...own.extraConf, ...recoverySettings(sourceArchive, targetTime) },
    });
    const signal = path.join(dataDir, 'recovery.signal');
    await writeFile(signal, '');
    await chownToPostgres(signal);
    try {
      await startCluster(dataDir, log, 600);
      await waitForPromotion(layout, instanceId, instance.port);
    } catch (error) {
      // Every archived commit is older than the target: the data at the target is the end of the
      // archive, so replay to its end (recovery resumes where it stopped).
      if (!/recovery ended before configured recovery target was reached/.test(await tailOf(log, 20))) {
        throw error;
      }
      await stopCluster(dataDir, 'immediate');
      await writeClusterSettings(dataDir, {
        ...own,
        extraConf: { ...own.extraConf, ...recoverySettings(sourceArchive, undefined) },
      });
      await startCluster(dataDir, log, 600);
      await waitForPromotion(layout, instanceId, instance.port);
    }
    // Promoted: drop the recovery settings so they can never apply again.
    await writeClusterSettings(dataDir, own);
  }
  const temporaryCopy = isTemporaryCopy(instance.tags);
  const available = await updateRecord<InstanceRecord>(file, (r) => ({ ...r, status: 'available' }));
  // A DR test's or a rehearsal's copy lives minutes and is never restored from: no automated
  // backup, as on RDS (where the copy is created with backup retention 0).
  if (!temporaryCopy) await takeAutomatedSnapshot(layout, available);
}

/** Stops an instance's cluster and removes it: renamed away first, so removal is all or nothing. */
export async function removeInstance(layout: StateLayout, instanceId: string): Promise<void> {
  const dir = layout.dir('instances', instanceId);
  await stopCluster(layout.dataDir(instanceId), 'immediate').catch(() => undefined);
  const trash = await layout.ensureDir('trash');
  const doomed = path.join(trash, `${instanceId}-${Date.now()}`);
  try {
    await rename(dir, doomed);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  await rm(doomed, { recursive: true, force: true });
}

/** Delete with a final snapshot: the snapshot first; the instance goes only once it is available. */
async function deleteInstance(layout: StateLayout, instanceId: string): Promise<void> {
  const file = layout.record('instances', instanceId);
  const instance = (await readJson<InstanceRecord>(file))!;
  try {
    await runSnapshot(layout, instance.finalSnapshotId!);
  } catch (error) {
    await updateRecord<InstanceRecord>(file, (r) => ({
      ...r,
      status: 'failed',
      failureCause: `final snapshot failed: ${(error as Error).message}`,
    }));
    throw error;
  }
  await removeInstance(layout, instanceId);
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Logical export of a snapshot: starts a temporary cluster from a copy of the backup on a free
 * port (a scratch copy: archiving and fsync off), dumps every database with pg_dump (plain SQL),
 * writes a manifest with row counts and checksums last, then removes the temporary cluster.
 */
async function exportSnapshot(layout: StateLayout, exportId: string): Promise<void> {
  const file = layout.record('exports', exportId);
  const record = (await readJson<ExportRecord>(file))!;
  const snapshot = (await readJson<SnapshotRecord>(layout.record('snapshots', record.snapshotId)))!;
  const work = layout.exportWorkDir(exportId);
  const dataDir = path.join(work, 'data');
  const output = layout.exportOutputDir(record);
  try {
    await makePostgresDir(work);
    await copyCluster(layout.backupDir(record.snapshotId), dataDir);
    const port = await freePort();
    await writeClusterSettings(dataDir, { port, extraConf: SCRATCH_COPY_SETTINGS });
    await startCluster(dataDir, path.join(work, 'server.log'));
    await updateRecord<ExportRecord>(file, (r) => ({ ...r, status: 'in-progress', percentProgress: 10 }));

    await layout.ensureDir(path.relative(layout.stateDir, output));
    const tableRowCounts = await countTableRows(port);
    const databases = await listDatabases(port);
    const files = [];
    for (const [index, database] of databases.entries()) {
      const name = `${database}.sql`;
      await runPgBinary(
        'pg_dump',
        [
          ...['--host', '127.0.0.1', '--port', String(port), '--username', ADMIN_USER],
          ...['--dbname', database, '--format', 'plain', '--file', path.join(output, name)],
        ],
        { timeoutMs: 0 },
      );
      const full = path.join(output, name);
      files.push({ name, database, bytes: (await stat(full)).size, sha256: await sha256(full) });
      const percentProgress = 10 + Math.round((80 * (index + 1)) / databases.length);
      await updateRecord<ExportRecord>(file, (r) => ({ ...r, percentProgress }));
    }
    await stopCluster(dataDir, 'immediate');
    await writeJsonAtomic(path.join(output, 'manifest.json'), {
      exportId,
      snapshotId: snapshot.snapshotId,
      sourceInstanceId: snapshot.instanceId,
      snapshotCreatedAt: snapshot.createdAt,
      engineVersion: snapshot.engineVersion,
      format: 'pg_dump plain SQL, one file per database',
      files,
      tableRowCounts,
    });
    await rm(work, { recursive: true, force: true });
    await updateRecord<ExportRecord>(file, (r) => ({ ...r, status: 'complete', percentProgress: 100 }));
  } catch (error) {
    await stopCluster(dataDir, 'immediate').catch(() => undefined);
    await rm(work, { recursive: true, force: true });
    await rm(output, { recursive: true, force: true });
    await updateRecord<ExportRecord>(file, (r) => ({
      ...r,
      status: 'failed',
      failureCause: (error as Error).message,
    }));
    throw error;
  }
}

/** Marks an instance whose job failed as failed, stopping whatever cluster it started. */
async function failInstance(layout: StateLayout, instanceId: string, error: Error): Promise<void> {
  await stopCluster(layout.dataDir(instanceId), 'immediate').catch(() => undefined);
  await updateRecord<InstanceRecord>(layout.record('instances', instanceId), (r) => ({
    ...r,
    status: 'failed',
    failureCause: error.message,
  }));
}

export async function runJob(layout: StateLayout, job: JobName, id: string): Promise<void> {
  switch (job) {
    case 'create-instance':
      return createInstance(layout, id).catch(async (error: Error) => {
        await failInstance(layout, id, error);
        throw error;
      });
    case 'restore-instance':
      return restoreInstance(layout, id).catch(async (error: Error) => {
        const record = await readJson<InstanceRecord>(layout.record('instances', id));
        // A failed automated snapshot after the restore leaves the instance available.
        if (record?.status !== 'available') await failInstance(layout, id, error);
        throw error;
      });
    case 'delete-instance':
      return deleteInstance(layout, id);
    case 'snapshot':
      return runSnapshot(layout, id);
    case 'export':
      return exportSnapshot(layout, id);
  }
}

if (require.main === module) {
  const [stateDir, job, id] = process.argv.slice(2);
  if (stateDir === undefined || job === undefined || id === undefined) {
    console.error('usage: local-jobs.ts <stateDir> <job> <id>');
    process.exit(2);
  }
  const started = Date.now();
  runJob(new StateLayout(stateDir), job as JobName, id).then(
    () => console.log(`${new Date().toISOString()} ${job} ${id}: done in ${Date.now() - started} ms`),
    (error: Error) => {
      console.error(`${new Date().toISOString()} ${job} ${id} failed: ${error.stack ?? error.message}`);
      process.exitCode = 1;
    },
  );
}
