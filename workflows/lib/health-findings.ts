/**
 * The runbook's alert conditions applied to one health measurement. Pure code: the healthCheck
 * workflow calls it, and so could a test with a hand-made snapshot.
 */
import type { HealthSnapshot } from '../../activities/postgres/health';

export type Severity = 'info' | 'warning' | 'critical';

export interface Finding {
  severity: Severity;
  /** Stable key for scripts and alert routing, e.g. `connections-saturated`. */
  check: string;
  message: string;
}

export interface HealthThresholds {
  /** Share of max_connections in use that warns (the runbook: 0.8). */
  connectionsWarning: number;
  /** Share that is critical: new sessions are about to be refused. */
  connectionsCritical: number;
  /** Seconds of replay lag (the runbook's 100). */
  replicationLagSeconds: number;
  /** Mean execution time of a statement that counts as slow (the runbook: 1 s). */
  slowStatementMs: number;
  /** Below this share of blocks found in shared buffers (the runbook: 0.9). */
  cacheHitRatio: number;
  /** Blocks a database must have touched before its hit ratio means anything. */
  cacheMinBlocks: number;
}

export const DEFAULT_THRESHOLDS: HealthThresholds = {
  connectionsWarning: 0.8,
  connectionsCritical: 0.95,
  replicationLagSeconds: 100,
  slowStatementMs: 1000,
  cacheHitRatio: 0.9,
  cacheMinBlocks: 10_000,
};

export function evaluateHealth(snapshot: HealthSnapshot, limits: HealthThresholds): Finding[] {
  return [
    ...connectionFindings(snapshot, limits),
    ...replicationFindings(snapshot, limits),
    ...statementFindings(snapshot, limits),
    ...cacheFindings(snapshot, limits),
    ...knnFindings(snapshot),
    ...vectorIndexFindings(snapshot),
  ];
}

function connectionFindings({ connections }: HealthSnapshot, limits: HealthThresholds): Finding[] {
  const ratio = connections.used / connections.max;
  const text = `${connections.used} of max_connections ${connections.max} in use (${percent(ratio)})`;
  if (ratio >= limits.connectionsCritical) {
    return [{ severity: 'critical', check: 'connections-saturated', message: text }];
  }
  if (ratio >= limits.connectionsWarning) {
    return [
      {
        severity: 'warning',
        check: 'connections-saturated',
        message: `${text}, above ${percent(limits.connectionsWarning)}`,
      },
    ];
  }
  return [];
}

function replicationFindings(snapshot: HealthSnapshot, limits: HealthThresholds): Finding[] {
  if (snapshot.replicas.length === 0) {
    return [{ severity: 'info', check: 'replication', message: 'no streaming replicas to measure' }];
  }
  return snapshot.replicas
    .filter((replica) => (replica.lagSeconds ?? 0) > limits.replicationLagSeconds)
    .map((replica) => ({
      severity: 'critical',
      check: 'replication-lag',
      message: `replica ${replica.name} is ${Math.round(replica.lagSeconds!)} s behind (limit ${limits.replicationLagSeconds} s)`,
    }));
}

function statementFindings(snapshot: HealthSnapshot, limits: HealthThresholds): Finding[] {
  if (snapshot.slowest === null) {
    return [
      {
        severity: 'warning',
        check: 'pg-stat-statements',
        message: `pg_stat_statements is not available: ${snapshot.statementsProblem ?? 'unknown reason'}`,
      },
    ];
  }
  return snapshot.slowest
    .filter((statement) => statement.meanMs > limits.slowStatementMs)
    .map((statement) => ({
      severity: 'warning',
      check: 'slow-statement',
      message: `mean ${Math.round(statement.meanMs)} ms over ${statement.calls} calls: ${statement.query}`,
    }));
}

function cacheFindings({ cache }: HealthSnapshot, limits: HealthThresholds): Finding[] {
  const total = cache.hits + cache.reads;
  if (total < limits.cacheMinBlocks) return [];
  const ratio = cache.hits / total;
  if (ratio >= limits.cacheHitRatio) return [];
  return [
    {
      severity: 'warning',
      check: 'cache-hit-ratio',
      message: `cache hit ratio ${ratio.toFixed(3)} is below ${limits.cacheHitRatio}`,
    },
  ];
}

function knnFindings({ knn }: HealthSnapshot): Finding[] {
  switch (knn.status) {
    case 'no-table':
      return [
        { severity: 'info', check: 'knn', message: 'no conversation_chunks table: kNN query not explained' },
      ];
    case 'no-embeddings':
      return [{ severity: 'info', check: 'knn', message: `${knn.table} has no embeddings to search with` }];
    case 'explained':
      return knn.indexUsed === null
        ? [
            {
              severity: 'warning',
              check: 'knn',
              message: `the kNN query on ${knn.table} (${knn.operator}) scans without a vector index (${knn.executionMs} ms)`,
            },
          ]
        : [
            {
              severity: 'info',
              check: 'knn',
              message: `the kNN query on ${knn.table} uses ${knn.indexUsed} (${knn.executionMs} ms)`,
            },
          ];
  }
}

/**
 * An INVALID vector index (a failed or cancelled concurrent build) is never used and still costs
 * writes; an index larger than shared_buffers cannot stay cached, so its searches read from disk.
 * Results of runs before the measurement existed have no `vectorIndexes`.
 */
function vectorIndexFindings({ vectorIndexes }: HealthSnapshot): Finding[] {
  const mb = (bytes: number) => `${Math.round(bytes / (1024 * 1024))} MB`;
  return (vectorIndexes ?? []).flatMap((index): Finding[] => [
    ...(index.valid
      ? []
      : [
          {
            severity: 'warning' as const,
            check: 'vector-index-invalid',
            message: `${index.method} index ${index.index} on ${index.table} is INVALID (a failed or cancelled build): drop it or rebuild it with dbops index`,
          },
        ]),
    ...(index.sizeBytes > index.sharedBuffersBytes
      ? [
          {
            severity: 'warning' as const,
            check: 'vector-index-size',
            message: `${index.method} index ${index.index} is ${mb(index.sizeBytes)}, more than shared_buffers (${mb(index.sharedBuffersBytes)}): its searches read from disk`,
          },
        ]
      : []),
  ]);
}

function percent(ratio: number): string {
  return `${Math.round(ratio * 100)}%`;
}
