/**
 * The `local` ControlPlane provider: instances are real PostgreSQL 15 clusters on this machine,
 * snapshots are verified pg_basebackups, point-in-time restore replays the instance's WAL archive.
 * It behaves like RDS where workflows can tell: operations return in a transitional state and run
 * in a detached background job (local-jobs.ts), identifiers follow RDS rules, faults are the typed
 * errors. A job that died is settled by the next describe: completed or marked failed.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  AlreadyExistsError,
  BusyError,
  InvalidInputError,
  InvalidStateError,
  NotFoundError,
  PointInTimeRestoreNotEnabledError,
  RestoreTimeOutOfRangeError,
  TransientError,
} from '../../workflows/lib/errors';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from '../../workflows/lib/identifiers';
import { describeOwner, ownedBy } from '../../workflows/lib/owner-tags';
import type { LocalBackupSettings } from '../config-types';
import { freePort } from '../ports';
import {
  chownToPostgres,
  isClusterRunning,
  runPgBinary,
  startCluster,
  stopCluster,
} from '../postgres/cluster';
import { withClient } from '../postgres/connect';
import { WORKER_ROLE } from '../postgres/worker-role';
import type {
  ControlPlane,
  CreateInstanceOptions,
  DeleteInstanceOptions,
  Endpoint,
  ExportDescription,
  ExportDestination,
  InstanceDescription,
  RecoverabilityDescription,
  RestoreTarget,
  SnapshotDescription,
} from './control-plane';
import { newestAvailableSnapshot } from './control-plane';
import {
  APP_DATABASE,
  adminEndpoint,
  BACKUP_CHECKPOINT_ENV,
  BACKUP_MAX_RATE_ENV,
  createSnapshotRecord,
  removeInstance,
  type JobName,
} from './local-jobs';
import { isJobScript, jobScript } from './local-job-script';
import {
  readJson,
  StateLayout,
  updateRecord,
  updateRecordIfPresent,
  writeJsonAtomic,
  type ExportRecord,
  type InstanceRecord,
  type JobRecord,
  type ResourceKind,
  type SnapshotRecord,
} from './local-state';

export interface LocalControlPlaneOptions {
  stateDir: string;
  /** pg_basebackup `--max-rate` for snapshots (e.g. `10M`), to limit their I/O impact. */
  backupMaxRate?: string;
  /** The checkpoint snapshots start with (default: the environment's, else `fast`). */
  backupCheckpoint?: LocalBackupSettings['checkpoint'];
}

/** A job without a pid file this long after the request never started (its caller died). */
const JOB_START_GRACE_MS = 60_000;

/** S3 bucket naming rules, so a name that works here works on RDS exports too. */
const BUCKET_NAME = /^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const PREFIX_SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

let engineVersion: Promise<string> | undefined;

/** The installed server's version, e.g. `15.8`. */
function installedEngineVersion(): Promise<string> {
  engineVersion ??= runPgBinary('postgres', ['--version']).then(({ stdout }) => {
    const match = /\(PostgreSQL\) (\d+(?:\.\d+)?)/.exec(stdout);
    if (!match?.[1]) throw new Error(`unexpected postgres --version output: ${stdout}`);
    return match[1];
  });
  return engineVersion;
}

/** An RDS-style identifier, lower-cased as RDS stores it; InvalidInputError naming the field. */
function identifier(field: string, value: unknown): string {
  if (!isRdsIdentifier(value)) {
    throw new InvalidInputError(`${field} ${JSON.stringify(value)} is not valid: ${RDS_IDENTIFIER_RULE}`);
  }
  return value.toLowerCase();
}

/** RDS's automated snapshot names: `rds:` and the instance id with a time stamp (up to 255 characters). */
const AUTOMATED_SNAPSHOT_ID = /^rds:[A-Za-z](?!.*--)[A-Za-z0-9-]{0,250}(?<!-)$/;

/** A snapshot to read: a manual identifier or an automated one (`rds:<instance>-<stamp>`). */
function existingSnapshotId(field: string, value: unknown): string {
  if (typeof value === 'string' && value.startsWith('rds:')) {
    if (!AUTOMATED_SNAPSHOT_ID.test(value)) {
      throw new InvalidInputError(
        `${field} ${JSON.stringify(value)} is not valid: an automated snapshot is rds:<instance id>-<time stamp>`,
      );
    }
    return value.toLowerCase();
  }
  return identifier(field, value);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the job still runs: its pid is alive and is still a job script (pids get reused). */
async function isJobRunning(job: JobRecord): Promise<boolean> {
  if (!isAlive(job.pid)) return false;
  const cmdline = await readFile(`/proc/${job.pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.split('\0').some(isJobScript);
}

/** Ends what is left of a dead job: the children it started live on in its process group. */
function killJobGroup(job: JobRecord): void {
  try {
    process.kill(-job.pid, 'SIGKILL');
  } catch {
    // The group is already gone.
  }
}

/**
 * Kills what a dead job left running on a directory: server binaries run through runuser, which
 * gives them a session of their own, so they outlive the job's process group. A server is named
 * by its command line (`postgres -D <dir>`), its children by their working directory (the data
 * directory): killed with it, a child would otherwise live on for a moment, e.g. a walsender
 * dropping a backup's replication slot inside the directory while it is being removed.
 */
async function killProcessesUsing(dir: string): Promise<void> {
  const inDir = (file: string) => file === dir || file.startsWith(`${dir}/`);
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const args = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const cwd = await readlink(`/proc/${entry}/cwd`).catch(() => '');
    if (!args.some(inDir) && !inDir(cwd)) continue;
    try {
      process.kill(Number(entry), 'SIGKILL');
    } catch {
      // It ended meanwhile.
    }
  }
}

export class LocalControlPlane implements ControlPlane {
  readonly provider = 'local' as const;
  private readonly layout: StateLayout;

  constructor(private readonly options: LocalControlPlaneOptions) {
    this.layout = new StateLayout(options.stateDir);
  }

  // ---- recoverability ----

  /**
   * From what outlives the instance's data directory: the WAL archive and the snapshots. The
   * latest restorable time is when the newest segment reached the archive, even while the
   * cluster runs: a restore of `latest` reaches further only because it first archives the
   * current segment, which a lost instance cannot do.
   */
  async describeRecoverability(instanceId: string): Promise<RecoverabilityDescription> {
    const id = identifier('instanceId', instanceId);
    const record = await this.settledInstance(id);
    if (record === undefined) throw new NotFoundError(`instance ${id} not found`);
    const snapshots = await this.snapshotRecords(id);
    const backups = snapshots.filter((s) => s.status === 'available' && s.incarnation === record.incarnation);
    return {
      instanceId: id,
      latestRestorableTime: (await this.restorableRange(record, backups, false))?.latest,
      newestAvailableSnapshot: newestAvailableSnapshot(snapshots.map(snapshotDescription)),
    };
  }

  // ---- instances ----

  async describeInstance(instanceId: string): Promise<InstanceDescription> {
    const id = identifier('instanceId', instanceId);
    const record = await this.settledInstance(id);
    if (record === undefined) throw new NotFoundError(`instance ${id} not found`);
    return this.instanceDescription(record);
  }

  async listInstances(): Promise<InstanceDescription[]> {
    const descriptions: InstanceDescription[] = [];
    for (const id of await this.ids('instances')) {
      const record = await this.settledInstance(id);
      if (record !== undefined) descriptions.push(await this.instanceDescription(record));
    }
    return descriptions;
  }

  async createInstance(
    instanceId: string,
    options: CreateInstanceOptions = {},
  ): Promise<InstanceDescription> {
    const id = identifier('instanceId', instanceId);
    const existing = await readJson<InstanceRecord>(this.layout.record('instances', id));
    if (existing !== undefined) return this.ownInstance(existing, options.tags ?? {});
    const record = await this.newInstance(id, options.tags ?? {}, { kind: 'new' });
    await this.startJob('create-instance', id, [['instances', id]]);
    return this.instanceDescription(record);
  }

  async deleteInstance(instanceId: string, options: DeleteInstanceOptions): Promise<void> {
    const id = identifier('instanceId', instanceId);
    const finalSnapshotId = options.skipFinalSnapshot
      ? undefined
      : identifier('finalSnapshotId', options.finalSnapshotId);
    const record = await this.settledInstance(id);
    if (record === undefined || record.status === 'deleting') return;

    if (finalSnapshotId !== undefined) {
      await this.requireRunning(record, 'take its final snapshot');
      await this.newSnapshot(record, finalSnapshotId, 'manual', {});
      await updateRecord<InstanceRecord>(this.layout.record('instances', id), (r) => ({
        ...r,
        status: 'deleting',
        finalSnapshotId,
      }));
      await this.startJob('delete-instance', id, [
        ['instances', id],
        ['snapshots', finalSnapshotId],
      ]);
      return;
    }
    const job = await readJson<JobRecord>(this.layout.job('instances', id));
    if (job !== undefined && (await isJobRunning(job))) {
      killJobGroup(job);
      await killProcessesUsing(this.layout.dataDir(id));
    }
    await removeInstance(this.layout, id);
    if (options.deleteAutomatedBackups) {
      for (const snapshot of await this.snapshotRecords(id)) {
        if (snapshot.type === 'automated' && snapshot.incarnation === record.incarnation) {
          await rm(this.layout.dir('snapshots', snapshot.snapshotId), { recursive: true, force: true });
        }
      }
    }
  }

  /** Local only (`npm start`): starts a stopped instance's cluster. */
  async startInstance(instanceId: string): Promise<InstanceDescription> {
    const description = await this.describeInstance(instanceId);
    if (description.status !== 'stopped') {
      throw new InvalidStateError(`instance ${description.instanceId} is ${description.status}, not stopped`);
    }
    const id = description.instanceId;
    await startCluster(this.layout.dataDir(id), this.layout.serverLog(id));
    return this.describeInstance(id);
  }

  /**
   * Local only (`npm start`): stops an instance's cluster after sending its last commits to the
   * archive, so every commit stays restorable while it is stopped.
   */
  async stopInstance(instanceId: string): Promise<void> {
    const description = await this.describeInstance(instanceId);
    if (description.status === 'stopped') return;
    const record = (await this.settledInstance(description.instanceId))!;
    await this.requireRunning(record, 'stop it');
    // Stopped even when archiving is stuck; the archiving error is reported after.
    await this.archiveCurrentWal(record).finally(() => stopCluster(this.layout.dataDir(record.instanceId)));
  }

  /**
   * Local only (`npm start`): the instance's endpoint once it is available, creating it if it is
   * missing and starting it if it is stopped.
   */
  async ensureRunning(instanceId: string, timeoutMs = 300_000): Promise<Endpoint> {
    let description = await this.describeInstance(instanceId).catch((error: Error) => {
      if (error instanceof NotFoundError) return this.createInstance(instanceId);
      throw error;
    });
    const deadline = Date.now() + timeoutMs;
    while (description.status === 'creating') {
      if (Date.now() > deadline) throw new Error(`instance ${instanceId} is still creating`);
      await sleep(250);
      description = await this.describeInstance(instanceId);
    }
    if (description.status === 'stopped') description = await this.startInstance(instanceId);
    if (description.status !== 'available' || description.endpoint === undefined) {
      throw new InvalidStateError(`instance ${description.instanceId} is ${description.providerStatus}`);
    }
    return description.endpoint;
  }

  // ---- snapshots ----

  async createSnapshot(
    instanceId: string,
    snapshotId: string,
    tags: Record<string, string> = {},
  ): Promise<SnapshotDescription> {
    const id = identifier('instanceId', instanceId);
    const snapId = identifier('snapshotId', snapshotId);
    const existing = await readJson<SnapshotRecord>(this.layout.record('snapshots', snapId));
    if (existing !== undefined) return this.ownSnapshot(existing, id, tags);
    const instance = await this.settledInstance(id);
    if (instance === undefined) throw new NotFoundError(`instance ${id} not found`);
    await this.requireRunning(instance, 'snapshot it');
    const record = await this.newSnapshot(instance, snapId, 'manual', tags);
    await this.startJob('snapshot', snapId, [['snapshots', snapId]]);
    return snapshotDescription(record);
  }

  async describeSnapshot(snapshotId: string): Promise<SnapshotDescription> {
    const id = existingSnapshotId('snapshotId', snapshotId);
    const record = await this.settledSnapshot(id);
    if (record === undefined) throw new NotFoundError(`snapshot ${id} not found`);
    return snapshotDescription(record);
  }

  async listSnapshots(instanceId: string): Promise<SnapshotDescription[]> {
    const id = identifier('instanceId', instanceId);
    return (await this.snapshotRecords(id)).map(snapshotDescription);
  }

  async deleteSnapshot(snapshotId: string): Promise<void> {
    const id = existingSnapshotId('snapshotId', snapshotId);
    const record = await this.settledSnapshot(id);
    if (record === undefined) throw new NotFoundError(`snapshot ${id} not found`);
    if (record.status === 'creating') throw new InvalidStateError(`snapshot ${id} is being created`);
    if (record.type === 'automated') {
      const instance = await readJson<InstanceRecord>(this.layout.record('instances', record.instanceId));
      if (instance?.incarnation === record.incarnation) {
        throw new InvalidStateError(
          `snapshot ${id} is an automated backup of instance ${record.instanceId}: it goes with the instance`,
        );
      }
    }
    for (const exportId of await this.ids('exports')) {
      const exported = await this.settledExport(exportId);
      if (exported?.snapshotId === id && ['starting', 'in-progress'].includes(exported.status)) {
        throw new InvalidStateError(`snapshot ${id} is being exported by ${exportId}`);
      }
    }
    await rm(this.layout.dir('snapshots', id), { recursive: true, force: true });
  }

  async snapshotUsers(snapshotId: string): Promise<string[]> {
    const id = existingSnapshotId('snapshotId', snapshotId);
    if ((await this.settledSnapshot(id)) === undefined) throw new NotFoundError(`snapshot ${id} not found`);
    const users: string[] = [];
    for (const instanceId of await this.ids('instances')) {
      const instance = await this.settledInstance(instanceId);
      if (instance?.status !== 'creating') continue;
      const { origin } = instance;
      if (origin.kind === 'snapshot' && origin.snapshotId === id) {
        users.push(`instance ${instanceId} is being restored from it`);
      } else if (origin.kind === 'point-in-time' && origin.baseSnapshotId === id) {
        users.push(`instance ${instanceId} is being restored to a point in time from it as its base`);
      }
    }
    for (const exportId of await this.ids('exports')) {
      const exported = await this.settledExport(exportId);
      if (exported?.snapshotId === id && ['starting', 'in-progress'].includes(exported.status)) {
        users.push(`export ${exportId} is reading it`);
      }
    }
    return users;
  }

  // ---- restores ----

  async restoreFromSnapshot(
    snapshotId: string,
    targetInstanceId: string,
    tags: Record<string, string> = {},
  ): Promise<InstanceDescription> {
    const snapId = existingSnapshotId('snapshotId', snapshotId);
    const targetId = identifier('targetInstanceId', targetInstanceId);
    const existing = await readJson<InstanceRecord>(this.layout.record('instances', targetId));
    if (existing !== undefined) return this.ownInstance(existing, tags);
    await this.availableSnapshot(snapId);
    const record = await this.newInstance(targetId, tags, { kind: 'snapshot', snapshotId: snapId });
    await this.startJob('restore-instance', targetId, [['instances', targetId]]);
    return this.instanceDescription(record);
  }

  async restoreToPointInTime(
    sourceInstanceId: string,
    targetInstanceId: string,
    target: RestoreTarget,
    tags: Record<string, string> = {},
  ): Promise<InstanceDescription> {
    const sourceId = identifier('sourceInstanceId', sourceInstanceId);
    const targetId = identifier('targetInstanceId', targetInstanceId);
    const targetTime = parseRestoreTarget(target);
    const existing = await readJson<InstanceRecord>(this.layout.record('instances', targetId));
    if (existing !== undefined) return this.ownInstance(existing, tags);
    const source = await this.settledInstance(sourceId);
    if (source === undefined) throw new NotFoundError(`instance ${sourceId} not found`);
    const running = await this.requireRestorable(source);
    const backups = (await this.snapshotRecords(sourceId)).filter(
      (s) => s.status === 'available' && s.incarnation === source.incarnation,
    );
    const range = await this.restorableRange(source, backups, running);
    if (range === undefined) {
      throw new PointInTimeRestoreNotEnabledError(
        `instance ${sourceId} has no available snapshot to start a point-in-time restore from`,
      );
    }
    if (targetTime !== undefined && (targetTime < range.earliest || targetTime > range.latest)) {
      throw new RestoreTimeOutOfRangeError(
        `restore time ${targetTime} is outside the restorable range of instance ${sourceId}: ` +
          `${range.earliest} to ${range.latest}`,
      );
    }
    // The newest base backup taken before the target (backups are newest first).
    const base = backups.find((s) => targetTime === undefined || s.createdAt! <= targetTime)!;
    // Send the source's newest commits to the archive, so that 'latest' includes them and a time
    // target has a later commit to stop at.
    if (running) await this.archiveCurrentWal(source);
    const record = await this.newInstance(targetId, tags, {
      kind: 'point-in-time',
      sourceInstanceId: sourceId,
      baseSnapshotId: base.snapshotId,
      target: targetTime === undefined ? 'latest' : { time: targetTime },
    });
    await this.startJob('restore-instance', targetId, [['instances', targetId]]);
    return this.instanceDescription(record);
  }

  // ---- exports ----

  async startExport(
    exportId: string,
    snapshotId: string,
    destination: ExportDestination,
  ): Promise<ExportDescription> {
    const id = identifier('exportId', exportId);
    const snapId = existingSnapshotId('snapshotId', snapshotId);
    const bucket: unknown = destination?.bucket;
    if (typeof bucket !== 'string' || !BUCKET_NAME.test(bucket)) {
      throw new InvalidInputError(
        `destination.bucket ${JSON.stringify(bucket)} is not valid: 3-63 lower-case letters, digits, dots or hyphens, starting and ending with a letter or digit`,
      );
    }
    const prefix: unknown = destination.prefix;
    const segments = typeof prefix === 'string' ? prefix.split('/').filter((s) => s !== '') : [];
    if (typeof prefix !== 'string' || !segments.every((s) => PREFIX_SEGMENT.test(s))) {
      throw new InvalidInputError(
        `destination.prefix ${JSON.stringify(prefix)} is not valid: path segments of letters, digits, dots, hyphens or underscores, not starting with a dot`,
      );
    }
    const existing = await readJson<ExportRecord>(this.layout.record('exports', id));
    if (existing !== undefined) return this.ownExport(existing, snapId, bucket, segments.join('/'));
    await this.availableSnapshot(snapId);
    await this.layout.ensureDir('exports');
    try {
      await mkdir(this.layout.dir('exports', id), { mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new AlreadyExistsError(`export ${id} already exists`);
      }
      throw error;
    }
    await chownToPostgres(this.layout.dir('exports', id));
    const record: ExportRecord = {
      exportId: id,
      snapshotId: snapId,
      status: 'starting',
      bucket,
      prefix: segments.join('/'),
      requestedAt: new Date().toISOString(),
      percentProgress: 0,
    };
    await writeJsonAtomic(this.layout.record('exports', id), record);
    await this.startJob('export', id, [['exports', id]]);
    return this.exportDescription(record);
  }

  async describeExport(exportId: string): Promise<ExportDescription> {
    const id = identifier('exportId', exportId);
    const record = await this.settledExport(id);
    if (record === undefined) throw new NotFoundError(`export ${id} not found`);
    return this.exportDescription(record);
  }

  // ---- state ----

  private async ids(kind: ResourceKind): Promise<string[]> {
    try {
      return (await readdir(path.join(this.layout.stateDir, kind))).sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  }

  // ---- a create that finds its resource already there ----
  // A retry of the run that made it (its owner tags match) carries on with the resource as it is
  // now, starting its job if the attempt that wrote the record died before starting it. Anything
  // else is AlreadyExistsError naming what is there and who made it.

  private async ownSnapshot(
    record: SnapshotRecord,
    instanceId: string,
    tags: Record<string, string>,
  ): Promise<SnapshotDescription> {
    if (record.instanceId !== instanceId || !ownedBy(record.tags, tags)) {
      throw new AlreadyExistsError(
        `snapshot ${record.snapshotId} already exists: a snapshot of instance ${record.instanceId} created by ${describeOwner(record.tags)}, not by this run`,
      );
    }
    if (record.status === 'creating') await this.resumeJob('snapshot', 'snapshots', record.snapshotId);
    return this.describeSnapshot(record.snapshotId);
  }

  private async ownInstance(
    record: InstanceRecord,
    tags: Record<string, string>,
  ): Promise<InstanceDescription> {
    if (!ownedBy(record.tags, tags)) {
      throw new AlreadyExistsError(
        `instance ${record.instanceId} already exists (${record.status}), created by ${describeOwner(record.tags)}, not by this run`,
      );
    }
    if (record.status === 'creating') {
      const job = record.origin.kind === 'new' ? 'create-instance' : 'restore-instance';
      await this.resumeJob(job, 'instances', record.instanceId);
    }
    return this.describeInstance(record.instanceId);
  }

  /** Exports carry no tags (as on RDS): ours is the same export of the same snapshot to the same place. */
  private async ownExport(
    record: ExportRecord,
    snapshotId: string,
    bucket: string,
    prefix: string,
  ): Promise<ExportDescription> {
    if (record.snapshotId !== snapshotId || record.bucket !== bucket || record.prefix !== prefix) {
      throw new AlreadyExistsError(
        `export ${record.exportId} already exists: an export of snapshot ${record.snapshotId} to bucket ${record.bucket} prefix ${JSON.stringify(record.prefix)}`,
      );
    }
    if (record.status === 'starting') await this.resumeJob('export', 'exports', record.exportId);
    return this.describeExport(record.exportId);
  }

  /** Starts the job of a resource whose record was written but whose job was never started. */
  private async resumeJob(job: JobName, kind: ResourceKind, id: string): Promise<void> {
    if ((await readJson<JobRecord>(this.layout.job(kind, id))) === undefined) {
      await this.startJob(job, id, [[kind, id]]);
    }
  }

  /** Creates the directory and record of a new instance (status creating) with a free port. */
  private async newInstance(
    instanceId: string,
    tags: Record<string, string>,
    origin: InstanceRecord['origin'],
  ): Promise<InstanceRecord> {
    const record: InstanceRecord = {
      instanceId,
      incarnation: randomUUID(),
      status: 'creating',
      port: await this.unusedPort(),
      engineVersion: await installedEngineVersion(),
      createdAt: new Date().toISOString(),
      tags,
      origin,
    };
    await this.layout.ensureDir('instances');
    try {
      await mkdir(this.layout.dir('instances', instanceId), { mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new AlreadyExistsError(`instance ${instanceId} already exists`);
      }
      throw error;
    }
    await chownToPostgres(this.layout.dir('instances', instanceId));
    await writeJsonAtomic(this.layout.record('instances', instanceId), record);
    return record;
  }

  private async newSnapshot(
    instance: InstanceRecord,
    snapshotId: string,
    type: SnapshotRecord['type'],
    tags: Record<string, string>,
  ): Promise<SnapshotRecord> {
    try {
      return await createSnapshotRecord(this.layout, {
        snapshotId,
        instanceId: instance.instanceId,
        incarnation: instance.incarnation,
        type,
        engineVersion: instance.engineVersion,
        tags,
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new AlreadyExistsError(`snapshot ${snapshotId} already exists`);
      }
      throw error;
    }
  }

  /** A free loopback port that no other local instance (running or stopped) owns. */
  private async unusedPort(): Promise<number> {
    const taken = new Set<number>();
    for (const id of await this.ids('instances')) {
      const record = await readJson<InstanceRecord>(this.layout.record('instances', id));
      if (record !== undefined) taken.add(record.port);
    }
    for (;;) {
      const port = await freePort();
      if (!taken.has(port)) return port;
    }
  }

  /**
   * Starts the detached job (plain node running the bundled job script, see local-job-script.ts)
   * and records its pid for every resource it works on.
   */
  private async startJob(job: JobName, id: string, resources: [ResourceKind, string][]): Promise<void> {
    const [kind, logId] = resources[0]!;
    const script = await jobScript(path.join(this.layout.stateDir, 'job-scripts'));
    const log = await open(this.layout.jobLog(kind, logId), 'a');
    try {
      const child = spawn(process.execPath, [script, this.layout.stateDir, job, id], {
        detached: true,
        stdio: ['ignore', log.fd, log.fd],
        env: {
          ...process.env,
          [BACKUP_MAX_RATE_ENV]: this.options.backupMaxRate ?? process.env[BACKUP_MAX_RATE_ENV],
          [BACKUP_CHECKPOINT_ENV]: this.options.backupCheckpoint ?? process.env[BACKUP_CHECKPOINT_ENV],
        },
      });
      child.unref();
      if (child.pid === undefined) throw new Error(`could not start the ${job} job`);
      const record: JobRecord = { pid: child.pid, startedAt: new Date().toISOString() };
      for (const [resourceKind, resourceId] of resources) {
        await writeJsonAtomic(this.layout.job(resourceKind, resourceId), record);
      }
    } finally {
      await log.close();
    }
  }

  /**
   * The job working on a resource in a transitional state, when it is gone: its pid is dead, or it
   * never recorded one within the grace period. Undefined while the job (may) still run.
   */
  private async deadJob(kind: ResourceKind, id: string, requestedAt: string): Promise<JobRecord | undefined> {
    const job = await readJson<JobRecord>(this.layout.job(kind, id));
    if (job === undefined) {
      const young = Date.now() - Date.parse(requestedAt) < JOB_START_GRACE_MS;
      return young ? undefined : { pid: 0, startedAt: requestedAt };
    }
    return (await isJobRunning(job)) ? undefined : job;
  }

  private async settledInstance(id: string): Promise<InstanceRecord | undefined> {
    const file = this.layout.record('instances', id);
    const record = await readJson<InstanceRecord>(file);
    if (record === undefined || (record.status !== 'creating' && record.status !== 'deleting')) return record;
    const job = await this.deadJob('instances', id, record.createdAt);
    if (job === undefined) return record;
    if (record.status === 'deleting') {
      const final = await this.settledSnapshot(record.finalSnapshotId!);
      if (final?.status === 'available') {
        if (job.pid > 0) killJobGroup(job);
        await removeInstance(this.layout, id);
        return undefined;
      }
    }
    // Decided on the record as it is now that the job has ended: it may have made the instance
    // available (or failed it itself) after the read above, and a dead job writes no more.
    let died = false;
    const settled = await updateRecordIfPresent<InstanceRecord>(file, (r) => {
      if (r.status !== record.status) return r;
      died = true;
      const what = r.status === 'creating' ? 'ready' : 'deleted';
      return {
        ...r,
        status: 'failed',
        failureCause: `the background job (pid ${job.pid}) ended before the instance was ${what}`,
      };
    });
    if (!died || settled === undefined) return settled;
    if (job.pid > 0) killJobGroup(job);
    await stopCluster(this.layout.dataDir(id), 'immediate').catch(() => undefined);
    // initdb, pg_ctl or a server that had not written its pid file yet.
    await killProcessesUsing(this.layout.dataDir(id));
    return settled;
  }

  private async settledSnapshot(id: string): Promise<SnapshotRecord | undefined> {
    const file = this.layout.record('snapshots', id);
    const record = await readJson<SnapshotRecord>(file);
    if (record?.status !== 'creating') return record;
    const job = await this.deadJob('snapshots', id, record.requestedAt);
    if (job === undefined) return record;
    // Decided on the record as it is now that the job has ended: it may have verified the backup
    // and marked it available after the read above, and a dead job writes no more.
    let died = false;
    const settled = await updateRecordIfPresent<SnapshotRecord>(file, (r) => {
      if (r.status !== 'creating') return r;
      died = true;
      return {
        ...r,
        status: 'failed',
        failureCause: `the background job (pid ${job.pid}) ended before the backup was verified`,
      };
    });
    if (!died || settled === undefined) return settled;
    if (job.pid > 0) killJobGroup(job);
    await killProcessesUsing(this.layout.dir('snapshots', id));
    // A backup whose job died is never trusted, however complete it looks.
    await rm(this.layout.snapshotCopyDir(id), { recursive: true, force: true });
    await rm(this.layout.partialBackupDir(id), { recursive: true, force: true });
    await rm(this.layout.backupDir(id), { recursive: true, force: true });
    return settled;
  }

  private async settledExport(id: string): Promise<ExportRecord | undefined> {
    const file = this.layout.record('exports', id);
    const record = await readJson<ExportRecord>(file);
    if (record === undefined || (record.status !== 'starting' && record.status !== 'in-progress')) {
      return record;
    }
    const job = await this.deadJob('exports', id, record.requestedAt);
    if (job === undefined) return record;
    // Decided on the record as it is now that the job has ended: it may have completed the
    // export after the read above, and a dead job writes no more.
    let died = false;
    const settled = await updateRecordIfPresent<ExportRecord>(file, (r) => {
      if (r.status !== 'starting' && r.status !== 'in-progress') return r;
      died = true;
      return {
        ...r,
        status: 'failed',
        failureCause: `the background job (pid ${job.pid}) ended before the export was complete`,
      };
    });
    if (!died || settled === undefined) return settled;
    if (job.pid > 0) killJobGroup(job);
    const work = this.layout.exportWorkDir(id);
    await killProcessesUsing(this.layout.exportOutputDir(record));
    await stopCluster(path.join(work, 'data'), 'immediate').catch(() => undefined);
    await rm(work, { recursive: true, force: true });
    await rm(this.layout.exportOutputDir(record), { recursive: true, force: true });
    return settled;
  }

  /** Snapshots of an instance (any incarnation), settled, newest first. */
  private async snapshotRecords(instanceId: string): Promise<SnapshotRecord[]> {
    const records: SnapshotRecord[] = [];
    for (const id of await this.ids('snapshots')) {
      const head = await readJson<SnapshotRecord>(this.layout.record('snapshots', id));
      if (head?.instanceId !== instanceId) continue;
      const record = await this.settledSnapshot(id);
      if (record !== undefined) records.push(record);
    }
    const when = (s: SnapshotRecord) => s.createdAt ?? s.requestedAt;
    return records.sort((a, b) => when(b).localeCompare(when(a)) || b.snapshotId.localeCompare(a.snapshotId));
  }

  private async availableSnapshot(id: string): Promise<SnapshotRecord> {
    const snapshot = await this.settledSnapshot(id);
    if (snapshot === undefined) throw new NotFoundError(`snapshot ${id} not found`);
    if (snapshot.status === 'creating') {
      throw new BusyError(`waiting: snapshot ${id} is creating, not available yet`);
    }
    if (snapshot.status !== 'available') {
      throw new InvalidStateError(`snapshot ${id} is ${snapshot.status}, not available`);
    }
    return snapshot;
  }

  private async requireRunning(record: InstanceRecord, what: string): Promise<void> {
    if (record.status === 'creating') {
      throw new BusyError(`waiting: instance ${record.instanceId} is creating: cannot ${what} yet`);
    }
    if (record.status !== 'available') {
      throw new InvalidStateError(`instance ${record.instanceId} is ${record.status}: cannot ${what}`);
    }
    if (!(await isClusterRunning(this.layout.dataDir(record.instanceId)))) {
      throw new InvalidStateError(`instance ${record.instanceId} is stopped: cannot ${what}`);
    }
  }

  /** A point-in-time restore source must be available or stopped; returns whether it runs. */
  private async requireRestorable(record: InstanceRecord): Promise<boolean> {
    if (record.status === 'creating') {
      throw new BusyError(
        `waiting: instance ${record.instanceId} is creating: cannot restore it to a point in time yet`,
      );
    }
    if (record.status !== 'available') {
      throw new InvalidStateError(
        `instance ${record.instanceId} is ${record.status}: cannot restore it to a point in time`,
      );
    }
    return isClusterRunning(this.layout.dataDir(record.instanceId));
  }

  /**
   * [earliest, latest] restorable time. Earliest: the oldest available base backup (the archive
   * keeps all WAL after it). Latest: now while the instance runs (a restore first sends the
   * current WAL to the archive); when stopped, when the newest archived WAL segment was written.
   */
  private async restorableRange(
    record: InstanceRecord,
    backups: SnapshotRecord[],
    running: boolean,
  ): Promise<{ earliest: string; latest: string } | undefined> {
    const oldest = backups.at(-1)?.createdAt;
    if (oldest === undefined) return undefined;
    const latest = running ? new Date().toISOString() : await this.lastArchivedAt(record.instanceId);
    return { earliest: oldest, latest: latest !== undefined && latest > oldest ? latest : oldest };
  }

  private async lastArchivedAt(instanceId: string): Promise<string | undefined> {
    const segments = (await readdir(this.layout.archiveDir(instanceId)).catch(() => [])).filter((name) =>
      /^[0-9A-F]{24}$/.test(name),
    );
    const newest = segments.sort().at(-1);
    if (newest === undefined) return undefined;
    return (await stat(path.join(this.layout.archiveDir(instanceId), newest))).mtime.toISOString();
  }

  /**
   * Writes a commit (it carries a timestamp recovery can stop at), switches to a new WAL segment
   * and waits until the finished one is in the archive.
   */
  private async archiveCurrentWal(record: InstanceRecord): Promise<void> {
    const segment = await withClient(adminEndpoint(record.port), async (client) => {
      await client.query('SELECT txid_current()');
      const { rows } = await client.query<{ name: string }>(
        'SELECT pg_walfile_name(pg_switch_wal()) AS name',
      );
      return rows[0]!.name;
    });
    const archived = path.join(this.layout.archiveDir(record.instanceId), segment);
    const deadline = Date.now() + 60_000;
    while (
      !(await stat(archived).then(
        () => true,
        () => false,
      ))
    ) {
      if (Date.now() > deadline) {
        throw new TransientError(
          `WAL segment ${segment} of instance ${record.instanceId} is not archived yet`,
        );
      }
      await sleep(20);
    }
  }

  private async instanceDescription(record: InstanceRecord): Promise<InstanceDescription> {
    const running =
      record.status === 'creating' ? false : await isClusterRunning(this.layout.dataDir(record.instanceId));
    const status = record.status === 'available' && !running ? 'stopped' : record.status;
    let range: { earliest: string; latest: string } | undefined;
    if (status === 'available' || status === 'stopped') {
      const backups = (await this.snapshotRecords(record.instanceId)).filter(
        (s) => s.status === 'available' && s.incarnation === record.incarnation,
      );
      range = await this.restorableRange(record, backups, running);
    }
    return {
      instanceId: record.instanceId,
      status,
      providerStatus: record.failureCause ? `${status}: ${record.failureCause}` : status,
      endpoint:
        status === 'creating'
          ? undefined
          : { host: '127.0.0.1', port: record.port, database: APP_DATABASE, user: WORKER_ROLE },
      engineVersion: record.engineVersion,
      earliestRestorableTime: range?.earliest,
      latestRestorableTime: range?.latest,
      createdAt: record.createdAt,
      multiAz: false,
      tags: record.tags,
    };
  }

  private exportDescription(record: ExportRecord): ExportDescription {
    return {
      exportId: record.exportId,
      snapshotId: record.snapshotId,
      status: record.status,
      destination: `file://${this.layout.exportOutputDir(record)}`,
      percentProgress: record.percentProgress,
      failureCause: record.failureCause,
    };
  }
}

function snapshotDescription(record: SnapshotRecord): SnapshotDescription {
  return {
    snapshotId: record.snapshotId,
    instanceId: record.instanceId,
    type: record.type,
    status: record.status,
    createdAt: record.createdAt,
    percentProgress: record.percentProgress,
    sizeBytes: record.sizeBytes,
    engineVersion: record.engineVersion,
    tableRowCounts: record.tableRowCounts,
    tableContentHashes: record.tableContentHashes,
    tags: record.tags,
  };
}

/** The target time as a normalized ISO string, undefined for 'latest'. */
function parseRestoreTarget(target: RestoreTarget): string | undefined {
  if (target === 'latest') return undefined;
  const time: unknown = (target as { time?: unknown } | undefined)?.time;
  if (typeof time !== 'string' || Number.isNaN(Date.parse(time)) || !/^\d{4}-\d\d-\d\dT/.test(time)) {
    throw new InvalidInputError(
      `target ${JSON.stringify(target)} is not valid: 'latest' or { time } with an ISO-8601 time such as 2026-01-31T12:00:00Z`,
    );
  }
  return new Date(time).toISOString();
}
