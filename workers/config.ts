/**
 * The one place that reads the environment. Every variable is validated here, so a typo fails at
 * start-up with the variable's name and what it expects instead of deep inside a workflow.
 */
import path from 'node:path';

import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from '../workflows/lib/identifiers';

export type Provider = 'local' | 'aws';

export interface TemporalConfig {
  address: string;
  namespace: string;
  taskQueue: string;
  /** Web UI port of the dev server `npm start` runs. */
  uiPort: number;
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
}

export interface Config {
  temporal: TemporalConfig;
  provider: Provider;
  /** The RDS (or local) instance the operations act on by default. */
  instanceId: string;
  database: DatabaseConfig;
  aws: AwsConfig | undefined;
  /** Where the local provider keeps clusters, snapshots and exports. */
  stateDir: string;
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

/** Project root: this file lives in <root>/workers. */
export const projectRoot = path.resolve(__dirname, '..');

export function loadConfig(env: Env = process.env): Config {
  const provider = oneOf(env, 'DBOPS_PROVIDER', ['local', 'aws'] as const, 'local');
  return {
    temporal: {
      address: hostPort(env, 'TEMPORAL_ADDRESS', 'localhost:7233'),
      namespace: text(env, 'TEMPORAL_NAMESPACE', 'default'),
      taskQueue: text(env, 'DBOPS_TASK_QUEUE', 'dbops'),
      uiPort: port(env, 'DBOPS_UI_PORT', 8233),
    },
    provider,
    instanceId: rdsIdentifier(env, 'DBOPS_INSTANCE_ID', 'mcp-demo-prod'),
    database: {
      host: text(env, 'PGHOST', 'localhost'),
      port: port(env, 'PGPORT', 5432),
      database: text(env, 'PGDATABASE', 'mcp_db'),
      user: text(env, 'PGUSER', 'postgres'),
    },
    aws:
      provider === 'aws'
        ? {
            region: required(env, 'AWS_REGION', 'an AWS region such as us-east-1'),
            endpoint: url(env, 'DBOPS_AWS_ENDPOINT'),
          }
        : undefined,
    stateDir: path.resolve(text(env, 'DBOPS_STATE_DIR', path.join(projectRoot, '.dbops', 'state'))),
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
