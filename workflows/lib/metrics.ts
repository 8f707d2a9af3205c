/**
 * dbops' own Prometheus metrics, served on the worker's endpoint beside the Temporal SDK's. Pass
 * the meter of where you are: `metricMeter` from '@temporalio/workflow' in a workflow (not
 * recorded again on replay), or from '@temporalio/activity' in an activity. The SDK adds the
 * namespace, task queue and workflow or activity type as labels. Alert rules on these names:
 * infra/prometheus/alerts.yml. Activities import it too, so it must stay pure: no I/O, no Node
 * built-ins, nothing from workers/, only types from activities/.
 */
import type { MetricMeter } from '@temporalio/common';

import type { RecoverabilityDescription } from '../../activities/control-plane/control-plane';
import type { IndexRecall } from '../../activities/postgres/vector-recall';

export const METRIC_NAMES = {
  /** Counter (exported with a `_total` suffix); label `table`. */
  backfillRows: 'dbops_backfill_rows_processed',
  /** Gauges of the last DR test, label `instance_id`. */
  drTestRto: 'dbops_dr_test_rto_seconds',
  drTestSuccess: 'dbops_dr_test_success',
  drTestLastSuccess: 'dbops_dr_test_last_success_timestamp_seconds',
  /** Gauge, label `instance_id`. */
  backupLastSuccess: 'dbops_backup_last_success_timestamp_seconds',
  /** Gauge of the last recall measurement, labels `instance_id`, `index`, `query` (plain | filtered | filtered_iterative). */
  vectorRecall: 'dbops_vector_recall',
  /** Gauges of the health check's recoverability measurement, label `instance_id`. */
  newestSnapshot: 'dbops_newest_snapshot_timestamp_seconds',
  recoveryPoint: 'dbops_recovery_point_timestamp_seconds',
} as const;

/** Rows one backfill batch wrote. */
export function recordBackfillRows(meter: MetricMeter, table: string, rows: number): void {
  meter
    .createCounter(METRIC_NAMES.backfillRows, 'rows', 'Rows written by backfill batches')
    .add(rows, { table });
}

export interface DrTestOutcome {
  instanceId: string;
  success: boolean;
  /** Time from the start of the restore to a verified, usable copy. */
  rtoSeconds: number;
  /** When the test finished (workflow time in a workflow). */
  finishedAt: Date;
}

/** The result of a DR test; the last-success timestamp moves only when it passed. */
export function recordDrTest(meter: MetricMeter, outcome: DrTestOutcome): void {
  const tags = { instance_id: outcome.instanceId };
  meter
    .createGauge(METRIC_NAMES.drTestRto, 'float', 's', 'Recovery time of the last DR test')
    .set(outcome.rtoSeconds, tags);
  meter
    .createGauge(METRIC_NAMES.drTestSuccess, 'int', '', 'Whether the last DR test passed (1) or failed (0)')
    .set(outcome.success ? 1 : 0, tags);
  if (outcome.success) {
    meter
      .createGauge(METRIC_NAMES.drTestLastSuccess, 'float', 's', 'Unix time of the last successful DR test')
      .set(outcome.finishedAt.getTime() / 1000, tags);
  }
}

/** A backup (snapshot, and its export when asked) that completed. */
export function recordBackupSucceeded(meter: MetricMeter, instanceId: string, finishedAt: Date): void {
  meter
    .createGauge(METRIC_NAMES.backupLastSuccess, 'float', 's', 'Unix time of the last successful backup')
    .set(finishedAt.getTime() / 1000, { instance_id: instanceId });
}

/**
 * What losing the instance now would leave: when its newest available snapshot was taken, and
 * its recovery point, the newest time any restore reaches (the latest restorable time, or the
 * newest snapshot when that is newer or there is no log chain). Unix times, 0 when there is none.
 * Times rather than ages, as for the backup and the DR test: the alert rules take `time() - gauge`,
 * so an age keeps growing when the measurements stop, and several workers' gauges agree (max).
 */
export function recordRecoverability(meter: MetricMeter, measured: RecoverabilityDescription): void {
  const tags = { instance_id: measured.instanceId };
  const snapshotAt = measured.newestAvailableSnapshot?.createdAt;
  const restorableTo = [measured.latestRestorableTime, snapshotAt]
    .filter((time): time is string => time !== undefined)
    .map((time) => Date.parse(time));
  meter
    .createGauge(
      METRIC_NAMES.newestSnapshot,
      'float',
      's',
      'Unix time of the newest available snapshot (0: none)',
    )
    .set(snapshotAt === undefined ? 0 : Date.parse(snapshotAt) / 1000, tags);
  meter
    .createGauge(
      METRIC_NAMES.recoveryPoint,
      'float',
      's',
      'Unix time of the newest point a restore reaches (0: none)',
    )
    .set(restorableTo.length === 0 ? 0 : Math.max(...restorableTo) / 1000, tags);
}

/** Recall of each measured vector index: plain kNN queries, and filtered ones without and with iterative scans. */
export function recordVectorRecall(
  meter: MetricMeter,
  instanceId: string,
  indexes: readonly IndexRecall[],
): void {
  const gauge = meter.createGauge(
    METRIC_NAMES.vectorRecall,
    'float',
    '',
    'Recall@k of a vector index against exact search (last measurement)',
  );
  for (const index of indexes) {
    const tags = { instance_id: instanceId, index: `${index.schema}.${index.index}` };
    gauge.set(index.recall, { ...tags, query: 'plain' });
    if (index.filtered !== undefined) {
      gauge.set(index.filtered.recall, { ...tags, query: 'filtered' });
      gauge.set(index.filtered.recallIterative, { ...tags, query: 'filtered_iterative' });
    }
  }
}
