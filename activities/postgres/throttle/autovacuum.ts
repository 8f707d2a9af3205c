/**
 * Autovacuum on the table: an autovacuum worker is vacuuming the backfill's table. Watched only
 * when `waitForAutovacuum` is set; then any such worker is over the threshold (0).
 */
import { DEFAULT_THRESHOLDS, reading, type HealthIndicator } from './indicator';

export const autovacuum: HealthIndicator = {
  name: 'autovacuum on the table',
  async read({ client, table, limits }) {
    if (!(limits.waitForAutovacuum ?? DEFAULT_THRESHOLDS.waitForAutovacuum)) return undefined;
    const { rows } = await client.query<{ workers: number }>(
      `SELECT count(*)::int AS workers FROM pg_stat_progress_vacuum v JOIN pg_stat_activity a USING (pid)
        WHERE a.backend_type = 'autovacuum worker' AND v.relid = to_regclass($1)`,
      [table],
    );
    return reading('autovacuum on the table', rows[0]!.workers, 0, 'workers');
  },
};
