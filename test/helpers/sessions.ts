/**
 * Dropping dbops's database sessions where the database shows them, for the connection-drop
 * tests: wait until pg_stat_activity shows a dbops backend doing a given thing, terminate it (as
 * a DBA, a failover or a crashed backend does), or restart its cluster at once (what the
 * postmaster does after a backend crashes). Placement is by what the server reports, never by
 * timing.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { Client } from 'pg';

import type { DatabaseConfig } from '../../activities/config-types';
import { makePostgresDir, runPgBinary } from '../../activities/postgres/cluster';

/** Our own sessions carry this name, so they are never mistaken for dbops's ('dbops'). */
const TEST_APPLICATION = 'dbops-test';
const POLL_MS = 20;

/** A session of the test itself; one the test kills (a restart) fails its next query, not the process. */
export async function testSession(endpoint: DatabaseConfig): Promise<Client> {
  const client = new Client({ ...endpoint, application_name: TEST_APPLICATION });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** The server pid of a session. */
export async function backendPid(client: Client): Promise<number> {
  return (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
}

export interface WaitOptions {
  /** Backends already dealt with (earlier rounds): only a new one counts. */
  exclude?: Iterable<number>;
  /** Checked on every poll: a reason to stop waiting (the run ended, the worker died). */
  stop?: () => Promise<string | undefined> | string | undefined;
  timeoutMs?: number;
}

/**
 * Waits until a dbops backend (application_name 'dbops') matches `where`, an SQL condition on
 * pg_stat_activity's columns, and returns its pid.
 */
export async function waitForDbopsBackend(
  monitor: Client,
  what: string,
  where: string,
  options: WaitOptions = {},
): Promise<number> {
  const exclude = [...(options.exclude ?? [])];
  const deadline = Date.now() + (options.timeoutMs ?? 120_000);
  for (;;) {
    const { rows } = await monitor.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity
        WHERE application_name = 'dbops' AND pid <> ALL($1::int[]) AND (${where})
        ORDER BY backend_start LIMIT 1`,
      [exclude],
    );
    if (rows[0] !== undefined) return rows[0].pid;
    const stopped = await options.stop?.();
    if (stopped !== undefined || Date.now() > deadline) {
      const { rows: seen } = await monitor.query<{ pid: number; state: string; query: string }>(
        `SELECT pid, state, left(query, 120) AS query FROM pg_stat_activity WHERE application_name = 'dbops'`,
      );
      throw new Error(
        `no dbops backend ${what} (${stopped ?? 'timed out'}); dbops backends now: ${JSON.stringify(seen)}`,
      );
    }
    await sleep(POLL_MS);
  }
}

/** pg_terminate_backend, as a DBA runs it; true when it hit a live backend. */
export async function terminateBackend(monitor: Client, pid: number): Promise<boolean> {
  const { rows } = await monitor.query<{ hit: boolean }>('SELECT pg_terminate_backend($1) AS hit', [pid]);
  return rows[0]!.hit;
}

/**
 * `pg_ctl restart -m immediate` as the postgres user: every session ends at once, the server runs
 * crash recovery and accepts connections again when this returns.
 */
export async function restartImmediately(dataDir: string, logDir: string): Promise<void> {
  await makePostgresDir(logDir);
  await runPgBinary('pg_ctl', [
    ...['restart', '--pgdata', dataDir, '--mode', 'immediate', '--wait', '--timeout', '60'],
    ...['--log', path.join(logDir, 'restarted.log')],
  ]);
}
