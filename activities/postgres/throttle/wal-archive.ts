/**
 * WAL archive backlog: WAL written but not yet archived (pg_stat_archiver), in MB. A backlog that
 * grows means the archive (and so point-in-time restore) falls behind, and pg_wal fills up.
 * Nothing to say when archiving is off or nothing was archived yet. A `.partial` or `.backup`
 * file counts as its segment.
 */
import { DEFAULT_THRESHOLDS, reading, type HealthIndicator } from './indicator';

export const walArchiveBacklog: HealthIndicator = {
  name: 'WAL archive backlog',
  async read({ client, limits }) {
    // The last archived segment's end as an LSN, from its file name (timeline, log, segment).
    const { rows } = await client.query<{ backlog: number | null }>(
      `SELECT CASE WHEN current_setting('archive_mode') = 'off'
                     OR last_archived_wal IS NULL OR last_archived_wal !~ '^[0-9A-F]{24}' THEN NULL
              ELSE greatest(pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')
                - (('x' || substr(last_archived_wal, 9, 8))::bit(32)::bigint * 4294967296
                   + (('x' || substr(last_archived_wal, 17, 8))::bit(32)::bigint + 1)
                     * pg_size_bytes(current_setting('wal_segment_size'))), 0) / 1048576.0
              END::float8 AS backlog
         FROM pg_stat_archiver`,
    );
    const backlog = rows[0]!.backlog;
    if (backlog === null) return undefined;
    const threshold = limits.maxWalArchiveBacklogMb ?? DEFAULT_THRESHOLDS.maxWalArchiveBacklogMb;
    return reading('WAL archive backlog', Math.round(backlog), threshold, 'MB');
  },
};
