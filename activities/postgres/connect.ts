import { readFile } from 'node:fs/promises';

import { Signer, type SignerConfig } from '@aws-sdk/rds-signer';
import { Client, type ClientConfig } from 'pg';

import type { DatabaseConfig, ProviderConfig } from '../config-types';

/**
 * Runs `fn` on a fresh connection and always closes it. The password is never passed in: `pg`
 * reads PGPASSWORD or `~/.pgpass` itself, so no secret travels through workflow inputs.
 */
export async function withClient<T>(db: DatabaseConfig, fn: (client: Client) => Promise<T>): Promise<T> {
  return runOnClient(baseClientConfig(db), fn);
}

/**
 * How activities reach the database (a dependency they receive, so tests pass a throwaway
 * cluster). Every connection is fresh and closed afterwards; credentials are fetched when
 * connecting and never leave this module.
 */
export interface DatabaseConnector {
  /** Read-write work, on the primary. */
  withPrimary<T>(fn: (client: Client) => Promise<T>): Promise<T>;
  /** Read-only work: on the read replica when one is configured (the read/write split), else the primary. */
  withReadOnly<T>(fn: (client: Client) => Promise<T>): Promise<T>;
  /** Another instance (e.g. a restored DR instance), with the same authentication and TLS rules. */
  withEndpoint<T>(endpoint: DatabaseConfig, fn: (client: Client) => Promise<T>): Promise<T>;
}

export interface ConnectorOptions {
  primary: DatabaseConfig;
  replica?: { host: string; port: number } | undefined;
  /** TLS required, the server certificate checked against this CA bundle. Unset: no TLS (local clusters). */
  caBundlePath?: string | undefined;
  /** IAM database authentication. Unset: the password comes from `.pgpass` or PGPASSWORD. */
  iam?: { region: string; credentials?: SignerConfig['credentials'] } | undefined;
  /** Refuse to build a connector without a CA bundle (the aws provider: never a plaintext connection). */
  requireTls?: boolean | undefined;
}

export function createDatabaseConnector(options: ConnectorOptions): DatabaseConnector {
  if (options.caBundlePath === undefined && (options.requireTls || options.iam !== undefined)) {
    throw new Error(
      options.iam !== undefined
        ? 'IAM database authentication needs TLS: an auth token is a password and is only sent over verified TLS (set PGSSLROOTCERT to the CA bundle)'
        : 'database connections must use TLS here, and no CA bundle is configured (set PGSSLROOTCERT to the CA bundle)',
    );
  }
  const connect = async <T>(endpoint: DatabaseConfig, fn: (client: Client) => Promise<T>): Promise<T> => {
    const config: ClientConfig = baseClientConfig(endpoint);
    if (options.caBundlePath !== undefined) {
      // With `ssl` set, pg insists on TLS: a server that declines it fails the connection before
      // anything else is sent (no plaintext fallback, whatever PGSSLMODE says).
      config.ssl = { rejectUnauthorized: true, ca: await readCaBundle(options.caBundlePath) };
    }
    const iam = options.iam;
    if (iam !== undefined) {
      // pg calls this when the server asks for the password: a fresh 15-minute token per connection,
      // held by the connection only (never logged, never returned).
      config.password = () => iamAuthToken(endpoint, iam);
    }
    return runOnClient(config, fn);
  };
  const replica = options.replica;
  return {
    withPrimary: (fn) => connect(options.primary, fn),
    withReadOnly: (fn) =>
      connect(replica === undefined ? options.primary : { ...options.primary, ...replica }, fn),
    withEndpoint: (endpoint, fn) => connect(endpoint, fn),
  };
}

/** The connector of the configured provider: IAM tokens (or `.pgpass`) over verified TLS on aws. */
export function connectorFromConfig(config: Pick<ProviderConfig, 'database' | 'aws'>): DatabaseConnector {
  const aws = config.aws;
  if (aws === undefined) return createDatabaseConnector({ primary: config.database });
  return createDatabaseConnector({
    primary: config.database,
    replica: aws.connection.replica,
    caBundlePath: aws.connection.caBundlePath,
    iam: aws.connection.auth === 'iam' ? { region: aws.region } : undefined,
    requireTls: true,
  });
}

/** An RDS IAM auth token: a SigV4-presigned `host:port/?Action=connect&DBUser=...` valid 900 s. */
export function iamAuthToken(
  endpoint: Pick<DatabaseConfig, 'host' | 'port' | 'user'>,
  iam: NonNullable<ConnectorOptions['iam']>,
): Promise<string> {
  return new Signer({
    hostname: endpoint.host,
    port: endpoint.port,
    username: endpoint.user,
    region: iam.region,
    ...(iam.credentials === undefined ? {} : { credentials: iam.credentials }),
  }).getAuthToken();
}

function baseClientConfig(db: DatabaseConfig): ClientConfig {
  return {
    host: db.host,
    port: db.port,
    database: db.database,
    user: db.user,
    application_name: 'dbops',
    connectionTimeoutMillis: 10_000,
  };
}

async function readCaBundle(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new Error(`the CA bundle ${file} (PGSSLROOTCERT) cannot be read: ${(error as Error).message}`);
  }
}

async function runOnClient<T>(config: ClientConfig, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client(config);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
