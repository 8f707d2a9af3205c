/** Active sessions: other client sessions running a query now (this one left out). */
import { DEFAULT_THRESHOLDS, reading, type HealthIndicator } from './indicator';

export const activeSessions: HealthIndicator = {
  name: 'active sessions',
  async read({ client, limits }) {
    const { rows } = await client.query<{ active: number }>(
      `SELECT count(*)::int AS active FROM pg_stat_activity
        WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
    );
    const threshold = limits.maxActiveConnections ?? DEFAULT_THRESHOLDS.maxActiveConnections;
    return reading('active sessions', rows[0]!.active, threshold, '');
  },
};
