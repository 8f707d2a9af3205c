/**
 * Builds or rebuilds a pgvector index (HNSW or IVFFlat) concurrently, outside the migrations'
 * statement_timeout: an HNSW build on a big table can take hours, and a migration would kill it
 * at 30 minutes and leave an INVALID index behind. The plan sizes maintenance_work_mem from the
 * graph (activities/postgres/vector-index.ts); the build's progress (pg_stat_progress_create_index)
 * is the `progress` query; cancelling stops the build and drops what it left. A rebuild builds the
 * new index beside the old, checks its recall, and only then swaps the names and drops the old one.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  defineQuery,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  sleep,
} from '@temporalio/workflow';

import type { Activities } from '../activities';
import type {
  BuildMemory,
  BuildOutcome,
  BuildProgress,
  VectorDistance,
  VectorIndexMethod,
  VectorIndexPlan,
} from '../activities/postgres/vector-index';
import type { IndexRecall } from '../activities/postgres/vector-recall';
import { InvalidInputError, InvalidStateError } from './lib/errors';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from './lib/identifiers';
import { DATABASE_RETRY } from './lib/retry';
import { parseTableName, TABLE_NAME_RULE } from './lib/table-names';

export interface VectorIndexInput {
  /** The instance (found through the ControlPlane); absent: the worker's configured database. */
  instanceId?: string;
  action: 'build' | 'rebuild';
  /** `table` or `schema.table`. */
  table: string;
  column: string;
  method: VectorIndexMethod;
  /** HNSW: neighbours per element, 2-100 (default 16; a rebuild keeps the index's own). */
  m?: number;
  /** HNSW: candidate list while building, 4-1000 and at least 2 × m (default 64). */
  efConstruction?: number;
  /** IVFFlat: number of lists, 1-32768 (default 100). */
  lists?: number;
  /** Build: the distance the index serves (default cosine). */
  distance?: VectorDistance;
  /** Rebuild: the index, when the column has several of `method`. */
  index?: string;
  /** max_parallel_maintenance_workers for the build, 0-64 (default: the server's setting). */
  parallelWorkers?: number;
  /** Rebuild: the new index must reach this recall@k before it replaces the old one (default 0.9). */
  minRecall?: number;
  /** Rebuild: stored vectors used as queries for the recall check (default 50). */
  recallSample?: number;
}

export type VectorIndexStage =
  'planning' | 'building' | 'checking-recall' | 'swapping' | 'dropping-old' | 'cleaning-up' | 'done';

export interface VectorIndexProgress {
  stage: VectorIndexStage;
  /** The index being built (`schema.name`), once planned. */
  index: string | null;
  /** The build's phase in pg_stat_progress_create_index, while it runs. */
  build: BuildProgress | null;
  /** Share of the current phase done (blocks, else tuples), 0-1; null when unknown. */
  fraction: number | null;
  maintenanceWorkMemBytes: number | null;
  /** Set when the build will spill (its graph is larger than its memory bound). */
  warning: string | null;
}

export interface VectorIndexResult {
  instanceId: string | null;
  action: 'build' | 'rebuild';
  /** `schema.name`: the index queries use. */
  index: string;
  method: VectorIndexMethod;
  params: VectorIndexPlan['params'];
  statement: string;
  memory: BuildMemory;
  build: BuildOutcome;
  /** Rebuild: the new index's recall, measured before the swap. */
  recall?: IndexRecall;
}

export const vectorIndexProgressQuery = defineQuery<VectorIndexProgress>('progress');

const DEFAULT_MIN_RECALL = 0.9;
const DEFAULT_RECALL_SAMPLE = 50;
const RECALL_K = 10;

const quick = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '1 minute',
  retry: DATABASE_RETRY,
});

// A build may run for a day on a big table; its heartbeat (every second) tells a live one from a
// lost worker. Cancelled, the activity cancels the build's backend and reports when it has stopped.
const { buildVectorIndex } = proxyActivities<Activities>({
  startToCloseTimeout: '3 days',
  heartbeatTimeout: '1 minute',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: DATABASE_RETRY,
});

// The swap cannot hear a cancel (it does not heartbeat) and runs on once started: a cancelled
// rebuild waits for its outcome, so the clean-up drops the index that is really left over.
const { swapVectorIndex } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '1 minute',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: DATABASE_RETRY,
});

/**
 * Runs started before a cancelled rebuild waited for its swap replay as they ran (they did not
 * wait, and a swap that went on after the cancel left the old index under its `_dbops_old` name).
 */
const SWAP_AWAITED_ON_CANCEL = 'vector-index-swap-awaited-on-cancel';

// A look at the build's progress is worth little later: one attempt, and a failed look is skipped.
const { vectorIndexBuildProgress } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { maximumAttempts: 1 },
});

/** Between two looks at the build: a twentieth of the time it has run, from 1 s to 2 minutes. */
const MIN_LOOK_MS = 1_000;
const MAX_LOOK_MS = 120_000;

export async function vectorIndex(input: VectorIndexInput): Promise<VectorIndexResult> {
  validate(input);
  const progress: VectorIndexProgress = {
    stage: 'planning',
    index: null,
    build: null,
    fraction: null,
    maintenanceWorkMemBytes: null,
    warning: null,
  };
  setHandler(vectorIndexProgressQuery, () => progress);

  const plan = await quick.planVectorIndex({
    ...(input.instanceId === undefined ? {} : { instanceId: input.instanceId }),
    action: input.action,
    table: input.table,
    column: input.column,
    method: input.method,
    params: { m: input.m, efConstruction: input.efConstruction, lists: input.lists },
    ...(input.distance === undefined ? {} : { distance: input.distance }),
    ...(input.index === undefined ? {} : { index: input.index }),
    ...(input.parallelWorkers === undefined ? {} : { parallelWorkers: input.parallelWorkers }),
  });
  progress.index = `${plan.schema}.${plan.buildName}`;
  progress.maintenanceWorkMemBytes = plan.memory.maintenanceWorkMemBytes;
  if (plan.memory.warning !== undefined) {
    progress.warning = plan.memory.warning;
    log.warn(plan.memory.warning, { index: progress.index });
  }
  log.info('vector index build planned', {
    statement: plan.createStatement,
    maintenanceWorkMemBytes: plan.memory.maintenanceWorkMemBytes,
    estimatedBytes: plan.memory.estimatedBytes,
    parallelWorkers: plan.parallelWorkers,
  });

  progress.stage = 'building';
  let build: BuildOutcome;
  try {
    build = await buildWithProgress(plan, progress);
  } catch (error) {
    progress.stage = 'cleaning-up';
    // A cancelled or failed concurrent build leaves an INVALID index: never leave it behind.
    const dropped = await CancellationScope.nonCancellable(() => quick.dropInvalidVectorIndex({ plan }));
    log.warn(`vector index build ${isCancellation(error) ? 'cancelled' : 'failed'}`, {
      index: progress.index,
      droppedInvalid: dropped,
    });
    throw error;
  }
  progress.build = null;
  const result: VectorIndexResult = {
    instanceId: input.instanceId ?? null,
    action: plan.action,
    index: `${plan.schema}.${plan.name}`,
    method: plan.method,
    params: plan.params,
    statement: plan.createStatement,
    memory: plan.memory,
    build,
  };
  if (plan.action === 'rebuild') result.recall = await replace(plan, input, progress);
  progress.stage = 'done';
  return result;
}

/** The build, with a look at its progress now and then while it runs. */
async function buildWithProgress(
  plan: VectorIndexPlan,
  progress: VectorIndexProgress,
): Promise<BuildOutcome> {
  const building = buildVectorIndex({ plan });
  let settled = false;
  const ended = building.then(
    () => (settled = true),
    () => (settled = true),
  );
  const started = Date.now();
  try {
    while (!settled) {
      const pause = Math.min(Math.max((Date.now() - started) / 20, MIN_LOOK_MS), MAX_LOOK_MS);
      await Promise.race([ended, sleep(pause)]);
      if (settled) break;
      const seen = await vectorIndexBuildProgress({ plan }).catch(() => undefined);
      if (seen !== undefined) {
        progress.build = seen;
        progress.fraction = seen === null ? null : fractionOf(seen);
      }
    }
  } catch (error) {
    // Cancelled while waiting: the build's own cancellation ends when its backend has stopped.
    await ended;
    if (!isCancellation(error)) throw error;
  }
  return building;
}

function fractionOf(seen: BuildProgress): number | null {
  if (seen.blocksTotal > 0) return Math.min(seen.blocksDone / seen.blocksTotal, 1);
  if (seen.tuplesTotal > 0) return Math.min(seen.tuplesDone / seen.tuplesTotal, 1);
  return null;
}

/**
 * Rebuild: the new index replaces the old one only once it is valid (built) and its recall is
 * checked; a new index below the bar is dropped and the old one stays. Cancelled before the swap,
 * the new index is dropped; after it, the old one is dropped all the same.
 */
async function replace(
  plan: VectorIndexPlan,
  input: VectorIndexInput,
  progress: VectorIndexProgress,
): Promise<IndexRecall> {
  const minRecall = input.minRecall ?? DEFAULT_MIN_RECALL;
  let swapped = false;
  try {
    progress.stage = 'checking-recall';
    const recall = await quick.checkCandidateRecall({
      plan,
      sampleSize: input.recallSample ?? DEFAULT_RECALL_SAMPLE,
      k: RECALL_K,
    });
    log.info('recall of the new index', {
      index: recall.index,
      recall: recall.recall,
      setting: recall.searchSetting,
    });
    if (recall.recall < minRecall) {
      throw ApplicationFailure.nonRetryable(
        `the new index ${plan.buildName} reaches recall@${RECALL_K} ${recall.recall} (${recall.searchSetting}), ` +
          `below ${minRecall}: it was dropped and ${plan.name} is unchanged`,
        InvalidStateError.name,
      );
    }
    progress.stage = 'swapping';
    await (patched(SWAP_AWAITED_ON_CANCEL) ? swapVectorIndex : quick.swapVectorIndex)({ plan });
    swapped = true;
    progress.stage = 'dropping-old';
    await quick.dropVectorIndex({ plan, name: plan.oldName });
    return recall;
  } catch (error) {
    progress.stage = 'cleaning-up';
    await CancellationScope.nonCancellable(() =>
      quick.dropVectorIndex({ plan, name: swapped ? plan.oldName : plan.buildName }),
    );
    throw error;
  }
}

function validate(input: VectorIndexInput): void {
  if (typeof input !== 'object' || input === null) invalid('input must be an object');
  if (input.instanceId !== undefined && !isRdsIdentifier(input.instanceId)) {
    invalid(`instanceId ${JSON.stringify(input.instanceId)} is not valid: ${RDS_IDENTIFIER_RULE}`);
  }
  if (input.action !== 'build' && input.action !== 'rebuild') {
    invalid(`action ${JSON.stringify(input.action)} is not valid: build or rebuild`);
  }
  if (parseTableName(input.table) === undefined) {
    invalid(`table ${JSON.stringify(input.table)} is not valid: ${TABLE_NAME_RULE}`);
  }
  const column = parseTableName(input.column);
  if (column === undefined || column.schema !== undefined) {
    invalid(`column ${JSON.stringify(input.column)} is not valid: a plain identifier`);
  }
  if (input.method !== 'hnsw' && input.method !== 'ivfflat') {
    invalid(`method ${JSON.stringify(input.method)} is not valid: hnsw or ivfflat`);
  }
  const hnsw = input.method === 'hnsw';
  const ranged = (name: string, value: unknown, min: number, max: number, allowed: boolean) => {
    if (value === undefined) return;
    if (!allowed) invalid(`${name} does not apply to ${input.method} indexes`);
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      invalid(`${name} is ${JSON.stringify(value)}; expected an integer from ${min} to ${max}`);
    }
  };
  ranged('m', input.m, 2, 100, hnsw);
  ranged('efConstruction', input.efConstruction, 4, 1000, hnsw);
  ranged('lists', input.lists, 1, 32768, !hnsw);
  ranged('parallelWorkers', input.parallelWorkers, 0, 64, true);
  ranged('recallSample', input.recallSample, 1, 1000, input.action === 'rebuild');
  if (hnsw && (input.m !== undefined || input.efConstruction !== undefined)) {
    const m = input.m ?? 16;
    const ef = input.efConstruction ?? 64;
    if (ef < 2 * m) invalid(`efConstruction ${ef} must be at least 2 × m (${2 * m})`);
  }
  if (input.distance !== undefined) {
    if (input.action === 'rebuild')
      invalid('distance applies to a build: a rebuild keeps the index operator class');
    if (!['cosine', 'l2', 'ip'].includes(input.distance)) {
      invalid(`distance ${JSON.stringify(input.distance)} is not valid: cosine, l2 or ip`);
    }
  }
  if (input.index !== undefined) {
    if (input.action !== 'rebuild') invalid('index applies to a rebuild: a build names its index itself');
    const index = parseTableName(input.index);
    if (index === undefined || index.schema !== undefined) {
      invalid(`index ${JSON.stringify(input.index)} is not valid: a plain identifier`);
    }
  }
  if (input.minRecall !== undefined) {
    if (input.action !== 'rebuild') invalid('minRecall applies to a rebuild');
    if (typeof input.minRecall !== 'number' || !(input.minRecall >= 0 && input.minRecall <= 1)) {
      invalid(`minRecall is ${JSON.stringify(input.minRecall)}; expected a number from 0 to 1`);
    }
  }
}

function invalid(message: string): never {
  throw ApplicationFailure.nonRetryable(message, InvalidInputError.name);
}
