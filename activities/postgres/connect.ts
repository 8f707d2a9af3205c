import { readFile } from 'node:fs/promises';

import { Signer, type SignerConfig } from '@aws-sdk/rds-signer';
import { Client, type ClientConfig } from 'pg';

import { workerCredentials } from '../aws-credentials';
import type { DatabaseConfig, ProviderConfig } from '../config-types';
import { TransientError } from '../../workflows/lib/errors';

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
  /**
   * Read-only work: on the read replica when one is configured and its lag is within the bound,
   * else on the primary; `session.route` says which and why.
   */
  withReadOnly<T>(fn: (session: ReadSession) => Promise<T>): Promise<T>;
  /** Another instance (e.g. a restored DR instance), with the same authentication and TLS rules. */
  withEndpoint<T>(endpoint: DatabaseConfig, fn: (client: Client) => Promise<T>): Promise<T>;
}

/** Where read-only work ran, and why there: it goes into results and logs. */
export interface ReadRoute {
  server: 'replica' | 'primary';
  reason: string;
  /** The replica's replay lag as measured on it (0: it has replayed all it received while streaming); null when not measured. */
  replicaLagSeconds: number | null;
}

/** A read-only connection and where it goes; `sameServer` opens another one there (e.g. to cancel). */
export interface ReadSession {
  client: Client;
  route: ReadRoute;
  sameServer: <T>(fn: (client: Client) => Promise<T>) => Promise<T>;
}

/**
 * Replica lag above which reads go to the primary. An idle RDS PostgreSQL source writes WAL only
 * every five minutes, so a lag read from replay timestamps reaches 300 s with nothing behind.
 */
export const DEFAULT_REPLICA_MAX_LAG_SECONDS = 300;

export interface ConnectorOptions {
  primary: DatabaseConfig;
  /** The read replica: host and port of the primary's database and user; `maxLagSeconds` defaults to 300. */
  replica?: { host: string; port: number; maxLagSeconds?: number | undefined } | undefined;
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
  const onPrimary = <T>(fn: (session: ReadSession) => Promise<T>, reason: string, lag: number | null) =>
    connect(options.primary, (client) =>
      fn({
        client,
        route: { server: 'primary', reason, replicaLagSeconds: lag },
        sameServer: (other) => connect(options.primary, other),
      }),
    );
  const replica = options.replica;
  return {
    withPrimary: (fn) => connect(options.primary, fn),
    withReadOnly: async <T>(fn: (session: ReadSession) => Promise<T>): Promise<T> => {
      if (replica === undefined) return onPrimary(fn, 'no read replica is configured', null);
      const endpoint = { ...options.primary, host: replica.host, port: replica.port };
      const bound = replica.maxLagSeconds ?? DEFAULT_REPLICA_MAX_LAG_SECONDS;
      // Measured on the replica's own connection: within the bound, the work runs on it at once.
      let fallback: { reason: string; lag: number | null } | undefined;
      let started = false;
      let result: { value: T } | undefined;
      try {
        await connect(endpoint, async (client) => {
          const { standby, lag } = await replicaLag(client);
          if (!standby) {
            fallback = { reason: 'the replica is not in recovery (promoted?)', lag: null };
          } else if (lag === null || lag > bound) {
            const measured = lag === null ? 'unknown (nothing replayed yet)' : `${lag.toFixed(1)} s`;
            fallback = { reason: `replica lag ${measured} is above the bound of ${bound} s`, lag };
          } else {
            const route: ReadRoute = {
              server: 'replica',
              reason: `replica lag ${lag.toFixed(1)} s is within the bound of ${bound} s`,
              replicaLagSeconds: lag,
            };
            started = true;
            result = { value: await fn({ client, route, sameServer: (other) => connect(endpoint, other) }) };
          }
        });
      } catch (error) {
        // The work itself failed on the replica: that is its failure, not a reason to run it twice.
        if (started || fallback !== undefined || !(error instanceof DatabaseConnectionError)) {
          throw error;
        }
        fallback = { reason: `the replica cannot be reached (${error.message})`, lag: null };
      }
      if (result !== undefined) return result.value;
      return onPrimary(fn, fallback!.reason, fallback!.lag);
    },
    withEndpoint: (endpoint, fn) => connect(endpoint, fn),
  };
}

/**
 * How far the replica's replay is behind: 0 while it streams and has replayed everything received
 * (an idle primary sends nothing to replay), else the age of the last transaction it replayed.
 */
async function replicaLag(client: Client): Promise<{ standby: boolean; lag: number | null }> {
  const { rows } = await client.query<{ standby: boolean; lag: number | null }>(
    `SELECT pg_is_in_recovery() AS standby,
            CASE WHEN EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming')
                      AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                 ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END::float8 AS lag`,
  );
  return rows[0]!;
}

/** The connector of the configured provider: IAM tokens (or `.pgpass`) over verified TLS on aws. */
export function connectorFromConfig(config: Pick<ProviderConfig, 'database' | 'aws'>): DatabaseConnector {
  const aws = config.aws;
  if (aws === undefined) return createDatabaseConnector({ primary: config.database });
  return createDatabaseConnector({
    primary: config.database,
    replica: aws.connection.replica,
    caBundlePath: aws.connection.caBundlePath,
    // The worker's one credentials provider: a token per connection, not a credentials lookup per connection.
    iam: aws.connection.auth === 'iam' ? { region: aws.region, credentials: workerCredentials() } : undefined,
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

const CONNECT_TIMEOUT_MS = 10_000;

function baseClientConfig(db: DatabaseConfig): ClientConfig {
  return {
    host: db.host,
    port: db.port,
    database: db.database,
    user: db.user,
    application_name: 'dbops',
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
  };
}

async function readCaBundle(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new Error(`the CA bundle ${file} (PGSSLROOTCERT) cannot be read: ${(error as Error).message}`);
  }
}

/**
 * The database connection was lost or could not be made for a reason that passes (a session
 * terminated by an administrator, a failover, a server restarting after a crash, the network):
 * only this attempt fails, and Temporal retries it on a fresh connection.
 */
export class DatabaseConnectionError extends TransientError {}

/** How long closing a connection may take before its socket is destroyed (a peer that went silent). */
const CLOSE_TIMEOUT_MS = 5_000;

/**
 * Connects, runs `fn`, always closes. The `error` listener keeps a dropped connection from
 * becoming an unhandled `error` event (which ends the whole worker process): the pending query
 * is rejected, a later one fails at once, and the attempt fails with a DatabaseConnectionError
 * naming what happened. The broken client is discarded, never reused.
 */
async function runOnClient<T>(config: ClientConfig, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client(config);
  const where = `${config.host}:${config.port}/${config.database}`;
  let lost: Error | undefined;
  client.on('error', (error) => {
    lost ??= error;
  });
  try {
    await client.connect();
  } catch (error) {
    await close(client);
    const reason = connectionFailure(error);
    if (reason === undefined) throw error;
    throw new DatabaseConnectionError(`could not connect to the database at ${where}: ${reason}`);
  }
  try {
    return await fn(client);
  } catch (error) {
    let reason = connectionFailure(error);
    // A query after the loss only says the client is not queryable: the loss itself says why
    // (an `error` event on a connected client always means its connection is gone).
    if (lost !== undefined && /not queryable/.test((error as Error).message)) {
      reason = connectionFailure(lost) ?? `the connection failed (${lost.message})`;
    }
    if (reason === undefined) throw error;
    throw new DatabaseConnectionError(`the database connection to ${where} was closed: ${reason}`);
  } finally {
    await close(client);
  }
}

/** Ends the session; a connection that does not close in time is cut (its socket destroyed). */
async function close(client: Client): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), CLOSE_TIMEOUT_MS);
  });
  try {
    const outcome = await Promise.race([client.end().catch(() => undefined), timedOut]);
    if (outcome === 'timeout') client.connection.stream.destroy();
  } finally {
    clearTimeout(timer);
  }
}

/** SQLSTATEs with which the server ends a session (class 57P) or a connection fails (class 08). */
const SERVER_REASONS: Record<string, string> = {
  '57P01': 'terminated by an administrator (pg_terminate_backend) or a server shutdown',
  '57P02': 'the server restarted after another server process crashed',
  '57P03': 'the server is starting up or shutting down',
  '57P05': 'closed by the server after idle_session_timeout',
};

/** Network errors of a connection that dropped or cannot be made. */
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/**
 * Why the connection failed, when `error` says it was lost or refused (a passing condition), else
 * undefined: SQL errors, authentication failures and our own errors are no connection failures.
 */
export function connectionFailure(error: unknown): string | undefined {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  const text = typeof message === 'string' ? message : String(error);
  if (typeof code === 'string') {
    const reason = SERVER_REASONS[code] ?? (code.startsWith('08') ? 'connection failure' : undefined);
    if (reason !== undefined) return `${reason} (SQLSTATE ${code}: ${text})`;
    if (NETWORK_CODES.has(code)) return `network error (${text})`;
  }
  if (/^Connection terminated due to connection timeout/.test(text)) {
    return `no answer within ${CONNECT_TIMEOUT_MS / 1000} s (${text})`;
  }
  if (/^Connection terminated unexpectedly/.test(text)) {
    return `the server closed the connection unexpectedly: a crash, restart or network failure (${text})`;
  }
  return undefined;
}
