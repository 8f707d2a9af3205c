/**
 * The one place that reads the environment. Every variable is validated here, so a typo fails at
 * start-up with the variable's name and what it expects instead of deep inside a workflow.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';

import type { Duration } from '@temporalio/common';
import { msToNumber } from '@temporalio/common/lib/time';

import { CodecKeyRing, isKeyId, KEY_ID_RULE, KEY_RULE, parseKeyFile } from './codec/keys';
import {
  projectRoot,
  type AwsConfig,
  type ExportConfig,
  type ProviderConfig,
  type RecoverySettings,
} from '../activities/config-types';
import { DEFAULT_REPLICA_MAX_LAG_SECONDS } from '../activities/postgres/connect';
import { DEFAULT_VECTOR_INDEX_SETTINGS, type VectorIndexSettings } from '../activities/postgres/vector-index';
import type { RolloutHook } from '../activities/postgres/deploy';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from '../workflows/lib/identifiers';
import { MAINTENANCE_WINDOW_RULE, parseMaintenanceWindow } from '../workflows/lib/maintenance-window';
import {
  DEFAULT_FLEET_CONCURRENCY,
  FLEET_TAG_RULE,
  MAX_FLEET_CONCURRENCY,
  parseFleetTag,
} from '../workflows/fleet';
import { DEFAULT_RETENTION, type RetentionPolicy } from '../workflows/lib/retention-policy';

export interface TemporalConfig {
  address: string;
  namespace: string;
  taskQueue: string;
  /** Web UI port of the dev server `npm start` runs. */
  uiPort: number;
  /** TLS (mTLS with a client certificate) to a hardened or hosted Temporal; unset: plaintext. */
  tls?: TemporalTlsConfig;
  /** Payload encryption keys; unset: payloads are stored unencrypted. */
  codecKeys?: CodecKeyRing;
  /**
   * How long a stopping worker lets running activities finish (a Temporal duration) before it
   * cancels them; cancelled, they stop their SQL and release their locks.
   */
  shutdownGraceTime: string;
}

/** File paths only: the files are read when connecting, so no key material sits in the config. */
export interface TemporalTlsConfig {
  /** Client certificate and its private key (PEM), presented to the server (mTLS). */
  clientCertPair: { certPath: string; keyPath: string } | undefined;
  /** The CA the server certificate must chain to; unset: the system's trusted CAs. */
  caPath: string | undefined;
  /** The name the server certificate must carry when it differs from the address's host. */
  serverName: string | undefined;
}

/** `dbops codec-server`: decodes payloads for the Web UI and the CLI. */
export interface CodecServerConfig {
  host: string;
  port: number;
  /** Browser origins allowed to call it (CORS with credentials): the Web UI's. */
  allowedOrigins: string[];
  /** The bearer token every encode/decode request must carry; unset: the server refuses to start. */
  token: string | undefined;
}

/** The provider's part (activities use it) plus what only workers use. */
export interface Config extends ProviderConfig {
  temporal: TemporalConfig;
  /** The RDS (or local) instance the operations act on by default. */
  instanceId: string;
  operations: OperationsConfig;
  codecServer: CodecServerConfig;
  /** Rollout hooks a deploy may name, by name (DBOPS_ROLLOUT_HOOKS). */
  rolloutHooks: Record<string, RolloutHook>;
  /** How much memory a vector index build may take (DBOPS_INDEX_BUILD_MEMORY_SHARE, DBOPS_INSTANCE_MEMORY_MB). */
  vectorIndexes: VectorIndexSettings;
}

export interface OperationsConfig {
  /** RDS syntax, UTC (`sun:04:00-sun:05:00`): VACUUM FULL runs only inside it; weekly maintenance starts at its start. */
  maintenanceWindow: string;
  /** Minutes between scheduled health checks. */
  healthCheckIntervalMinutes: number;
  /** Minutes between scheduled orphan sweeps. */
  sweepIntervalMinutes: number;
  /** The snapshot retention policy and how often its schedule runs. */
  retention: RetentionSettings;
  /** The worker's Prometheus endpoint (`/metrics`). */
  metricsPort: number;
  /** Seconds between RPO heartbeats into each managed instance (workers/rpo-heartbeat.ts); undefined: off. */
  rpoHeartbeatSeconds: number | undefined;
  /** What the monthly DR test restores: the newest snapshot, or a random point in the restorable window. */
  drTestPointInTime: 'latest-snapshot' | 'random';
  /** The monthly DR test of a fleet (DBOPS_FLEET_DR_TEST); absent: no such schedule. */
  fleetDrTest?: FleetDrTestSettings;
  /** The recall measurement of the vector indexes (DBOPS_VECTOR_RECALL_INTERVAL_MINUTES); absent: no such schedule. */
  vectorRecall?: VectorRecallScheduleSettings;
}

/** The scheduled vectorRecall run on the configured instance. */
export interface VectorRecallScheduleSettings {
  intervalMinutes: number;
  /** Also measure queries filtered on this column (DBOPS_VECTOR_RECALL_FILTER_COLUMN). */
  filterColumn: string | undefined;
}

/** The monthly fleet DR test: every managed instance (`tag` undefined) or those tagged `key=value`. */
export interface FleetDrTestSettings {
  tag: string | undefined;
  /** DR tests running at once. */
  concurrency: number;
}

/** The policy `retention` applies by default (its schedule's and `dbops retention`'s), and its schedule. */
export interface RetentionSettings extends RetentionPolicy {
  /** Hours between scheduled retention runs over every instance. */
  intervalHours: number;
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

export function loadConfig(env: Env = process.env): Config {
  const provider = oneOf(env, 'DBOPS_PROVIDER', ['local', 'aws'] as const, 'local');
  const uiPort = port(env, 'DBOPS_UI_PORT', 8233);
  const tls = temporalTls(env);
  const codecKeys = codecKeyRing(env);
  return {
    temporal: {
      address: hostPort(env, 'TEMPORAL_ADDRESS', 'localhost:7233'),
      namespace: text(env, 'TEMPORAL_NAMESPACE', 'default'),
      taskQueue: text(env, 'DBOPS_TASK_QUEUE', 'dbops'),
      uiPort,
      shutdownGraceTime: positiveDuration(env, 'DBOPS_SHUTDOWN_GRACE', '5 minutes'),
      ...(tls === undefined ? {} : { tls }),
      ...(codecKeys === undefined ? {} : { codecKeys }),
    },
    provider,
    instanceId: rdsIdentifier(env, 'DBOPS_INSTANCE_ID', 'mcp-demo-prod'),
    database: {
      host: text(env, 'PGHOST', 'localhost'),
      port: port(env, 'PGPORT', 5432),
      database: text(env, 'PGDATABASE', 'mcp_db'),
      user: text(env, 'PGUSER', 'postgres'),
    },
    aws: provider === 'aws' ? loadAwsConfig(env) : undefined,
    stateDir: path.resolve(raw(env, 'DBOPS_STATE_DIR') ?? defaultStateDir()),
    localBackup: {
      maxRate: backupMaxRate(env, 'DBOPS_LOCAL_BACKUP_MAX_RATE'),
      checkpoint: oneOf(env, 'DBOPS_LOCAL_BACKUP_CHECKPOINT', ['fast', 'spread'] as const, 'fast'),
    },
    operations: {
      maintenanceWindow: maintenanceWindow(env, 'DBOPS_MAINTENANCE_WINDOW', 'sun:04:00-sun:05:00'),
      healthCheckIntervalMinutes: integer(env, 'DBOPS_HEALTH_CHECK_INTERVAL_MINUTES', 5, 1, 1440),
      sweepIntervalMinutes: integer(env, 'DBOPS_SWEEP_INTERVAL_MINUTES', 60, 1, 1440),
      retention: retentionSettings(env),
      metricsPort: port(env, 'DBOPS_METRICS_PORT', 9464),
      rpoHeartbeatSeconds: boolean(env, 'DBOPS_RPO_HEARTBEAT', true)
        ? integer(env, 'DBOPS_RPO_HEARTBEAT_SECONDS', 30, 1, 3600)
        : undefined,
      drTestPointInTime: oneOf(
        env,
        'DBOPS_DR_TEST_POINT_IN_TIME',
        ['latest-snapshot', 'random'] as const,
        'latest-snapshot',
      ),
      ...fleetDrTest(env),
      ...vectorRecallSchedule(env),
    },
    codecServer: {
      host: text(env, 'DBOPS_CODEC_SERVER_HOST', '127.0.0.1'),
      port: port(env, 'DBOPS_CODEC_SERVER_PORT', 8888),
      allowedOrigins: origins(env, 'DBOPS_CODEC_SERVER_ORIGINS', `http://localhost:${uiPort}`),
      token: codecServerToken(env, 'DBOPS_CODEC_SERVER_TOKEN'),
    },
    rolloutHooks: rolloutHooks(env, 'DBOPS_ROLLOUT_HOOKS'),
    vectorIndexes: vectorIndexSettings(env),
  };
}

/** Where the state goes when DBOPS_STATE_DIR is not set and the clone itself is out of the postgres user's reach. */
export const SHARED_STATE_ROOT = '/var/lib/dbops';

/**
 * The state directory unless DBOPS_STATE_DIR names one: `.dbops/state` in the clone when the
 * postgres user (who runs the local clusters) can pass through every directory above it; otherwise,
 * e.g. a clone in a home directory of mode 700, `/var/lib/dbops/<clone name>-<hash of its path>`,
 * one per clone.
 */
export function defaultStateDir(root: string = projectRoot): string {
  if (closedAncestor(root) === undefined) return path.join(root, '.dbops', 'state');
  const hash = createHash('sha256').update(root).digest('hex').slice(0, 8);
  return path.join(SHARED_STATE_ROOT, `${path.basename(root)}-${hash}`);
}

/**
 * Why the postgres user could not run clusters in `stateDir` (a message naming the directory in
 * the way and what to set), or undefined when it can.
 */
export function stateDirProblem(stateDir: string): string | undefined {
  const closed = closedAncestor(stateDir);
  if (closed === undefined) return undefined;
  return (
    `the state directory ${stateDir} is inside ${closed.dir} (mode ${closed.mode.toString(8)}), which the ` +
    `postgres user cannot pass through, so the local database cannot run there. Set DBOPS_STATE_DIR to a ` +
    `directory it can reach, e.g. DBOPS_STATE_DIR=${SHARED_STATE_ROOT}/state, or unset it`
  );
}

/** The first existing directory from `/` down to `dir` that others may not pass through (no o+x). */
function closedAncestor(dir: string): { dir: string; mode: number } | undefined {
  const resolved = path.resolve(dir);
  const chain: string[] = [];
  for (let at = resolved; ; at = path.dirname(at)) {
    chain.unshift(at);
    if (at === path.dirname(at)) break;
  }
  for (const at of chain) {
    const stats = statSync(at, { throwIfNoEntry: false });
    // Missing directories are created with mode 755.
    if (stats === undefined) return undefined;
    if ((stats.mode & 0o001) === 0) return { dir: at, mode: stats.mode & 0o777 };
  }
  return undefined;
}

const HOOKS_EXAMPLE = `{"web": {"command": ["kubectl", "set", "image", "deployment/web", "web=app:v2"]}, "ci": {"url": "https://ci.example/hook", "timeoutMs": 60000}}`;

/** JSON: hook name -> `{command: [file, ...args]}` or `{url}`, each with an optional `timeoutMs`. */
function rolloutHooks(env: Env, name: string): Record<string, RolloutHook> {
  const value = raw(env, name);
  if (value === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (error) {
    throw new ConfigError(name, `is not JSON (${(error as Error).message}); expected e.g. ${HOOKS_EXAMPLE}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(name, `expected an object of named hooks, e.g. ${HOOKS_EXAMPLE}`);
  }
  const hooks: Record<string, RolloutHook> = {};
  for (const [hook, spec] of Object.entries(parsed)) {
    const bad = (rule: string): never => {
      throw new ConfigError(name, `hook ${JSON.stringify(hook)}: ${rule}`);
    };
    if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(hook)) bad('a name is lowercase letters, digits and hyphens');
    if (typeof spec !== 'object' || spec === null || Array.isArray(spec))
      bad('expected {"command": [...]} or {"url": "..."}');
    const { command, url, timeoutMs, ...unknown } = spec as Record<string, unknown>;
    if (Object.keys(unknown).length > 0)
      bad(`unknown ${Object.keys(unknown).join(', ')}; expected command or url, and timeoutMs`);
    if ((command === undefined) === (url === undefined)) bad('give exactly one of command or url');
    if (
      timeoutMs !== undefined &&
      !(
        typeof timeoutMs === 'number' &&
        Number.isInteger(timeoutMs) &&
        timeoutMs >= 1000 &&
        timeoutMs <= 3_600_000
      )
    ) {
      bad(`timeoutMs ${JSON.stringify(timeoutMs)} is not a whole number of ms from 1000 to 3600000`);
    }
    const timeout = timeoutMs === undefined ? {} : { timeoutMs: timeoutMs as number };
    if (command !== undefined) {
      if (
        !Array.isArray(command) ||
        command.length === 0 ||
        !command.every((part) => typeof part === 'string' && part !== '')
      ) {
        bad('command is a non-empty array of non-empty strings: the program, then its arguments (no shell)');
      }
      hooks[hook] = { command: command as string[], ...timeout };
    } else {
      if (typeof url !== 'string' || !/^https?:\/\/[^\s/]+/.test(url)) bad('url is an http(s) URL');
      hooks[hook] = { url: url as string, ...timeout };
    }
  }
  return hooks;
}

const TLS_VARIABLES = [
  'TEMPORAL_TLS_CERT',
  'TEMPORAL_TLS_KEY',
  'TEMPORAL_TLS_CA',
  'TEMPORAL_TLS_SERVER_NAME',
];

/** TLS when any TLS variable is set; a client certificate needs both its certificate and its key. */
function temporalTls(env: Env): TemporalTlsConfig | undefined {
  if (TLS_VARIABLES.every((name) => raw(env, name) === undefined)) return undefined;
  const certPath = pemFile(env, 'TEMPORAL_TLS_CERT', 'CERTIFICATE');
  const keyPath = pemFile(env, 'TEMPORAL_TLS_KEY', 'PRIVATE KEY');
  if ((certPath === undefined) !== (keyPath === undefined)) {
    const [missing, set] =
      certPath === undefined
        ? ['TEMPORAL_TLS_CERT', 'TEMPORAL_TLS_KEY']
        : ['TEMPORAL_TLS_KEY', 'TEMPORAL_TLS_CERT'];
    throw new ConfigError(
      missing,
      `is not set but ${set} is; mTLS needs both the client certificate and its private key`,
    );
  }
  return {
    clientCertPair: certPath === undefined || keyPath === undefined ? undefined : { certPath, keyPath },
    caPath: pemFile(env, 'TEMPORAL_TLS_CA', 'CERTIFICATE'),
    serverName: raw(env, 'TEMPORAL_TLS_SERVER_NAME'),
  };
}

/** An absolute path to a readable PEM file holding a `label` block (contents are not kept). */
function pemFile(env: Env, name: string, label: string): string | undefined {
  const value = raw(env, name);
  if (value === undefined) return undefined;
  const file = path.resolve(value);
  let contents: string;
  try {
    contents = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(
      name,
      `${file} cannot be read: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  if (!new RegExp(`-----BEGIN [A-Z ]*${label}-----`).test(contents)) {
    throw new ConfigError(name, `${file} holds no PEM ${label.toLowerCase()}`);
  }
  return file;
}

/** From the key file (rotation: old keys kept), or one key from the environment; not both. */
function codecKeyRing(env: Env): CodecKeyRing | undefined {
  const file = raw(env, 'DBOPS_CODEC_KEYS_FILE');
  const key = raw(env, 'DBOPS_CODEC_KEY');
  const keyId = raw(env, 'DBOPS_CODEC_KEY_ID');
  if (file !== undefined) {
    const other =
      key !== undefined ? 'DBOPS_CODEC_KEY' : keyId !== undefined ? 'DBOPS_CODEC_KEY_ID' : undefined;
    if (other !== undefined) {
      throw new ConfigError(
        other,
        'is set together with DBOPS_CODEC_KEYS_FILE; configure the keys in one place',
      );
    }
    const resolved = path.resolve(file);
    let contents: string;
    try {
      contents = readFileSync(resolved, 'utf8');
    } catch (error) {
      throw new ConfigError(
        'DBOPS_CODEC_KEYS_FILE',
        `${resolved} cannot be read: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    try {
      return parseKeyFile(contents);
    } catch (error) {
      throw new ConfigError('DBOPS_CODEC_KEYS_FILE', `${resolved} ${(error as Error).message}`);
    }
  }
  if (key === undefined && keyId === undefined) return undefined;
  if (key === undefined) throw new ConfigError('DBOPS_CODEC_KEY', 'is not set but DBOPS_CODEC_KEY_ID is');
  if (keyId === undefined) throw new ConfigError('DBOPS_CODEC_KEY_ID', 'is not set but DBOPS_CODEC_KEY is');
  if (!isKeyId(keyId)) {
    throw new ConfigError('DBOPS_CODEC_KEY_ID', `is ${JSON.stringify(keyId)}; expected ${KEY_ID_RULE}`);
  }
  try {
    return new CodecKeyRing(keyId, { [keyId]: key });
  } catch {
    // The only thing left to be wrong is the key, and its value is never echoed.
    throw new ConfigError('DBOPS_CODEC_KEY', `is not ${KEY_RULE}`);
  }
}

/** Long enough not to be guessed; the value is never echoed. */
function codecServerToken(env: Env, name: string): string | undefined {
  const value = raw(env, name);
  if (value !== undefined && value.length < 32) {
    throw new ConfigError(name, 'is shorter than 32 characters (make one with: openssl rand -hex 32)');
  }
  return value;
}

/** Comma-separated `scheme://host[:port]` origins, as browsers send them in the Origin header. */
function origins(env: Env, name: string, fallback: string): string[] {
  const list = (raw(env, name) ?? fallback).split(',').map((origin) => origin.trim());
  const bad = list.find((origin) => !URL.canParse(origin) || new URL(origin).origin !== origin);
  if (bad !== undefined) {
    throw new ConfigError(
      name,
      `has ${JSON.stringify(bad)}; expected origins such as http://localhost:8233 (scheme, host, port; no path)`,
    );
  }
  return list;
}

function loadAwsConfig(env: Env): AwsConfig {
  const region = required(env, 'AWS_REGION', 'an AWS region such as us-east-1');
  const endpoint = url(env, 'DBOPS_AWS_ENDPOINT');
  const replicaHost = raw(env, 'DBOPS_DB_REPLICA_HOST');
  return {
    region,
    endpoint,
    rds: {
      subnetGroup: required(env, 'DBOPS_RDS_SUBNET_GROUP', 'the DB subnet group name for new instances'),
      securityGroupIds: securityGroups(env, 'DBOPS_RDS_SECURITY_GROUP_IDS'),
      multiAz: boolean(env, 'DBOPS_RDS_MULTI_AZ', true),
      parameterGroup: required(env, 'DBOPS_RDS_PARAMETER_GROUP', 'the DB parameter group name'),
      instanceClass: matching(
        env,
        'DBOPS_RDS_INSTANCE_CLASS',
        'db.r5.large',
        /^db\.[a-z0-9-]+\.[a-z0-9]+$/,
        'an instance class such as db.r5.large',
      ),
      engineVersion: matching(
        env,
        'DBOPS_RDS_ENGINE_VERSION',
        '15.7',
        /^15(\.\d+)?$/,
        'a PostgreSQL 15 version such as 15.7',
      ),
      allocatedStorageGb: integer(env, 'DBOPS_RDS_ALLOCATED_STORAGE_GB', 100, 20, 65536),
      tags: tags(env, 'DBOPS_RDS_TAGS'),
      drInstanceClass: matching(
        env,
        'DBOPS_RDS_DR_INSTANCE_CLASS',
        'db.t3.medium',
        /^db\.[a-z0-9-]+\.[a-z0-9]+$/,
        'an instance class such as db.t3.medium',
      ),
      recovery: recoverySettings(env),
    },
    exports: exportConfig(env),
    connection: {
      auth: oneOf(env, 'DBOPS_DB_AUTH', ['iam', 'password'] as const, 'iam'),
      caBundlePath: path.resolve(
        required(env, 'PGSSLROOTCERT', 'the path of the RDS CA bundle (TLS is required on aws)'),
      ),
      replica:
        replicaHost === undefined
          ? undefined
          : {
              host: replicaHost,
              port: port(env, 'DBOPS_DB_REPLICA_PORT', port(env, 'PGPORT', 5432)),
              maxLagSeconds: integer(
                env,
                'DBOPS_DB_REPLICA_MAX_LAG_SECONDS',
                DEFAULT_REPLICA_MAX_LAG_SECONDS,
                0,
                86_400,
              ),
            },
    },
  };
}

/** Production's settings for a real recovery; the defaults are the Terraform primary's. */
function recoverySettings(env: Env): RecoverySettings {
  const monitoringRoleArn = raw(env, 'DBOPS_RDS_MONITORING_ROLE_ARN');
  if (monitoringRoleArn !== undefined && !/^arn:aws[a-z-]*:iam::\d{12}:role\/\S+$/.test(monitoringRoleArn)) {
    throw new ConfigError(
      'DBOPS_RDS_MONITORING_ROLE_ARN',
      `is ${JSON.stringify(monitoringRoleArn)}; expected an IAM role ARN`,
    );
  }
  // Enhanced monitoring needs the role RDS publishes with: every 60 s with one, off without.
  const monitoringIntervalSeconds = Number(
    oneOf(
      env,
      'DBOPS_RDS_MONITORING_INTERVAL',
      ['0', '1', '5', '10', '15', '30', '60'] as const,
      monitoringRoleArn === undefined ? '0' : '60',
    ),
  );
  if (monitoringIntervalSeconds > 0 && monitoringRoleArn === undefined) {
    throw new ConfigError(
      'DBOPS_RDS_MONITORING_ROLE_ARN',
      'is not set; enhanced monitoring (DBOPS_RDS_MONITORING_INTERVAL) needs the role RDS publishes with',
    );
  }
  const retention = integer(env, 'DBOPS_RDS_PERFORMANCE_INSIGHTS_RETENTION_DAYS', 7, 7, 731);
  if (retention !== 7 && retention !== 731 && retention % 31 !== 0) {
    throw new ConfigError(
      'DBOPS_RDS_PERFORMANCE_INSIGHTS_RETENTION_DAYS',
      `is ${retention}; expected 7, a multiple of 31 or 731`,
    );
  }
  const logExports = text(env, 'DBOPS_RDS_LOG_EXPORTS', 'postgresql,upgrade')
    .split(',')
    .map((name) => name.trim());
  const badLog = logExports.find((name) => name !== 'postgresql' && name !== 'upgrade');
  if (badLog !== undefined) {
    throw new ConfigError(
      'DBOPS_RDS_LOG_EXPORTS',
      `has ${JSON.stringify(badLog)}; expected postgresql and/or upgrade, comma-separated`,
    );
  }
  return {
    backupRetentionDays: integer(env, 'DBOPS_RDS_BACKUP_RETENTION_DAYS', 30, 1, 35),
    monitoringIntervalSeconds,
    monitoringRoleArn,
    performanceInsightsKmsKeyId: raw(env, 'DBOPS_RDS_PERFORMANCE_INSIGHTS_KMS_KEY_ID'),
    performanceInsightsRetentionDays: retention,
    logExports,
    maxAllocatedStorageGb: integer(env, 'DBOPS_RDS_MAX_ALLOCATED_STORAGE_GB', 1000, 20, 65536),
    caCertificateIdentifier: matching(
      env,
      'DBOPS_RDS_CA_CERTIFICATE',
      'rds-ca-rsa2048-g1',
      /^rds-ca-[a-z0-9-]+$/,
      'an RDS CA identifier such as rds-ca-rsa2048-g1',
    ),
  };
}

const EXPORT_VARIABLES = ['DBOPS_EXPORT_BUCKET', 'DBOPS_EXPORT_IAM_ROLE_ARN', 'DBOPS_EXPORT_KMS_KEY_ID'];

/** All three or none: a half-configured export would only fail at the first backup. */
function exportConfig(env: Env): ExportConfig | undefined {
  const missing = EXPORT_VARIABLES.filter((name) => raw(env, name) === undefined);
  if (missing.length === EXPORT_VARIABLES.length) return undefined;
  if (missing.length > 0) {
    throw new ConfigError(missing[0]!, `is not set; exports need all of ${EXPORT_VARIABLES.join(', ')}`);
  }
  return {
    bucket: matching(
      env,
      'DBOPS_EXPORT_BUCKET',
      '',
      /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/,
      'an S3 bucket name',
    ),
    iamRoleArn: matching(
      env,
      'DBOPS_EXPORT_IAM_ROLE_ARN',
      '',
      /^arn:aws[a-z-]*:iam::\d{12}:role\/\S+$/,
      'an IAM role ARN',
    ),
    kmsKeyId: matching(env, 'DBOPS_EXPORT_KMS_KEY_ID', '', /^\S+$/, 'a KMS key ARN, id or alias'),
  };
}

function retentionSettings(env: Env): RetentionSettings {
  const defaults = DEFAULT_RETENTION;
  return {
    keepNewest: integer(env, 'DBOPS_RETENTION_KEEP_NEWEST', defaults.keepNewest, 1, 1000),
    keepDays: integer(env, 'DBOPS_RETENTION_KEEP_DAYS', defaults.keepDays, 0, 3650),
    includeForeign: boolean(env, 'DBOPS_RETENTION_INCLUDE_FOREIGN', defaults.includeForeign),
    includeAutomated: boolean(env, 'DBOPS_RETENTION_INCLUDE_AUTOMATED', defaults.includeAutomated),
    intervalHours: integer(env, 'DBOPS_RETENTION_INTERVAL_HOURS', 24, 1, 720),
  };
}

/** DBOPS_FLEET_DR_TEST: `all` or `key=value`; DBOPS_FLEET_CONCURRENCY: DR tests at once. */
function fleetDrTest(env: Env): { fleetDrTest?: FleetDrTestSettings } {
  const name = 'DBOPS_FLEET_DR_TEST';
  const value = raw(env, name);
  const concurrency = integer(
    env,
    'DBOPS_FLEET_CONCURRENCY',
    DEFAULT_FLEET_CONCURRENCY,
    1,
    MAX_FLEET_CONCURRENCY,
  );
  if (value === undefined) return {};
  if (value !== 'all' && parseFleetTag(value) === undefined) {
    throw new ConfigError(name, `is ${JSON.stringify(value)}; expected all or ${FLEET_TAG_RULE}`);
  }
  return { fleetDrTest: { tag: value === 'all' ? undefined : value, concurrency } };
}

/** A build's memory bound: a share of the instance's memory, given or taken as four times shared_buffers. */
function vectorIndexSettings(env: Env): VectorIndexSettings {
  const name = 'DBOPS_INDEX_BUILD_MEMORY_SHARE';
  const value = raw(env, name);
  const share = value === undefined ? DEFAULT_VECTOR_INDEX_SETTINGS.memoryShare : Number(value);
  if (!/^\d*\.?\d+$/.test(value ?? '0.25') || !(share > 0 && share <= 0.9)) {
    throw new ConfigError(
      name,
      `is ${JSON.stringify(value)}; expected a share of the instance's memory above 0 and at most 0.9`,
    );
  }
  const memoryMb = raw(env, 'DBOPS_INSTANCE_MEMORY_MB');
  return {
    memoryShare: share,
    ...(memoryMb === undefined
      ? {}
      : {
          instanceMemoryBytes:
            integer(env, 'DBOPS_INSTANCE_MEMORY_MB', 0, 256, 64 * 1024 * 1024) * 1024 * 1024,
        }),
  };
}

function vectorRecallSchedule(env: Env): { vectorRecall?: VectorRecallScheduleSettings } {
  if (raw(env, 'DBOPS_VECTOR_RECALL_INTERVAL_MINUTES') === undefined) return {};
  const filterColumn = raw(env, 'DBOPS_VECTOR_RECALL_FILTER_COLUMN');
  if (filterColumn !== undefined && !/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/.test(filterColumn)) {
    throw new ConfigError(
      'DBOPS_VECTOR_RECALL_FILTER_COLUMN',
      `is ${JSON.stringify(filterColumn)}; expected a column name`,
    );
  }
  return {
    vectorRecall: {
      intervalMinutes: integer(env, 'DBOPS_VECTOR_RECALL_INTERVAL_MINUTES', 60, 5, 10080),
      filterColumn,
    },
  };
}

function raw(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === '' ? undefined : value;
}

function text(env: Env, name: string, fallback: string): string {
  return raw(env, name) ?? fallback;
}

function required(env: Env, name: string, expected: string): string {
  const value = raw(env, name);
  if (value === undefined) throw new ConfigError(name, `is not set; expected ${expected}`);
  return value;
}

/**
 * A pg_basebackup `--max-rate`: kB/s, or MB/s with `M` (`k` may mark kB/s), from 32 kB/s to
 * 1024 MB/s as pg_basebackup accepts; unset: undefined. Checked here, so a typo stops the worker
 * at start instead of failing the next deploy's snapshot.
 */
function backupMaxRate(env: Env, name: string): string | undefined {
  const value = raw(env, name);
  if (value === undefined) return undefined;
  const match = /^(\d+)([kM]?)$/.exec(value);
  const kilobytes = match === null ? NaN : Number(match[1]) * (match[2] === 'M' ? 1024 : 1);
  if (!(kilobytes >= 32 && kilobytes <= 1024 * 1024)) {
    throw new ConfigError(
      name,
      `is ${JSON.stringify(value)}; expected a rate from 32k to 1024M, e.g. 50M (MB/s) or 500k (kB/s)`,
    );
  }
  return value;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const value = raw(env, name) ?? fallback;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new ConfigError(name, `is ${JSON.stringify(value)}; expected one of ${allowed.join(', ')}`);
  }
  return value as T;
}

function port(env: Env, name: string, fallback: number): number {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 65535) {
    throw new ConfigError(name, `is ${JSON.stringify(value)}; expected a port number from 1 to 65535`);
  }
  return n;
}

function hostPort(env: Env, name: string, fallback: string): string {
  const value = raw(env, name) ?? fallback;
  const match = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d+)$/.exec(value);
  const n = Number(match?.[2]);
  if (!match || n < 1 || n > 65535) {
    throw new ConfigError(name, `is ${JSON.stringify(value)}; expected host:port, e.g. localhost:7233`);
  }
  return value;
}

/** A duration as the Temporal SDK reads it ('5 minutes', '90s'), longer than zero. */
function positiveDuration(env: Env, name: string, fallback: string): string {
  const value = raw(env, name) ?? fallback;
  let ms: number;
  try {
    ms = msToNumber(value as Duration);
  } catch {
    ms = Number.NaN;
  }
  if (!(ms > 0)) {
    throw new ConfigError(
      name,
      `is ${JSON.stringify(value)}; expected a duration such as '5 minutes' or '90s'`,
    );
  }
  return value;
}

function url(env: Env, name: string): string | undefined {
  const value = raw(env, name);
  if (value === undefined) return undefined;
  if (!URL.canParse(value) || !/^https?:$/.test(new URL(value).protocol)) {
    throw new ConfigError(name, `is ${JSON.stringify(value)}; expected an http(s) URL`);
  }
  return value;
}

function rdsIdentifier(env: Env, name: string, fallback: string): string {
  const value = raw(env, name) ?? fallback;
  if (!isRdsIdentifier(value)) {
    throw new ConfigError(
      name,
      `is ${JSON.stringify(value)}; expected an RDS identifier: ${RDS_IDENTIFIER_RULE}`,
    );
  }
  return value;
}

function maintenanceWindow(env: Env, name: string, fallback: string): string {
  const value = raw(env, name) ?? fallback;
  const window = parseMaintenanceWindow(value);
  if (window === undefined) {
    throw new ConfigError(name, `is ${JSON.stringify(value)}; expected ${MAINTENANCE_WINDOW_RULE}`);
  }
  return window.text;
}

function matching(env: Env, name: string, fallback: string, rule: RegExp, expected: string): string {
  const value = raw(env, name) ?? fallback;
  if (!rule.test(value)) throw new ConfigError(name, `is ${JSON.stringify(value)}; expected ${expected}`);
  return value;
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  return oneOf(env, name, ['true', 'false'] as const, fallback ? 'true' : 'false') === 'true';
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) {
    throw new ConfigError(name, `is ${JSON.stringify(value)}; expected a whole number from ${min} to ${max}`);
  }
  return n;
}

function securityGroups(env: Env, name: string): string[] {
  const ids = required(env, name, 'comma-separated security group ids such as sg-0123abcd')
    .split(',')
    .map((id) => id.trim());
  const bad = ids.find((id) => !/^sg-[0-9a-f]{8,17}$/.test(id));
  if (bad !== undefined) {
    throw new ConfigError(
      name,
      `has ${JSON.stringify(bad)}; expected security group ids such as sg-0123abcd`,
    );
  }
  return ids;
}

/** `Key=Value,Key=Value` (the AWS CLI's shorthand), keys and values as RDS allows them. */
function tags(env: Env, name: string): Record<string, string> {
  const value = raw(env, name);
  if (value === undefined) return {};
  const result: Record<string, string> = {};
  for (const pair of value.split(',')) {
    const match = /^\s*([\p{L}\p{N}\s_.:/+@-]{1,128}?)\s*=\s*([\p{L}\p{N}\s_.:/=+@-]{0,256}?)\s*$/u.exec(
      pair,
    );
    if (!match || match[1]!.startsWith('aws:')) {
      throw new ConfigError(
        name,
        `has ${JSON.stringify(pair)}; expected Key=Value pairs separated by commas (keys not starting with aws:)`,
      );
    }
    result[match[1]!] = match[2]!;
  }
  return result;
}
