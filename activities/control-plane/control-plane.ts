/**
 * The ControlPlane: instances, snapshots, restores and exports, the same for both providers
 * (`aws`: RDS and S3; `local`: real PostgreSQL clusters). Operations are asynchronous as on RDS:
 * create / restore / snapshot / export return at once in a transitional state and workflows poll
 * `describe*` until it settles. Every method throws the typed errors of `workflows/lib/errors`.
 * All times are ISO-8601 strings (UTC) so descriptions travel through workflow history as JSON.
 */

export type InstanceStatus =
  'creating' | 'available' | 'backing-up' | 'modifying' | 'deleting' | 'stopped' | 'failed';

export type SnapshotStatus = 'creating' | 'available' | 'deleting' | 'failed';

export type ExportStatus = 'starting' | 'in-progress' | 'complete' | 'failed' | 'canceled';

export interface Endpoint {
  host: string;
  port: number;
  database: string;
  user: string;
}

export interface InstanceDescription {
  instanceId: string;
  status: InstanceStatus;
  /** The provider's own status word (RDS has many more than we model), for display. */
  providerStatus: string;
  /** Absent while the instance is being created. */
  endpoint: Endpoint | undefined;
  engineVersion: string;
  earliestRestorableTime: string | undefined;
  latestRestorableTime: string | undefined;
  createdAt: string | undefined;
  multiAz: boolean;
  tags: Record<string, string>;
}

export interface SnapshotDescription {
  snapshotId: string;
  instanceId: string;
  type: 'manual' | 'automated';
  status: SnapshotStatus;
  /** When the snapshot's data was taken (the RPO anchor). */
  createdAt: string | undefined;
  percentProgress: number;
  sizeBytes: number | undefined;
  engineVersion: string;
  /** Row count per table (`database.schema.table`) recorded when the snapshot was taken, when known. */
  tableRowCounts: Record<string, number> | undefined;
  /** Content hash per table (activities/postgres/fingerprints.ts), same keys, when known. */
  tableContentHashes: Record<string, string> | undefined;
  tags: Record<string, string>;
}

export interface ExportDescription {
  exportId: string;
  snapshotId: string;
  status: ExportStatus;
  /** `s3://bucket/prefix` on aws, a `file://` directory on local. */
  destination: string;
  percentProgress: number;
  failureCause: string | undefined;
}

export type RestoreTarget = { time: string } | 'latest';

/**
 * How much of an instance could be recovered if it were lost now, from what is stored away from
 * it (the health check turns this into the recoverability gauges).
 */
export interface RecoverabilityDescription {
  instanceId: string;
  /**
   * The newest time a point-in-time restore reaches from the stored log chain (aws: the
   * instance's LatestRestorableTime; local: when the newest WAL segment reached the archive);
   * undefined without one.
   */
  latestRestorableTime: string | undefined;
  /** The newest snapshot (manual or automated) that is available, undefined when there is none. */
  newestAvailableSnapshot: { snapshotId: string; createdAt: string } | undefined;
}

export interface CreateInstanceOptions {
  tags?: Record<string, string>;
}

export interface DeleteInstanceOptions {
  /** Only for temporary instances (DR tests): otherwise a final snapshot is taken. */
  skipFinalSnapshot: boolean;
  finalSnapshotId?: string;
  /** RDS deletes automated backups by default; we keep them unless asked. */
  deleteAutomatedBackups?: boolean;
}

export interface ExportDestination {
  /** Bucket (aws) or bucket directory name (local). */
  bucket: string;
  prefix: string;
}

export interface ControlPlane {
  readonly provider: 'local' | 'aws';

  describeInstance(instanceId: string): Promise<InstanceDescription>;
  listInstances(): Promise<InstanceDescription[]>;
  createInstance(instanceId: string, options?: CreateInstanceOptions): Promise<InstanceDescription>;
  /** Idempotent: deleting a missing instance succeeds. */
  deleteInstance(instanceId: string, options: DeleteInstanceOptions): Promise<void>;

  createSnapshot(
    instanceId: string,
    snapshotId: string,
    tags?: Record<string, string>,
  ): Promise<SnapshotDescription>;
  describeSnapshot(snapshotId: string): Promise<SnapshotDescription>;
  /** Manual and automated snapshots of the instance, newest first. */
  listSnapshots(instanceId: string): Promise<SnapshotDescription[]>;
  deleteSnapshot(snapshotId: string): Promise<void>;
  /**
   * What the provider sees using the snapshot right now, one phrase each (empty: nothing), so a
   * deletion can be refused: exports of it in progress on both providers; on local also instances
   * being restored from it (from it as a snapshot, or from it as a point-in-time restore's base).
   * RDS does not say which snapshot an instance is being restored from. NotFoundError when the
   * snapshot does not exist.
   */
  snapshotUsers(snapshotId: string): Promise<string[]>;

  /** Restores as a NEW instance; the source is never touched. */
  restoreFromSnapshot(
    snapshotId: string,
    targetInstanceId: string,
    tags?: Record<string, string>,
  ): Promise<InstanceDescription>;
  /** Restores as a NEW instance; throws RestoreTimeOutOfRangeError (with the valid range) when out of range. */
  restoreToPointInTime(
    sourceInstanceId: string,
    targetInstanceId: string,
    target: RestoreTarget,
    tags?: Record<string, string>,
  ): Promise<InstanceDescription>;

  startExport(
    exportId: string,
    snapshotId: string,
    destination: ExportDestination,
  ): Promise<ExportDescription>;
  describeExport(exportId: string): Promise<ExportDescription>;

  describeRecoverability(instanceId: string): Promise<RecoverabilityDescription>;
}

/** Of `snapshots`, the available one taken last. */
export function newestAvailableSnapshot(
  snapshots: SnapshotDescription[],
): RecoverabilityDescription['newestAvailableSnapshot'] {
  let newest: { snapshotId: string; createdAt: string } | undefined;
  for (const { snapshotId, status, createdAt } of snapshots) {
    if (status !== 'available' || createdAt === undefined) continue;
    if (newest === undefined || Date.parse(createdAt) > Date.parse(newest.createdAt)) {
      newest = { snapshotId, createdAt };
    }
  }
  return newest;
}
