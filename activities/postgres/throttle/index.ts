/**
 * Every health indicator a backfill watches between batches, read in this order; the first one
 * over its threshold is why the backfill waits.
 */
import { activeSessions } from './active-sessions';
import { autovacuum } from './autovacuum';
import { describeReading, type HealthIndicator, type IndicatorContext, type Reading } from './indicator';
import { prometheus } from './prometheus';
import { replicaLag } from './replica-lag';
import { walArchiveBacklog } from './wal-archive';
import { walRate } from './wal-rate';

export const INDICATORS: HealthIndicator[] = [
  replicaLag,
  activeSessions,
  autovacuum,
  walArchiveBacklog,
  walRate,
  prometheus,
];

export interface Health {
  readings: Reading[];
  /** Why batches should wait now (the first indicator over its threshold), or undefined. */
  over: string | undefined;
}

export async function readHealth(
  context: IndicatorContext,
  indicators: HealthIndicator[] = INDICATORS,
): Promise<Health> {
  const readings: Reading[] = [];
  for (const indicator of indicators) {
    const reading = await indicator.read(context);
    if (reading !== undefined) readings.push(reading);
  }
  const first = readings.find((reading) => reading.over);
  return { readings, over: first === undefined ? undefined : describeReading(first) };
}
