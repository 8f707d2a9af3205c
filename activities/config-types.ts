/**
 * The configuration's shapes that activities need, and the project root. They live here, below
 * workers/, because activities import nothing from workers/: workers/config.ts reads and validates
 * the environment into these types (and adds what only workers use, such as Temporal's settings).
 */
import path from 'node:path';

/** Project root: this file lives in <root>/activities. */
export const projectRoot = path.resolve(__dirname, '..');

export type Provider = 'local' | 'aws';

/** Which provider runs the database and how to reach it: the part of the config activities use. */
export interface ProviderConfig {
  provider: Provider;
  database: DatabaseConfig;
  aws: AwsConfig | undefined;
  /** Where the local provider keeps clusters, snapshots and exports. */
  stateDir: string;
  /** How the local provider takes its snapshots; unset: its defaults. */
  localBackup?: LocalBackupSettings;
}

/** The local provider's snapshot settings (DBOPS_LOCAL_BACKUP_MAX_RATE, DBOPS_LOCAL_BACKUP_CHECKPOINT). */
export interface LocalBackupSettings {
  /** pg_basebackup `--max-rate` of every snapshot, e.g. `50M`; unset: pre-migration snapshots only, at 100M. */
  maxRate: string | undefined;
  /** The checkpoint a snapshot starts with: `fast` (at once) or `spread` (paced, up to minutes). */
  checkpoint: 'fast' | 'spread';
}

/** Where the application database lives. No password here: it comes from `.pgpass` or PGPASSWORD. */
export interface DatabaseConfig {
  host: string;
  port: number;
  database: string;
  user: string;
}

export interface AwsConfig {
  region: string;
  /** Custom endpoint (a local AWS API peer); unset in production. */
  endpoint: string | undefined;
  rds: RdsConfig;
  /** Unset: exports are refused with a message naming the missing variables. */
  exports: ExportConfig | undefined;
  connection: AwsConnectionConfig;
}

/** What every instance dbops creates or restores gets; RDS would fall back to defaults otherwise. */
export interface RdsConfig {
  subnetGroup: string;
  securityGroupIds: string[];
  multiAz: boolean;
  parameterGroup: string;
  instanceClass: string;
  /** Only for `createInstance`: restores take them from the snapshot. */
  engineVersion: string;
  allocatedStorageGb: number;
  tags: Record<string, string>;
  /** The class of DR test copies: a copy only has to prove the backup restores (db.t3.medium by default). */
  drInstanceClass: string;
  /** What a real recovery (a restore meant to replace production) gets on top of the placement. */
  recovery: RecoverySettings;
}

/** Production's settings, for an instance restored to take its place (the Terraform primary's). */
export interface RecoverySettings {
  backupRetentionDays: number;
  /** Enhanced monitoring: seconds between samples (0: off) and the role RDS publishes them with. */
  monitoringIntervalSeconds: number;
  monitoringRoleArn: string | undefined;
  /** Unset: the account's default key for Performance Insights. */
  performanceInsightsKmsKeyId: string | undefined;
  performanceInsightsRetentionDays: number;
  logExports: string[];
  /** The storage autoscaling limit. */
  maxAllocatedStorageGb: number;
  caCertificateIdentifier: string;
}

export interface ExportConfig {
  /** The bucket backups export to by default. */
  bucket: string;
  /** The role RDS assumes to write to the bucket. */
  iamRoleArn: string;
  /** The KMS key RDS encrypts the exported files with. */
  kmsKeyId: string;
}

export interface AwsConnectionConfig {
  /** `iam`: a 15-minute token per connection; `password`: `.pgpass` or PGPASSWORD. */
  auth: 'iam' | 'password';
  /** The CA bundle the server certificate must chain to (TLS is always required on aws). */
  caBundlePath: string;
  /**
   * Read-only activities go here when set (the read/write split), and to the primary while the
   * replica's replay lag is above `maxLagSeconds`.
   */
  replica: { host: string; port: number; maxLagSeconds: number } | undefined;
}
