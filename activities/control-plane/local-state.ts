/**
 * The local provider's state directory: where each instance, snapshot and export lives, and the
 * JSON records that describe them. Records are written atomically (temp file + rename) so a crash
 * never leaves a half-written record behind.
 *
 *   <stateDir>/instances/<id>/instance.json   record        data/ cluster   archive/ WAL archive
 *   <stateDir>/snapshots/<id>/snapshot.json   record        backup/ verified pg_basebackup
 *                                                           read-copy/ started copy read for fingerprints
 *   <stateDir>/exports/<id>/export.json       record        work/ temporary cluster while dumping
 *   <stateDir>/buckets/<bucket>/<prefix>/<export id>/     the exported dumps and manifest.json
 *   <stateDir>/<kind>/<id>/job.json           pid of the background job working on it
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { makePostgresDir } from '../postgres/cluster';
import type { ExportStatus, RestoreTarget } from './control-plane';

/** What the record says; `stopped` is not stored: it is read from the cluster itself. */
export type InstanceRecordStatus = 'creating' | 'available' | 'deleting' | 'failed';

/** How the instance came to be: its background job follows it. */
export type InstanceOrigin =
  | { kind: 'new' }
  | { kind: 'snapshot'; snapshotId: string }
  | { kind: 'point-in-time'; sourceInstanceId: string; baseSnapshotId: string; target: RestoreTarget };

export interface InstanceRecord {
  instanceId: string;
  /** Unique per creation: snapshots of an earlier instance with the same id are not its backups. */
  incarnation: string;
  status: InstanceRecordStatus;
  port: number;
  engineVersion: string;
  createdAt: string;
  tags: Record<string, string>;
  origin: InstanceOrigin;
  /** When the background job is deleting the instance after a final snapshot. */
  finalSnapshotId?: string;
  failureCause?: string;
}

export interface SnapshotRecord {
  snapshotId: string;
  instanceId: string;
  incarnation: string;
  type: 'manual' | 'automated';
  status: 'creating' | 'available' | 'failed';
  /** When the backup ended: its data is consistent as of this time. */
  createdAt: string | undefined;
  requestedAt: string;
  percentProgress: number;
  engineVersion: string;
  sizeBytes?: number;
  /** End of the backup in the WAL (pg_basebackup's end LSN, from its manifest). */
  endLsn?: string;
  tableRowCounts?: Record<string, number>;
  /** Content hash of every table (activities/postgres/fingerprints.ts), keyed like tableRowCounts. */
  tableContentHashes?: Record<string, string>;
  /** What each relation file of the backup holds (`base/16384/16390`: `table mcp_db.public.t`). */
  relationFiles?: Record<string, string>;
  tags: Record<string, string>;
  failureCause?: string;
}

export interface ExportRecord {
  exportId: string;
  snapshotId: string;
  status: ExportStatus;
  bucket: string;
  prefix: string;
  requestedAt: string;
  percentProgress: number;
  failureCause?: string;
}

export interface JobRecord {
  pid: number;
  startedAt: string;
}

export type ResourceKind = 'instances' | 'snapshots' | 'exports';

const recordFile: Record<ResourceKind, string> = {
  instances: 'instance.json',
  snapshots: 'snapshot.json',
  exports: 'export.json',
};

export class StateLayout {
  constructor(readonly stateDir: string) {}

  /**
   * Creates `<stateDir>/<parts>` for the postgres user; the directories above it stay readable by
   * everyone so the postgres user can reach it.
   */
  async ensureDir(...parts: string[]): Promise<string> {
    const dir = path.join(this.stateDir, ...parts);
    await mkdir(path.dirname(dir), { recursive: true, mode: 0o755 });
    await makePostgresDir(dir);
    return dir;
  }

  dir(kind: ResourceKind, id: string): string {
    return path.join(this.stateDir, kind, id);
  }
  record(kind: ResourceKind, id: string): string {
    return path.join(this.dir(kind, id), recordFile[kind]);
  }
  job(kind: ResourceKind, id: string): string {
    return path.join(this.dir(kind, id), 'job.json');
  }
  jobLog(kind: ResourceKind, id: string): string {
    return path.join(this.dir(kind, id), 'job.log');
  }
  dataDir(instanceId: string): string {
    return path.join(this.dir('instances', instanceId), 'data');
  }
  archiveDir(instanceId: string): string {
    return path.join(this.dir('instances', instanceId), 'archive');
  }
  serverLog(instanceId: string): string {
    return path.join(this.dir('instances', instanceId), 'server.log');
  }
  backupDir(snapshotId: string): string {
    return path.join(this.dir('snapshots', snapshotId), 'backup');
  }
  /** Where pg_basebackup writes; renamed to backupDir only once verified. */
  partialBackupDir(snapshotId: string): string {
    return path.join(this.dir('snapshots', snapshotId), 'backup.partial');
  }
  /** A started copy of a new backup, read for the snapshot's fingerprints, then removed. */
  snapshotCopyDir(snapshotId: string): string {
    return path.join(this.dir('snapshots', snapshotId), 'read-copy');
  }
  exportWorkDir(exportId: string): string {
    return path.join(this.dir('exports', exportId), 'work');
  }
  exportOutputDir(record: Pick<ExportRecord, 'bucket' | 'prefix' | 'exportId'>): string {
    return path.join(this.stateDir, 'buckets', record.bucket, record.prefix, record.exportId);
  }
}

/** Writes JSON so that readers see the old or the new content, never a part of it. */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temp, `${JSON.stringify(value, null, 2)}\n`);
  await rename(temp, file);
}

/** The parsed JSON file, or undefined when it does not exist. */
export async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Reads a record, applies `change` and writes it back atomically; returns the new record. When
 * `change` returns the record it was given, nothing is written (a later write is not undone).
 */
export async function updateRecord<T>(file: string, change: (record: T) => T): Promise<T> {
  const updated = await updateRecordIfPresent(file, change);
  if (updated === undefined) throw new Error(`${file} disappeared`);
  return updated;
}

/**
 * As updateRecord, for readers that settle a record another process may be removing at the same
 * time (an instance deleted while it is listed): undefined when the record is gone, before the
 * read or before the write lands.
 */
export async function updateRecordIfPresent<T>(
  file: string,
  change: (record: T) => T,
): Promise<T | undefined> {
  const current = await readJson<T>(file);
  if (current === undefined) return undefined;
  const next = change(current);
  if (next === current) return next;
  try {
    await writeJsonAtomic(file, next);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return next;
}
