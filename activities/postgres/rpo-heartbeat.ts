/**
 * The RPO heartbeat table, `dbops.rpo_heartbeat`: one row whose `written_at` the worker sets to
 * the server's time every few seconds (workers/rpo-heartbeat.ts). A copy restored to a point in
 * time holds the last heartbeat committed before that point, so the gap between the two says how
 * close to the point the copy's data reaches: the measured RPO of a point-in-time DR test
 * (rpo-measure.ts). The worker's role creates the table itself (it may create the dbops schema,
 * see worker-role.sql), so nothing is needed on an instance beyond the role's set-up.
 */
import type { Client } from 'pg';

export const HEARTBEAT_TABLE = 'dbops.rpo_heartbeat';

/** The writer's sessions carry this name, so an operator (or a test) can tell them apart. */
export const HEARTBEAT_APPLICATION_NAME = 'dbops-rpo-heartbeat';

/**
 * Prepares a writer's session: names it, bounds its statements, creates the table on first use
 * (concurrent first writers queue on a transaction lock instead of racing on the catalog).
 * Refuses a standby (a read replica): it cannot be written, and gets its primary's heartbeats.
 */
export async function prepareHeartbeatSession(client: Client): Promise<void> {
  await client.query(
    `SET application_name = '${HEARTBEAT_APPLICATION_NAME}'; SET statement_timeout = '10s'; SET lock_timeout = '5s'`,
  );
  const { rows } = await client.query<{ standby: boolean; exists: boolean }>(
    `SELECT pg_is_in_recovery() AS standby, to_regclass($1) IS NOT NULL AS exists`,
    [HEARTBEAT_TABLE],
  );
  if (rows[0]!.standby) throw new Error('it is a standby (read-only): its primary carries the heartbeat');
  if (rows[0]!.exists) return;
  // Several statements in one simple query run as one implicit transaction.
  await client.query(`SELECT pg_advisory_xact_lock(hashtext('${HEARTBEAT_TABLE}'));
CREATE SCHEMA IF NOT EXISTS dbops;
CREATE TABLE IF NOT EXISTS ${HEARTBEAT_TABLE} (
  id boolean PRIMARY KEY DEFAULT true CHECK (id),
  written_at timestamptz NOT NULL
);
COMMENT ON TABLE ${HEARTBEAT_TABLE} IS 'dbops: the worker''s heartbeat, written every few seconds; a restored copy''s value measures its RPO'`);
}

/** Sets the heartbeat to the server's time (never back: another worker may have written later). */
export async function writeHeartbeat(client: Client): Promise<void> {
  await client.query(
    `INSERT INTO ${HEARTBEAT_TABLE} AS h (id, written_at) VALUES (true, now())
     ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at WHERE h.written_at < excluded.written_at`,
  );
}

/** The newest heartbeat (ISO), or null when the instance has none (no table, or no row). */
export async function newestHeartbeat(client: Client): Promise<string | null> {
  const { rows } = await client.query<{ exists: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS exists`, [
    HEARTBEAT_TABLE,
  ]);
  if (!rows[0]!.exists) return null;
  const newest = await client.query<{ written_at: Date | null }>(
    `SELECT max(written_at) AS written_at FROM ${HEARTBEAT_TABLE}`,
  );
  return newest.rows[0]!.written_at?.toISOString() ?? null;
}
