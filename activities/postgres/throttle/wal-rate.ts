/**
 * WAL generation rate: MB/s of WAL the server wrote (the backfill's own included) since the
 * chunk's first read, over a window of at least a second; nothing to say before that.
 */
import { DEFAULT_THRESHOLDS, reading, type HealthIndicator } from './indicator';

const MIN_WINDOW_MS = 1_000;

interface Sample {
  bytes: number;
  at: number;
}

export const walRate: HealthIndicator = {
  name: 'WAL rate',
  async read({ client, limits, memory }) {
    const threshold = limits.maxWalMbPerSecond ?? DEFAULT_THRESHOLDS.maxWalMbPerSecond;
    if (threshold === 0) return undefined;
    const { rows } = await client.query<{ bytes: number }>(
      `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS bytes`,
    );
    const now: Sample = { bytes: rows[0]!.bytes, at: performance.now() };
    const before = memory.get('wal rate') as Sample | undefined;
    if (before === undefined) {
      memory.set('wal rate', now);
      return undefined;
    }
    if (now.at - before.at < MIN_WINDOW_MS) return undefined;
    memory.set('wal rate', now);
    const mbPerSecond = (now.bytes - before.bytes) / 1048576 / ((now.at - before.at) / 1000);
    return reading('WAL rate', Math.round(mbPerSecond * 10) / 10, threshold, 'MB/s');
  },
};
