/**
 * Busy sessions: other client sessions of this database that are running a statement or ended one
 * within the last second; the worker's own sessions (application_name dbops...) are left out. Not
 * a throttle: while any session is busy, a self-tuned backfill aims its batches at the shorter
 * contended target (backfill.ts), so the rows one batch holds locked, and how long the
 * application's statements may wait for them, stay small. On an otherwise quiet database batches
 * keep the full target and its throughput.
 */
import type { Client } from 'pg';

/** How recently a session's statement must have ended for it to count as busy. */
const RECENT = '1 second';

export async function readBusySessions(client: Client): Promise<number> {
  const { rows } = await client.query<{ busy: number }>(
    `SELECT count(*)::int AS busy FROM pg_stat_activity
      WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname = current_database()
        AND application_name NOT LIKE 'dbops%'
        AND (state <> 'idle' OR state_change > clock_timestamp() - interval '${RECENT}')`,
  );
  return rows[0]!.busy;
}
