/**
 * A health indicator: one signal of database pressure, read between backfill batches and compared
 * with its threshold. Each indicator lives in a file of its own beside this one; index.ts lists
 * them and reads them all. When one is over its threshold the backfill waits and says which.
 */
import type { Client } from 'pg';

/** Thresholds as the backfill's input gives them; each one absent takes its default (DEFAULT_THRESHOLDS). */
export interface ThrottleLimits {
  /** Wait while a replica replays more than this many seconds behind. */
  maxReplicaLagSeconds?: number;
  /** Wait while more than this many other sessions are running a query. */
  maxActiveConnections?: number;
  /** Wait while autovacuum works on the backfill's table. */
  waitForAutovacuum?: boolean;
  /** Wait while more than this many MB of WAL wait to be archived (pg_stat_archiver). */
  maxWalArchiveBacklogMb?: number;
  /** Wait while the server writes more WAL than this, in MB/s (0: not watched). */
  maxWalMbPerSecond?: number;
  /** Wait while a Prometheus query's first value is above its threshold (an SLO signal). */
  prometheus?: PrometheusSignal;
}

export interface PrometheusSignal {
  /** The Prometheus server, e.g. `http://prometheus:9090` (no credentials in it). */
  url: string;
  /** PromQL whose first sample is compared, e.g. a p99 latency or an error ratio. */
  query: string;
  threshold: number;
}

export const DEFAULT_THRESHOLDS = {
  maxReplicaLagSeconds: 10,
  maxActiveConnections: 50,
  // Off by default: a large backfill's own dead rows start autovacuum on its table, and waiting
  // for it every time would stall the backfill for the length of each vacuum.
  waitForAutovacuum: false,
  maxWalArchiveBacklogMb: 1024,
  maxWalMbPerSecond: 256,
} as const;

/** What an indicator read, as progress shows it. */
export interface Reading {
  /** e.g. `replica lag`. */
  indicator: string;
  value: number;
  threshold: number;
  unit: string;
  over: boolean;
  /** Why there is no value (e.g. a Prometheus query that failed); such a reading is over. */
  error?: string;
}

/** What every indicator may use; `memory` keeps an indicator's own state across the reads of a chunk. */
export interface IndicatorContext {
  client: Client;
  /** The backfill's table, as written in SQL. */
  table: string;
  limits: ThrottleLimits;
  memory: Map<string, unknown>;
}

export interface HealthIndicator {
  name: string;
  /** The current reading, or undefined when the indicator is off or has nothing to say yet. */
  read(context: IndicatorContext): Promise<Reading | undefined>;
}

/** `replica lag 12.0 s > 10 s`. */
export function describeReading(reading: Reading): string {
  if (reading.error !== undefined) return `${reading.indicator}: ${reading.error}`;
  const value = Number.isInteger(reading.value) ? String(reading.value) : reading.value.toFixed(1);
  const unit = reading.unit === '' ? '' : ` ${reading.unit}`;
  return `${reading.indicator} ${value}${unit} ${reading.over ? '>' : '<='} ${reading.threshold}${unit}`;
}

export function reading(indicator: string, value: number, threshold: number, unit: string): Reading {
  return { indicator, value, threshold, unit, over: value > threshold };
}
