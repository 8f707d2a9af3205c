/** Replica lag: how far the slowest streaming replica's replay is behind, in seconds. */
import { DEFAULT_THRESHOLDS, reading, type HealthIndicator } from './indicator';

export const replicaLag: HealthIndicator = {
  name: 'replica lag',
  async read({ client, limits }) {
    const { rows } = await client.query<{ lag: number }>(
      `SELECT COALESCE(max(EXTRACT(epoch FROM replay_lag)), 0)::float8 AS lag FROM pg_stat_replication`,
    );
    const threshold = limits.maxReplicaLagSeconds ?? DEFAULT_THRESHOLDS.maxReplicaLagSeconds;
    return reading('replica lag', rows[0]!.lag, threshold, 's');
  },
};
