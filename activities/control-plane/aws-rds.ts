/**
 * The `aws` ControlPlane: Amazon RDS for instances, snapshots, restores and exports, S3 for what an
 * export wrote. Every AWS call is spelled out as `new XxxCommand(` in this file: the IAM policy
 * (docs/aws-provider.md, the Terraform policy test) is derived from that list.
 */
import {
  CreateDBInstanceCommand,
  CreateDBSnapshotCommand,
  DeleteDBInstanceCommand,
  DeleteDBSnapshotCommand,
  DescribeDBInstanceAutomatedBackupsCommand,
  DescribeDBInstancesCommand,
  DescribeDBSnapshotsCommand,
  DescribeExportTasksCommand,
  ModifyDBInstanceCommand,
  RDSClient,
  RestoreDBInstanceFromDBSnapshotCommand,
  RestoreDBInstanceToPointInTimeCommand,
  StartExportTaskCommand,
  type DBInstance,
  type DBInstanceAutomatedBackup,
  type DBSnapshot,
  type ExportTask,
  type RDSClientConfig,
  type Tag,
} from '@aws-sdk/client-rds';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';

import { workerCredentials } from '../aws-credentials';
import type { ExportConfig, RdsConfig } from '../config-types';
import {
  AlreadyExistsError,
  BusyError,
  DeletionProtectedError,
  InvalidInputError,
  InvalidStateError,
  NotFoundError,
  RestoreTimeOutOfRangeError,
} from '../../workflows/lib/errors';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from '../../workflows/lib/identifiers';
import {
  describeOwner,
  DR_PURPOSE,
  OWNER_TAGS,
  ownedBy,
  REHEARSAL_PURPOSE,
  type OwnerPurpose,
} from '../../workflows/lib/owner-tags';
import { mapAwsErrors } from './aws-errors';
import type {
  ControlPlane,
  CreateInstanceOptions,
  DeleteInstanceOptions,
  ExportDescription,
  ExportDestination,
  ExportStatus,
  InstanceDescription,
  InstanceStatus,
  RecoverabilityDescription,
  RestoreTarget,
  SnapshotDescription,
  SnapshotStatus,
} from './control-plane';
import { newestAvailableSnapshot } from './control-plane';

/**
 * The SDK retries throttling, 5xx and connection errors itself, with jittered exponential backoff.
 * Three attempts absorb a short burst inside one activity attempt; a longer outage surfaces as a
 * TransientError and Temporal's retry policy takes over with its own, longer backoff. More SDK
 * attempts would only hide an outage inside one activity (and its start-to-close timeout).
 */
export const AWS_MAX_ATTEMPTS = 3;

export interface AwsClientOptions {
  region: string;
  /** A local AWS API peer; unset in production. */
  endpoint?: string | undefined;
  /** Unset in production: the worker's one provider (activities/aws-credentials.ts). */
  credentials?: RDSClientConfig['credentials'];
}

export function createAwsClients(options: AwsClientOptions): { rds: RDSClient; s3: S3Client } {
  const common = {
    region: options.region,
    maxAttempts: AWS_MAX_ATTEMPTS,
    ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
    credentials: options.credentials ?? workerCredentials(),
  };
  // Path-style S3 addressing only where a custom endpoint cannot serve bucket subdomains.
  return {
    rds: new RDSClient(common),
    s3: new S3Client({ ...common, forcePathStyle: options.endpoint !== undefined }),
  };
}

export interface AwsRdsDeps {
  rds: RDSClient;
  s3: S3Client;
  settings: RdsConfig;
  /** Unset: exports are refused with a message naming the variables to set. */
  exports: ExportConfig | undefined;
  /** The database and user dbops connects as (IAM auth): what every endpoint carries. */
  connectAs: { database: string; user: string };
}

/** One file an export wrote. */
export interface ExportFile {
  /** `s3://bucket/key`. */
  location: string;
  sizeBytes: number;
}

export class AwsRdsControlPlane implements ControlPlane {
  readonly provider = 'aws';
  /** Real recoveries this process has given production's monitoring (completeRecovery). */
  private readonly recoveriesCompleted = new Set<string>();

  constructor(private readonly deps: AwsRdsDeps) {}

  async describeInstance(instanceId: string): Promise<InstanceDescription> {
    const instance = await this.completeRecovery(await this.findInstance(instanceId));
    return toInstance(instance, this.deps.connectAs, await this.earliestRestorableTime(instance));
  }

  /** LatestRestorableTime from DescribeDBInstances; the snapshots from DescribeDBSnapshots. */
  async describeRecoverability(instanceId: string): Promise<RecoverabilityDescription> {
    const instance = await this.findInstance(instanceId);
    return {
      instanceId,
      latestRestorableTime: instance.LatestRestorableTime?.toISOString(),
      newestAvailableSnapshot: newestAvailableSnapshot(await this.listSnapshots(instanceId)),
    };
  }

  /** `earliestRestorableTime` is left out here (one more call per instance); describeInstance has it. */
  async listInstances(): Promise<InstanceDescription[]> {
    const instances: InstanceDescription[] = [];
    let marker: string | undefined;
    do {
      const page = await mapAwsErrors('listing DB instances', () =>
        this.deps.rds.send(new DescribeDBInstancesCommand({ Marker: marker })),
      );
      for (const instance of page.DBInstances ?? []) {
        instances.push(toInstance(instance, this.deps.connectAs, undefined));
      }
      marker = page.Marker;
    } while (marker);
    return instances;
  }

  async createInstance(
    instanceId: string,
    options: CreateInstanceOptions = {},
  ): Promise<InstanceDescription> {
    requireIdentifier('instanceId', instanceId);
    const { settings, connectAs } = this.deps;
    const what = `creating instance "${instanceId}"`;
    try {
      const response = await mapAwsErrors(what, () =>
        this.deps.rds.send(
          new CreateDBInstanceCommand({
            DBInstanceIdentifier: instanceId,
            Engine: 'postgres',
            EngineVersion: settings.engineVersion,
            AllocatedStorage: settings.allocatedStorageGb,
            StorageType: 'gp3',
            StorageEncrypted: true,
            DBName: connectAs.database,
            MasterUsername: connectAs.user,
            // RDS keeps the master password in Secrets Manager: no password passes through dbops.
            ManageMasterUserPassword: true,
            BackupRetentionPeriod: 30,
            ...this.placement(options.tags),
          }),
        ),
      );
      return toInstance(required(response.DBInstance, 'DBInstance'), connectAs, undefined);
    } catch (error) {
      if (error instanceof AlreadyExistsError)
        return this.ownInstance(error, instanceId, options.tags ?? {}, what);
      throw error;
    }
  }

  async deleteInstance(instanceId: string, options: DeleteInstanceOptions): Promise<void> {
    requireIdentifier('instanceId', instanceId);
    if (!options.skipFinalSnapshot) {
      if (options.finalSnapshotId === undefined) {
        throw new InvalidInputError(
          `deleting instance "${instanceId}": finalSnapshotId is required unless skipFinalSnapshot is true`,
        );
      }
      requireIdentifier('finalSnapshotId', options.finalSnapshotId);
    }
    const what = `deleting instance "${instanceId}"`;
    try {
      await mapAwsErrors(what, () =>
        this.deps.rds.send(
          new DeleteDBInstanceCommand({
            DBInstanceIdentifier: instanceId,
            SkipFinalSnapshot: options.skipFinalSnapshot,
            FinalDBSnapshotIdentifier: options.skipFinalSnapshot ? undefined : options.finalSnapshotId,
            // RDS would delete the automated backups (the point-in-time history) by default.
            DeleteAutomatedBackups: options.deleteAutomatedBackups ?? false,
          }),
        ),
      );
    } catch (error) {
      // Idempotent: a retry after a lost response finds the instance gone or already deleting.
      if (error instanceof NotFoundError) return;
      if (error instanceof InvalidInputError && /protect/i.test(error.message)) {
        throw new DeletionProtectedError(
          `${what}: it has deletion protection (a real recovery, or production): dbops does not delete it; turn deletion protection off by hand first if it is not wanted`,
          error.providerCode,
        );
      }
      // The worker's policy denies deleting real recoveries and production by name and tag.
      if (error instanceof InvalidInputError && error.providerCode === 'AccessDenied') {
        throw new DeletionProtectedError(
          `${what}: the worker's policy does not allow it (real recoveries and production are never deleted by dbops): ${error.message}`,
          error.providerCode,
        );
      }
      if (!isInstanceStateFault(error)) throw error;
      const status = await this.statusOf(instanceId);
      if (status === null || instanceStatus(status) === 'deleting') return;
      throw instanceCondition(error, instanceId, status, what);
    }
  }

  async createSnapshot(
    instanceId: string,
    snapshotId: string,
    tags: Record<string, string> = {},
  ): Promise<SnapshotDescription> {
    requireIdentifier('instanceId', instanceId);
    requireIdentifier('snapshotId', snapshotId);
    const what = `creating snapshot "${snapshotId}" of instance "${instanceId}"`;
    try {
      const response = await mapAwsErrors(what, () =>
        this.deps.rds.send(
          new CreateDBSnapshotCommand({
            DBInstanceIdentifier: instanceId,
            DBSnapshotIdentifier: snapshotId,
            Tags: toTagList(tags),
          }),
        ),
      );
      return toSnapshot(required(response.DBSnapshot, 'DBSnapshot'));
    } catch (error) {
      if (!(error instanceof AlreadyExistsError)) throw await this.instanceCondition(error, instanceId, what);
      // A retry of the same run (the reply to its first attempt was lost) finds its own snapshot.
      const found = toSnapshot(await this.findSnapshot(snapshotId));
      if (found.instanceId === instanceId && ownedBy(found.tags, tags)) return found;
      throw new AlreadyExistsError(
        `${what}: snapshot "${snapshotId}" already exists, a snapshot of instance "${found.instanceId}" ` +
          `created by ${describeOwner(found.tags)}, not by this run`,
        error.providerCode,
      );
    }
  }

  async describeSnapshot(snapshotId: string): Promise<SnapshotDescription> {
    const replicatedOf = replicatedInstance(snapshotId);
    if (replicatedOf !== undefined) {
      return replicatedSnapshot(replicatedOf, await this.requireReplicated(replicatedOf));
    }
    return toSnapshot(await this.findSnapshot(snapshotId));
  }

  async listSnapshots(instanceId: string): Promise<SnapshotDescription[]> {
    requireIdentifier('instanceId', instanceId);
    const snapshots: SnapshotDescription[] = [];
    let marker: string | undefined;
    do {
      const page = await mapAwsErrors(`listing snapshots of instance "${instanceId}"`, () =>
        this.deps.rds.send(
          new DescribeDBSnapshotsCommand({ DBInstanceIdentifier: instanceId, Marker: marker }),
        ),
      );
      snapshots.push(...(page.DBSnapshots ?? []).map(toSnapshot));
      marker = page.Marker;
    } while (marker);
    // In the backup region there are no snapshots of the instance, only its replicated backups.
    if (snapshots.length === 0) {
      const replicated = await this.replicatedBackup(instanceId);
      if (replicated !== undefined) snapshots.push(replicatedSnapshot(instanceId, replicated));
    }
    return newestFirst(snapshots);
  }

  async deleteSnapshot(snapshotId: string): Promise<void> {
    requireSnapshotId(snapshotId);
    await mapAwsErrors(`deleting snapshot "${snapshotId}"`, () =>
      this.deps.rds.send(new DeleteDBSnapshotCommand({ DBSnapshotIdentifier: snapshotId })),
    );
  }

  async snapshotUsers(snapshotId: string): Promise<string[]> {
    const arn = required((await this.findSnapshot(snapshotId)).DBSnapshotArn, 'DBSnapshotArn');
    const users: string[] = [];
    let marker: string | undefined;
    do {
      const page = await mapAwsErrors(`listing the exports of snapshot "${snapshotId}"`, () =>
        this.deps.rds.send(new DescribeExportTasksCommand({ SourceArn: arn, Marker: marker })),
      );
      for (const task of page.ExportTasks ?? []) {
        const status = exportStatus(task.Status ?? 'starting');
        if (task.SourceArn === arn && (status === 'starting' || status === 'in-progress')) {
          users.push(`export ${task.ExportTaskIdentifier ?? '(unnamed)'} is reading it`);
        }
      }
      marker = page.Marker;
    } while (marker);
    return users;
  }

  async restoreFromSnapshot(
    snapshotId: string,
    targetInstanceId: string,
    tags: Record<string, string> = {},
  ): Promise<InstanceDescription> {
    requireSnapshotId(snapshotId);
    requireIdentifier('targetInstanceId', targetInstanceId);
    const replicatedOf = replicatedInstance(snapshotId);
    if (replicatedOf !== undefined) {
      const source = replicatedSource(
        replicatedOf,
        await this.requireReplicated(replicatedOf),
        await this.region(),
      );
      return this.restorePointInTime(source, targetInstanceId, undefined, tags);
    }
    const what = `restoring snapshot "${snapshotId}" as instance "${targetInstanceId}"`;
    try {
      const response = await mapAwsErrors(what, () =>
        this.deps.rds.send(
          new RestoreDBInstanceFromDBSnapshotCommand({
            DBSnapshotIdentifier: snapshotId,
            DBInstanceIdentifier: targetInstanceId,
            ...this.placement(tags),
          }),
        ),
      );
      return toInstance(required(response.DBInstance, 'DBInstance'), this.deps.connectAs, undefined);
    } catch (error) {
      if (error instanceof AlreadyExistsError) return this.ownInstance(error, targetInstanceId, tags, what);
      throw error;
    }
  }

  async restoreToPointInTime(
    sourceInstanceId: string,
    targetInstanceId: string,
    target: RestoreTarget,
    tags: Record<string, string> = {},
  ): Promise<InstanceDescription> {
    requireIdentifier('targetInstanceId', targetInstanceId);
    requireIdentifier('sourceInstanceId', sourceInstanceId);
    const restoreTime = target === 'latest' ? undefined : parseRestoreTime(target.time);
    const source = await this.pointInTimeSource(sourceInstanceId);
    // Checked here so the error carries the valid range; RDS only says the time is invalid.
    if (restoreTime !== undefined) assertRestorable(source.window, restoreTime);
    return this.restorePointInTime(source, targetInstanceId, restoreTime, tags);
  }

  private async restorePointInTime(
    source: PointInTimeSource,
    targetInstanceId: string,
    restoreTime: Date | undefined,
    tags: Record<string, string>,
  ): Promise<InstanceDescription> {
    const what = `restoring ${source.described} to ${restoreTime?.toISOString() ?? 'its latest restorable time'} as instance "${targetInstanceId}"`;
    try {
      const response = await mapAwsErrors(what, () =>
        this.deps.rds.send(
          new RestoreDBInstanceToPointInTimeCommand({
            ...source.request,
            TargetDBInstanceIdentifier: targetInstanceId,
            ...(restoreTime === undefined ? { UseLatestRestorableTime: true } : { RestoreTime: restoreTime }),
            ...this.placement(tags),
            // Only a point-in-time restore takes the autoscaling limit; a snapshot restore gets it from completeRecovery.
            ...(tags[OWNER_TAGS.purpose] === RECOVERY_PURPOSE
              ? { MaxAllocatedStorage: this.deps.settings.recovery.maxAllocatedStorageGb }
              : {}),
          }),
        ),
      );
      return toInstance(required(response.DBInstance, 'DBInstance'), this.deps.connectAs, undefined);
    } catch (error) {
      if (error instanceof AlreadyExistsError) return this.ownInstance(error, targetInstanceId, tags, what);
      // InvalidDBInstanceState here is about the source instance (e.g. backing-up), when there is one.
      if (!('SourceDBInstanceIdentifier' in source.request)) throw error;
      throw await this.instanceCondition(error, source.request.SourceDBInstanceIdentifier, what);
    }
  }

  async startExport(
    exportId: string,
    snapshotId: string,
    destination: ExportDestination,
  ): Promise<ExportDescription> {
    requireIdentifier('exportId', exportId);
    const exports = this.deps.exports;
    if (exports === undefined) {
      throw new InvalidInputError(
        `exporting snapshot "${snapshotId}": exports are not configured (set DBOPS_EXPORT_BUCKET, DBOPS_EXPORT_IAM_ROLE_ARN and DBOPS_EXPORT_KMS_KEY_ID)`,
      );
    }
    const snapshot = await this.findSnapshot(snapshotId);
    const sourceArn = required(snapshot.DBSnapshotArn, 'DBSnapshotArn');
    const what = `exporting snapshot "${snapshotId}" to s3://${destination.bucket}/${destination.prefix} as export "${exportId}"`;
    try {
      const response = await mapAwsErrors(what, () =>
        this.deps.rds.send(
          new StartExportTaskCommand({
            ExportTaskIdentifier: exportId,
            SourceArn: sourceArn,
            S3BucketName: destination.bucket,
            // No prefix: the export lands at the bucket's root (S3Prefix is optional).
            S3Prefix: destination.prefix === '' ? undefined : destination.prefix,
            IamRoleArn: exports.iamRoleArn,
            KmsKeyId: exports.kmsKeyId,
          }),
        ),
      );
      return toExport(response);
    } catch (error) {
      if (!(error instanceof AlreadyExistsError)) throw error;
      // Export tasks carry no tags: ours is the same task of the same snapshot to the same place.
      const found = await this.findExport(exportId);
      const sameDestination =
        found.S3Bucket === destination.bucket && (found.S3Prefix ?? '') === destination.prefix;
      if (found.SourceArn === sourceArn && sameDestination) return toExport(found);
      const existing = toExport(found);
      throw new AlreadyExistsError(
        `${what}: export "${exportId}" already exists, of snapshot "${existing.snapshotId}" to ${existing.destination}`,
        error.providerCode,
      );
    }
  }

  async describeExport(exportId: string): Promise<ExportDescription> {
    return toExport(await this.findExport(exportId));
  }

  /** What the export wrote to S3 (RDS writes under `<prefix>/<export id>/`), in key order. */
  async listExportFiles(exportId: string): Promise<ExportFile[]> {
    const task = await this.findExport(exportId);
    const bucket = required(task.S3Bucket, 'S3Bucket');
    const prefix = `${joinKey(task.S3Prefix ?? '', exportId)}/`;
    const files: ExportFile[] = [];
    let token: string | undefined;
    do {
      const page = await mapAwsErrors(
        `listing the files of export "${exportId}" in s3://${bucket}/${prefix}`,
        () =>
          this.deps.s3.send(
            new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
          ),
      );
      for (const object of page.Contents ?? []) {
        files.push({ location: `s3://${bucket}/${object.Key ?? ''}`, sizeBytes: object.Size ?? 0 });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return files;
  }

  /**
   * What every new instance gets. RDS takes anything left out from the account's defaults, not
   * from the source: the default VPC security group, the default parameter group (no
   * pg_stat_statements, our timeouts gone), single-AZ, and a public address when the subnet
   * group allows one. A restore must land where production runs, or the DR test proves nothing.
   *
   * The `dbops:purpose` tag decides the rest. A DR test copy lives for an hour and only has to
   * prove the backup restores, a deploy's rehearsal copy only runs its migrations once: each gets
   * the DR copies' small class, single-AZ, no automated backups (RDS would
   * take a first snapshot of it), no deletion protection. A real recovery is meant to replace
   * production, so it gets production's settings; those the restore calls cannot set
   * (Performance Insights, enhanced monitoring) follow in completeRecovery.
   */
  private placement(tags: Record<string, string> = {}) {
    const { settings } = this.deps;
    const common = {
      DBSubnetGroupName: settings.subnetGroup,
      VpcSecurityGroupIds: settings.securityGroupIds,
      PubliclyAccessible: false,
      DBParameterGroupName: settings.parameterGroup,
      // Activities connect with IAM tokens; restores do not inherit the setting.
      EnableIAMDatabaseAuthentication: true,
      CopyTagsToSnapshot: true,
      Tags: toTagList({ ...settings.tags, ...tags }),
    };
    switch (tags[OWNER_TAGS.purpose]) {
      case DR_PURPOSE:
      case REHEARSAL_PURPOSE:
        return {
          ...common,
          DBInstanceClass: settings.drInstanceClass,
          MultiAZ: false,
          BackupRetentionPeriod: 0,
          DeletionProtection: false,
        };
      case RECOVERY_PURPOSE: {
        const recovery = settings.recovery;
        return {
          ...common,
          DBInstanceClass: settings.instanceClass,
          MultiAZ: settings.multiAz,
          BackupRetentionPeriod: recovery.backupRetentionDays,
          DeletionProtection: true,
          EnableCloudwatchLogsExports: recovery.logExports,
          CACertificateIdentifier: recovery.caCertificateIdentifier,
        };
      }
      default:
        return { ...common, DBInstanceClass: settings.instanceClass, MultiAZ: settings.multiAz };
    }
  }

  /**
   * A real recovery gets production's Performance Insights, enhanced monitoring and storage
   * autoscaling limit, which RDS's restore calls cannot set. Once the restored instance is first
   * available, one ModifyDBInstance, applied immediately, sets them, and the instance reads as
   * `modifying` (as RDS itself then reports it) so a workflow waiting for it keeps waiting. Each
   * instance is modified once per worker process; RDS's own fields tell a later process that it
   * is done (sending the same modification again would change nothing).
   */
  private async completeRecovery(instance: DBInstance): Promise<DBInstance> {
    const tags = fromTagList(instance.TagList);
    if (tags[OWNER_TAGS.purpose] !== RECOVERY_PURPOSE || instance.DBInstanceStatus !== 'available') {
      return instance;
    }
    const instanceId = required(instance.DBInstanceIdentifier, 'DBInstanceIdentifier');
    const recovery = this.deps.settings.recovery;
    const settled =
      instance.PerformanceInsightsEnabled === true &&
      (instance.MonitoringInterval ?? 0) === recovery.monitoringIntervalSeconds &&
      instance.MaxAllocatedStorage === recovery.maxAllocatedStorageGb;
    const key = `${instanceId}@${instance.InstanceCreateTime?.toISOString() ?? ''}`;
    if (settled || this.recoveriesCompleted.has(key)) return instance;
    await mapAwsErrors(`giving the recovered instance "${instanceId}" production's monitoring`, () =>
      this.deps.rds.send(
        new ModifyDBInstanceCommand({
          DBInstanceIdentifier: instanceId,
          ApplyImmediately: true,
          EnablePerformanceInsights: true,
          PerformanceInsightsKMSKeyId: recovery.performanceInsightsKmsKeyId,
          PerformanceInsightsRetentionPeriod: recovery.performanceInsightsRetentionDays,
          MonitoringInterval: recovery.monitoringIntervalSeconds,
          MonitoringRoleArn: recovery.monitoringIntervalSeconds > 0 ? recovery.monitoringRoleArn : undefined,
          MaxAllocatedStorage: recovery.maxAllocatedStorageGb,
        }),
      ),
    );
    this.recoveriesCompleted.add(key);
    return { ...instance, DBInstanceStatus: 'modifying' };
  }

  /**
   * What a point-in-time restore reads from. An instance of that name in this region: the
   * instance. None (it was deleted, or this is the backup region after the loss of the primary's):
   * its automated backups, either those RDS retained here when it was deleted (restored by
   * SourceDbiResourceId) or those replicated here from its region (restored by
   * SourceDBInstanceAutomatedBackupsArn).
   */
  private async pointInTimeSource(sourceInstanceId: string): Promise<PointInTimeSource> {
    try {
      const instance = await this.describeInstance(sourceInstanceId);
      return {
        request: { SourceDBInstanceIdentifier: sourceInstanceId },
        window: instance,
        described: `instance "${sourceInstanceId}"`,
      };
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
    }
    const region = await this.region();
    const backups = (
      await this.automatedBackups({ Filters: [{ Name: 'db-instance-id', Values: [sourceInstanceId] }] })
    )
      .filter((backup) => backup.DBInstanceIdentifier === sourceInstanceId)
      .sort((a, b) => latestTime(b) - latestTime(a));
    const window = (backup: DBInstanceAutomatedBackup) => ({
      instanceId: sourceInstanceId,
      earliestRestorableTime: backup.RestoreWindow?.EarliestTime?.toISOString(),
      latestRestorableTime: backup.RestoreWindow?.LatestTime?.toISOString(),
    });
    const retained = backups.find(
      (backup) =>
        backup.Status === 'retained' && (backup.Region ?? region) === region && backup.DbiResourceId,
    );
    if (retained !== undefined) {
      return {
        request: { SourceDbiResourceId: retained.DbiResourceId! },
        window: window(retained),
        described: `the retained automated backups of the deleted instance "${sourceInstanceId}" (${retained.DbiResourceId!})`,
      };
    }
    const replicated = backups.find((backup) => isReplicated(backup, region));
    if (replicated !== undefined) return replicatedSource(sourceInstanceId, replicated, region);
    throw new NotFoundError(
      `restoring instance "${sourceInstanceId}": no such instance in ${region}, and no automated backups of it retained or replicated here`,
    );
  }

  /**
   * A create or restore refused because its instance exists: a retry of the same run (its owner tags match)
   * carries on with the instance as it is now (maybe still `creating`); any other instance of that
   * name is AlreadyExistsError naming its owner.
   */
  private async ownInstance(
    error: AlreadyExistsError,
    instanceId: string,
    tags: Record<string, string>,
    what: string,
  ): Promise<InstanceDescription> {
    const found = toInstance(await this.findInstance(instanceId), this.deps.connectAs, undefined);
    if (ownedBy(found.tags, tags)) return found;
    throw new AlreadyExistsError(
      `${what}: instance "${instanceId}" already exists (${found.providerStatus}), created by ${describeOwner(found.tags)}, not by this run`,
      error.providerCode,
    );
  }

  /** A refusal for the instance's state, named by the state it is in now. */
  private async instanceCondition(error: unknown, instanceId: string, what: string): Promise<unknown> {
    if (!isInstanceStateFault(error)) return error;
    return instanceCondition(error, instanceId, await this.statusOf(instanceId), what);
  }

  /** The instance's RDS status word, or null when it does not exist. */
  private async statusOf(instanceId: string): Promise<string | null> {
    try {
      return (await this.findInstance(instanceId)).DBInstanceStatus ?? 'unknown';
    } catch (error) {
      if (error instanceof NotFoundError) return null;
      throw error;
    }
  }

  private async findInstance(instanceId: string): Promise<DBInstance> {
    requireIdentifier('instanceId', instanceId);
    const response = await mapAwsErrors(`describing instance "${instanceId}"`, () =>
      this.deps.rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: instanceId })),
    );
    const instance = response.DBInstances?.[0];
    if (instance === undefined)
      throw new NotFoundError(`describing instance "${instanceId}": no such instance`);
    return instance;
  }

  /**
   * RDS reports the start of the restorable window on the automated backups, not the instance.
   * Only the `active` backups of this very instance (its DbiResourceId) count: an instance of the
   * same name deleted earlier left `retained` backups of its own, whose window is not this one's.
   * RDS answers NotFound when the instance has no automated backups yet (just created, or backups
   * off): the instance exists, its window is unknown.
   */
  private async earliestRestorableTime(instance: DBInstance): Promise<string | undefined> {
    const instanceId = required(instance.DBInstanceIdentifier, 'DBInstanceIdentifier');
    let backups: DBInstanceAutomatedBackup[];
    try {
      backups = await this.automatedBackups({ DBInstanceIdentifier: instanceId });
    } catch (error) {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    }
    const earliest = backups
      .filter((backup) => backup.Status === 'active' && backup.DbiResourceId === instance.DbiResourceId)
      .map((backup) => backup.RestoreWindow?.EarliestTime)
      .filter((time): time is Date => time !== undefined)
      .sort((a, b) => a.getTime() - b.getTime())[0];
    return earliest?.toISOString();
  }

  private region(): Promise<string> {
    return this.deps.rds.config.region();
  }

  /** The newest automated backups of `instanceId` replicated to this region from its own. */
  private async replicatedBackup(instanceId: string): Promise<DBInstanceAutomatedBackup | undefined> {
    const region = await this.region();
    return (await this.automatedBackups({ Filters: [{ Name: 'db-instance-id', Values: [instanceId] }] }))
      .filter((backup) => backup.DBInstanceIdentifier === instanceId && isReplicated(backup, region))
      .sort((a, b) => latestTime(b) - latestTime(a))[0];
  }

  private async requireReplicated(instanceId: string): Promise<DBInstanceAutomatedBackup> {
    const backup = await this.replicatedBackup(instanceId);
    if (backup === undefined) {
      throw new NotFoundError(
        `describing snapshot "${replicatedSnapshotId(instanceId)}": no automated backups of instance "${instanceId}" are replicated to ${await this.region()}`,
      );
    }
    return backup;
  }

  private async automatedBackups(
    filter: { DBInstanceIdentifier: string } | { Filters: { Name: string; Values: string[] }[] },
  ): Promise<DBInstanceAutomatedBackup[]> {
    const named =
      'DBInstanceIdentifier' in filter ? filter.DBInstanceIdentifier : filter.Filters[0]!.Values[0]!;
    const backups: DBInstanceAutomatedBackup[] = [];
    let marker: string | undefined;
    do {
      const page = await mapAwsErrors(`describing the automated backups of instance "${named}"`, () =>
        this.deps.rds.send(new DescribeDBInstanceAutomatedBackupsCommand({ ...filter, Marker: marker })),
      );
      backups.push(...(page.DBInstanceAutomatedBackups ?? []));
      marker = page.Marker;
    } while (marker);
    return backups;
  }

  private async findSnapshot(snapshotId: string): Promise<DBSnapshot> {
    requireSnapshotId(snapshotId);
    const response = await mapAwsErrors(`describing snapshot "${snapshotId}"`, () =>
      this.deps.rds.send(new DescribeDBSnapshotsCommand({ DBSnapshotIdentifier: snapshotId })),
    );
    const snapshot = response.DBSnapshots?.[0];
    if (snapshot === undefined)
      throw new NotFoundError(`describing snapshot "${snapshotId}": no such snapshot`);
    return snapshot;
  }

  private async findExport(exportId: string): Promise<ExportTask> {
    requireIdentifier('exportId', exportId);
    const response = await mapAwsErrors(`describing export "${exportId}"`, () =>
      this.deps.rds.send(new DescribeExportTasksCommand({ ExportTaskIdentifier: exportId })),
    );
    const task = response.ExportTasks?.[0];
    if (task === undefined) throw new NotFoundError(`describing export "${exportId}": no such export task`);
    return task;
  }
}

/** The purpose of a real recovery: a restore meant to replace production. */
const RECOVERY_PURPOSE = 'restore' satisfies OwnerPurpose;

interface PointInTimeSource {
  request:
    | { SourceDBInstanceIdentifier: string }
    | { SourceDbiResourceId: string }
    | { SourceDBInstanceAutomatedBackupsArn: string };
  window: Pick<InstanceDescription, 'instanceId' | 'earliestRestorableTime' | 'latestRestorableTime'>;
  /** The source as messages name it. */
  described: string;
}

/** The end of an automated backup's restorable window, 0 when it has none yet. */
function latestTime(backup: DBInstanceAutomatedBackup): number {
  return backup.RestoreWindow?.LatestTime?.getTime() ?? 0;
}

/** Backups RDS replicated here from the instance's own region (their Region is the source's). */
function isReplicated(backup: DBInstanceAutomatedBackup, region: string): boolean {
  return backup.Region !== undefined && backup.Region !== region && !!backup.DBInstanceAutomatedBackupsArn;
}

function replicatedSource(
  instanceId: string,
  backup: DBInstanceAutomatedBackup,
  region: string,
): PointInTimeSource {
  return {
    request: {
      SourceDBInstanceAutomatedBackupsArn: required(
        backup.DBInstanceAutomatedBackupsArn,
        'DBInstanceAutomatedBackupsArn',
      ),
    },
    window: {
      instanceId,
      earliestRestorableTime: backup.RestoreWindow?.EarliestTime?.toISOString(),
      latestRestorableTime: backup.RestoreWindow?.LatestTime?.toISOString(),
    },
    described: `the automated backups of instance "${instanceId}" replicated from ${backup.Region ?? 'its region'} to ${region}`,
  };
}

/**
 * In the backup region an instance's replicated automated backups stand in for its snapshots: the
 * DR test there restores "the newest snapshot", which is the latest point they can restore, taken
 * (the RPO anchor) at the end of their window. Its id, `rds:<instance>-replicated-backups`, is no
 * name RDS gives a snapshot (automated ones end in their date).
 */
function replicatedSnapshotId(instanceId: string): string {
  return `rds:${instanceId}-replicated-backups`;
}

function replicatedInstance(snapshotId: string): string | undefined {
  return /^rds:(.+)-replicated-backups$/.exec(snapshotId)?.[1];
}

function replicatedSnapshot(instanceId: string, backup: DBInstanceAutomatedBackup): SnapshotDescription {
  const latest = backup.RestoreWindow?.LatestTime;
  return {
    snapshotId: replicatedSnapshotId(instanceId),
    instanceId,
    type: 'automated',
    status: latest === undefined ? 'creating' : 'available',
    createdAt: latest?.toISOString(),
    percentProgress: latest === undefined ? 0 : 100,
    sizeBytes: backup.AllocatedStorage === undefined ? undefined : backup.AllocatedStorage * 2 ** 30,
    engineVersion: backup.EngineVersion ?? '',
    tableRowCounts: undefined,
    tableContentHashes: undefined,
    tags: {},
  };
}

/** RDS refused because of the instance's state (InvalidDBInstanceState), mapped to BusyError. */
function isInstanceStateFault(error: unknown): error is BusyError {
  return error instanceof BusyError && error.providerCode === 'InvalidDBInstanceState';
}

/**
 * RDS answers InvalidDBInstanceState while the instance is busy: backing-up (the nightly backup
 * window), modifying, rebooting, still creating. That is waited out, named by the instance's
 * status. An instance that is failed or being deleted never gets ready: that fails fast.
 */
function instanceCondition(error: BusyError, instanceId: string, status: string | null, what: string): Error {
  const state = status === null ? undefined : instanceStatus(status);
  if (state === undefined || state === 'available') return error;
  if (state === 'failed' || state === 'deleting') {
    return new InvalidStateError(`${what}: instance "${instanceId}" is ${status}`, error.providerCode);
  }
  return new BusyError(
    `waiting: instance "${instanceId}" is ${status} (${what}: ${error.providerCode})`,
    error.providerCode,
  );
}

// ---- status words: RDS has many more than the ControlPlane models ----

const INSTANCE_STATUS: Record<string, InstanceStatus> = {
  available: 'available',
  'backing-up': 'backing-up',
  creating: 'creating',
  deleting: 'deleting',
  'delete-precheck': 'deleting',
  stopped: 'stopped',
  failed: 'failed',
  'restore-error': 'failed',
  'storage-full': 'failed',
  'insufficient-capacity': 'failed',
  'inaccessible-encryption-credentials': 'failed',
  'inaccessible-encryption-credentials-recoverable': 'failed',
  'incompatible-network': 'failed',
  'incompatible-option-group': 'failed',
  'incompatible-parameters': 'failed',
  'incompatible-restore': 'failed',
};

/**
 * Words not listed (modifying, rebooting, starting, stopping, upgrading, storage-optimization,
 * configuring-*, ...) are transitional: `modifying`, so a workflow keeps polling rather than
 * acting on an instance that is not ready.
 */
export function instanceStatus(providerStatus: string): InstanceStatus {
  return INSTANCE_STATUS[providerStatus] ?? 'modifying';
}

/** Anything unknown is still in progress (`creating`): waiting is safe, acting is not. */
export function snapshotStatus(providerStatus: string): SnapshotStatus {
  if (providerStatus === 'available' || providerStatus === 'deleting') return providerStatus;
  if (providerStatus === 'failed' || providerStatus.startsWith('incompatible')) return 'failed';
  return 'creating';
}

/** RDS spells export states in either case (`COMPLETE`, `in_progress`); `canceling` still runs. */
export function exportStatus(providerStatus: string): ExportStatus {
  const word = providerStatus.toLowerCase();
  if (word === 'complete' || word === 'failed' || word === 'canceled' || word === 'starting') return word;
  return 'in-progress';
}

// ---- conversions ----

function toInstance(
  instance: DBInstance,
  connectAs: AwsRdsDeps['connectAs'],
  earliestRestorableTime: string | undefined,
): InstanceDescription {
  const providerStatus = instance.DBInstanceStatus ?? 'unknown';
  const address = instance.Endpoint?.Address;
  return {
    instanceId: required(instance.DBInstanceIdentifier, 'DBInstanceIdentifier'),
    status: instanceStatus(providerStatus),
    providerStatus,
    endpoint:
      address === undefined
        ? undefined
        : {
            host: address,
            port: instance.Endpoint?.Port ?? 5432,
            database: instance.DBName ?? connectAs.database,
            user: connectAs.user,
          },
    engineVersion: instance.EngineVersion ?? '',
    earliestRestorableTime,
    latestRestorableTime: instance.LatestRestorableTime?.toISOString(),
    createdAt: instance.InstanceCreateTime?.toISOString(),
    multiAz: instance.MultiAZ ?? false,
    tags: fromTagList(instance.TagList),
  };
}

function toSnapshot(snapshot: DBSnapshot): SnapshotDescription {
  const providerStatus = snapshot.Status ?? 'unknown';
  return {
    snapshotId: required(snapshot.DBSnapshotIdentifier, 'DBSnapshotIdentifier'),
    instanceId: snapshot.DBInstanceIdentifier ?? '',
    type: snapshot.SnapshotType === 'automated' ? 'automated' : 'manual',
    status: snapshotStatus(providerStatus),
    createdAt: snapshot.SnapshotCreateTime?.toISOString(),
    percentProgress: snapshot.PercentProgress ?? 0,
    // RDS reports the allocated storage of the volume, not the size of the data in it.
    sizeBytes: snapshot.AllocatedStorage === undefined ? undefined : snapshot.AllocatedStorage * 2 ** 30,
    engineVersion: snapshot.EngineVersion ?? '',
    // RDS keeps no row counts; a snapshot taken by dbops records them in its own report instead.
    tableRowCounts: undefined,
    tableContentHashes: undefined,
    tags: fromTagList(snapshot.TagList),
  };
}

function toExport(task: ExportTask): ExportDescription {
  const exportId = required(task.ExportTaskIdentifier, 'ExportTaskIdentifier');
  return {
    exportId,
    // The source ARN ends in `snapshot:<id>` (automated ids contain a colon themselves).
    snapshotId: /:snapshot:(.+)$/.exec(task.SourceArn ?? '')?.[1] ?? '',
    status: exportStatus(task.Status ?? 'starting'),
    destination: `s3://${task.S3Bucket ?? ''}/${task.S3Prefix ?? ''}`,
    percentProgress: task.PercentProgress ?? 0,
    failureCause: task.FailureCause,
  };
}

/** Snapshots still being taken have no time yet and are the newest. */
function newestFirst(snapshots: SnapshotDescription[]): SnapshotDescription[] {
  const time = (s: SnapshotDescription) => (s.createdAt === undefined ? Infinity : Date.parse(s.createdAt));
  return [...snapshots].sort((a, b) => time(b) - time(a));
}

function toTagList(tags: Record<string, string>): Tag[] {
  return Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));
}

function fromTagList(tags: Tag[] | undefined): Record<string, string> {
  return Object.fromEntries((tags ?? []).map((tag) => [tag.Key ?? '', tag.Value ?? '']));
}

function joinKey(prefix: string, name: string): string {
  return prefix === '' ? name : `${prefix.replace(/\/+$/, '')}/${name}`;
}

// ---- input checks: bad input changes nothing and names the field ----

function requireIdentifier(field: string, value: string): void {
  if (!isRdsIdentifier(value)) {
    throw new InvalidInputError(
      `${field} ${JSON.stringify(value)} is not a valid identifier: ${RDS_IDENTIFIER_RULE}`,
    );
  }
}

/** Automated snapshots are named `rds:<instance>-<date>`; manual ones follow the identifier rule. */
function requireSnapshotId(value: string): void {
  requireIdentifier('snapshotId', value.startsWith('rds:') ? value.slice(4) : value);
}

function parseRestoreTime(time: string): Date {
  const parsed = new Date(time);
  if (
    !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(time) ||
    isNaN(parsed.getTime())
  ) {
    throw new InvalidInputError(
      `restore time ${JSON.stringify(time)} is not an ISO-8601 time with a zone, e.g. 2026-11-27T12:00:00Z`,
    );
  }
  return parsed;
}

/** Throws RestoreTimeOutOfRangeError, with the window, when `time` is outside it. */
export function assertRestorable(source: PointInTimeSource['window'], time: Date): void {
  const { earliestRestorableTime: earliest, latestRestorableTime: latest } = source;
  const tooEarly = earliest !== undefined && time.getTime() < Date.parse(earliest);
  // No latest restorable time at all: RDS answers that with PointInTimeRestoreNotEnabled.
  const tooLate = latest !== undefined && time.getTime() > Date.parse(latest);
  if (tooEarly || tooLate) {
    throw new RestoreTimeOutOfRangeError(
      `restore time ${time.toISOString()} is outside the restorable range of instance "${source.instanceId}": ` +
        `[${earliest ?? 'unknown'}, ${latest ?? 'unknown'}]`,
    );
  }
}

/** A field RDS always returns; its absence means the response is not what we think it is. */
function required<T>(value: T | undefined, field: string): T {
  if (value === undefined) throw new Error(`RDS response without ${field}`);
  return value;
}
