/**
 * Recall of every vector index in production, on a schedule: stored vectors as queries, the
 * index's top-k against the exact top-k (activities/postgres/vector-recall.ts), on the read
 * replica when one is configured. Each index's recall is a gauge (`dbops_vector_recall`, alert
 * rules in infra/prometheus/vector-alerts.yml). With `rebuildBelow`, an index whose recall stays
 * under the bar (measured again after `confirmAfter`, on a fresh sample) gets a vectorIndex
 * rebuild started for it, with its own parameters; the rebuild outlives this run.
 */
import {
  ApplicationFailure,
  ParentClosePolicy,
  log,
  metricMeter,
  proxyActivities,
  sleep,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';

import type { Activities } from '../activities';
import type { IndexRecall, RecallReport } from '../activities/postgres/vector-recall';
import { InvalidInputError } from './lib/errors';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from './lib/identifiers';
import { recordVectorRecall } from './lib/metrics';
import { toMs } from './lib/polling';
import { DATABASE_RETRY } from './lib/retry';
import { parseTableName } from './lib/table-names';
import { vectorIndex } from './vector-index';

export interface VectorRecallInput {
  /** The instance (found through the ControlPlane); absent: the worker's configured database. */
  instanceId?: string;
  /** Stored vectors used as queries per index, 1-1000 (default 20). */
  sampleSize?: number;
  /** Neighbours compared per query, 1-100 (default 10). */
  k?: number;
  /** `hnsw.ef_search` for the measurement, 1-1000; default the server's setting (what queries get). */
  efSearch?: number;
  /** Also measure queries filtered on this column (= a sampled row's value), with and without iterative scans. */
  filterColumn?: string;
  /** The bar: recall below it is logged as a warning (default 0.9). */
  minRecall?: number;
  /** Start a rebuild of an index whose recall stays below the bar (default false). */
  rebuildBelow?: boolean;
  /** How long to wait before measuring a low index again (Temporal duration; default 10 minutes). */
  confirmAfter?: string;
}

export interface VectorRecallResult extends RecallReport {
  instanceId: string | null;
  minRecall: number;
  /** Indexes below the bar (after the second measurement when `rebuildBelow`). */
  below: string[];
  /** Rebuilds started (workflow ids), or joined when one was running already. */
  rebuilds: { index: string; workflowId: string; started: boolean }[];
}

const DEFAULT_SAMPLE = 20;
const DEFAULT_K = 10;
const DEFAULT_MIN_RECALL = 0.9;

const { measureVectorRecall } = proxyActivities<Activities>({
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '1 minute',
  retry: DATABASE_RETRY,
});

export async function vectorRecall(input: VectorRecallInput = {}): Promise<VectorRecallResult> {
  validate(input);
  const minRecall = input.minRecall ?? DEFAULT_MIN_RECALL;
  const options = {
    ...(input.instanceId === undefined ? {} : { instanceId: input.instanceId }),
    sampleSize: input.sampleSize ?? DEFAULT_SAMPLE,
    k: input.k ?? DEFAULT_K,
    ...(input.efSearch === undefined ? {} : { efSearch: input.efSearch }),
    ...(input.filterColumn === undefined ? {} : { filterColumn: input.filterColumn }),
  };
  const instanceLabel = input.instanceId ?? 'configured';
  const measure = async (): Promise<RecallReport> => {
    const report = await measureVectorRecall(options);
    recordVectorRecall(metricMeter, instanceLabel, report.indexes);
    for (const index of report.indexes) log.info('vector index recall', summary(index));
    return report;
  };

  let report = await measure();
  let below = report.indexes.filter((index) => index.recall < minRecall);
  if (below.length > 0 && input.rebuildBelow === true) {
    await sleep(toMs(input.confirmAfter ?? '10 minutes'));
    report = await measure();
    const before = new Set(below.map((index) => index.index));
    below = report.indexes.filter((index) => index.recall < minRecall && before.has(index.index));
  }
  for (const index of below) {
    log.warn(
      `recall@${index.k} of ${index.schema}.${index.index} is ${index.recall}, below ${minRecall}`,
      summary(index),
    );
  }
  const rebuilds = input.rebuildBelow === true ? await startRebuilds(input, below) : [];
  return {
    ...report,
    instanceId: input.instanceId ?? null,
    minRecall,
    below: below.map((index) => `${index.schema}.${index.index}`),
    rebuilds,
  };
}

/** One rebuild per low index; its workflow id names the index, so it is never started twice. */
async function startRebuilds(
  input: VectorRecallInput,
  below: IndexRecall[],
): Promise<VectorRecallResult['rebuilds']> {
  const rebuilds: VectorRecallResult['rebuilds'] = [];
  for (const index of below) {
    const workflowId = `vector-index-rebuild-${input.instanceId ?? 'configured'}-${index.schema}.${index.index}`;
    try {
      await startChild(vectorIndex, {
        workflowId,
        taskQueue: workflowInfo().taskQueue,
        parentClosePolicy: ParentClosePolicy.ABANDON,
        args: [
          {
            ...(input.instanceId === undefined ? {} : { instanceId: input.instanceId }),
            action: 'rebuild',
            table: `${index.schema}.${index.table}`,
            column: index.column,
            method: index.method,
            index: index.index,
          },
        ],
      });
      log.warn(`started a rebuild of ${index.schema}.${index.index}`, { workflowId });
      rebuilds.push({ index: `${index.schema}.${index.index}`, workflowId, started: true });
    } catch (error) {
      if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
      rebuilds.push({ index: `${index.schema}.${index.index}`, workflowId, started: false });
    }
  }
  return rebuilds;
}

function summary(index: IndexRecall): Record<string, unknown> {
  return {
    index: `${index.schema}.${index.index}`,
    recall: index.recall,
    setting: index.searchSetting,
    queries: index.queries,
    filteredRecall: index.filtered?.recall,
    filteredIterativeRecall: index.filtered?.recallIterative,
  };
}

function validate(input: VectorRecallInput): void {
  if (input.instanceId !== undefined && !isRdsIdentifier(input.instanceId)) {
    invalid(`instanceId ${JSON.stringify(input.instanceId)} is not valid: ${RDS_IDENTIFIER_RULE}`);
  }
  const ranged = (name: string, value: unknown, min: number, max: number) => {
    if (value === undefined) return;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      invalid(`${name} is ${JSON.stringify(value)}; expected an integer from ${min} to ${max}`);
    }
  };
  ranged('sampleSize', input.sampleSize, 1, 1000);
  ranged('k', input.k, 1, 100);
  ranged('efSearch', input.efSearch, 1, 1000);
  if (input.filterColumn !== undefined) {
    const column = parseTableName(input.filterColumn);
    if (column === undefined || column.schema !== undefined) {
      invalid(`filterColumn ${JSON.stringify(input.filterColumn)} is not valid: a plain identifier`);
    }
  }
  if (
    input.minRecall !== undefined &&
    !(typeof input.minRecall === 'number' && input.minRecall >= 0 && input.minRecall <= 1)
  ) {
    invalid(`minRecall is ${JSON.stringify(input.minRecall)}; expected a number from 0 to 1`);
  }
  if (input.confirmAfter !== undefined) toMs(input.confirmAfter);
  if (input.rebuildBelow !== undefined && typeof input.rebuildBelow !== 'boolean') {
    invalid('rebuildBelow must be true or false');
  }
}

function invalid(message: string): never {
  throw ApplicationFailure.nonRetryable(message, InvalidInputError.name);
}
