/**
 * A batched, resumable backfill of a code-reviewed definition (activities/postgres/backfills),
 * referenced by name. Runs batches in short activity "chunks"; between chunks it applies new
 * settings, pauses, stops, sleeps long delays on workflow timers, or waits out database pressure.
 * A retried chunk resumes after its last committed batch. Progress is a query; the history stays
 * bounded by continuing as new, carrying the checkpoint. Cancelling the workflow cancels the
 * running batch's statement and ends the run cancelled once it has stopped.
 */
import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancelledFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  defineUpdate,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';

import type { Activities } from '../activities';
import type { ChunkResult, Reading, ThrottleLimits } from '../activities/postgres/backfill';
import { InvalidInputError, NON_RETRYABLE_ERROR_TYPES } from './lib/errors';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from './lib/identifiers';
import { toMs } from './lib/polling';

export interface BackfillInput {
  instanceId: string;
  /** A backfill defined in activities/postgres/backfills. */
  name: string;
  /** The definition's typed parameters (checked by the definition). */
  params?: unknown;
  /**
   * Rows per batch (one transaction each). Given alone, every batch has this size; otherwise the
   * size adapts to `targetBatchMs`, starting here (default 1000).
   */
  batchSize?: number;
  /** The batch duration the self-tuned size aims at, in ms (10 to 60000). Default 200. */
  targetBatchMs?: number;
  /**
   * The shorter duration self-tuned batches aim at while other sessions of the database are busy
   * (the application), in ms (10 to 60000); not above `targetBatchMs`. Default 25.
   */
  contendedTargetBatchMs?: number;
  /**
   * While other sessions of the database are busy, self-tuned batches pause after each batch this
   * many times as long as it took (0 to 10; 0: no pause). Default 3: batches run a quarter of the
   * time, and the application keeps most of the machine.
   */
  contendedPauseFactor?: number;
  /** Bounds of the self-tuned size. Defaults 100 and 100000. */
  minBatchSize?: number;
  maxBatchSize?: number;
  /**
   * Pause between batches, in ms, 0 to 600000. Default 0. Under 1 s it is slept inside the chunk;
   * from 1 s on, each batch is its own chunk and the pause a workflow timer.
   */
  delayMs?: number;
  /** Throttle while replica lag exceeds this. Default 10 s. */
  maxReplicaLagSeconds?: number;
  /** Throttle while more sessions than this run a query. Default 50. */
  maxActiveConnections?: number;
  /** Throttle while autovacuum works on the table. Default false. */
  waitForAutovacuum?: boolean;
  /** Throttle while more WAL than this waits to be archived, in MB. Default 1024. */
  maxWalArchiveBacklogMb?: number;
  /** Throttle while the server writes more WAL than this, in MB/s (0: not watched). Default 256. */
  maxWalMbPerSecond?: number;
  /** Throttle while this Prometheus query's value is above its threshold. Default none. */
  prometheus?: ThrottleLimits['prometheus'];
  /** Wait this long before looking again when throttled (Temporal duration). Default 10 seconds. */
  throttleWait?: string;
  /**
   * Batches that may run side by side (1 or 2), each on its own session: with 2, a self-tuned run
   * without a delay runs the next two batches at once while no other session of the database is
   * busy, and one at a time otherwise. Default 2.
   */
  streams?: number;
  /** Continue as new after this many chunks. Default 500. */
  chunksPerRun?: number;
  /** Carried over by continue-as-new; not for callers. */
  checkpoint?: BackfillCheckpoint;
}

export interface BackfillCheckpoint {
  lastKey: string | null;
  batches: number;
  rowsScanned: number;
  rowsChanged: number;
  /** Time spent on batches and the delays between them. */
  busyMs: number;
  estimatedRows: number;
  paused: boolean;
  runs: number;
  /** Batches cut short by a timeout (absent in runs started before self-tuning). */
  batchTimeouts?: number;
}

export type BackfillState = 'running' | 'paused' | 'throttled' | 'cancelled' | 'completed';

export interface BackfillProgress {
  name: string;
  instanceId: string;
  state: BackfillState;
  /** Rows the backfill changed. */
  rowsDone: number;
  rowsScanned: number;
  estimatedTotal: number;
  rowsPerSecond: number;
  /** Seconds left at the current rate; null before the first batch. */
  etaSeconds: number | null;
  /** The batch size in force: the self-tuned one, or the one set. */
  batchSize: number;
  /** `auto`: the size adapts to `targetBatchMs`; `fixed`: the size set. */
  batchSizeMode: 'auto' | 'fixed';
  targetBatchMs: number | null;
  /**
   * The duration batches aimed at when last looked: `targetBatchMs`, or the contended target while
   * other sessions were busy (absent from runs started before there was one).
   */
  aimedBatchMs?: number | null;
  /** Other sessions of the database busy when last looked (self-tuned runs). */
  busySessions?: number | null;
  /** The pause after each batch while other sessions are busy, in batch times (self-tuned runs). */
  contendedPauseFactor?: number | null;
  /** How long the last batch took, in ms. */
  lastBatchMs: number | null;
  /** Batches the last step ran side by side (1 or 2; absent from runs before there could be 2). */
  streams?: number;
  /** Batches cut short by their statement or lock timeout, rolled back and retried smaller. */
  batchTimeouts: number;
  lastTimeout: string | undefined;
  delayMs: number;
  lastKey: string | null;
  batches: number;
  /** The health indicator over its threshold, and its reading, while throttled. */
  throttleReason: string | undefined;
  /** Every health indicator as last read: name, value, threshold. */
  health: Reading[];
  /** How many runs (continue-as-new) so far, this one included. */
  runs: number;
}

export interface BackfillSettings {
  /** Fixes the batch size (self-tuning off). */
  batchSize?: number;
  /** Self-tuning on, aiming at this batch duration. */
  targetBatchMs?: number;
  delayMs?: number;
}

export const backfillProgressQuery = defineQuery<BackfillProgress>('progress');
/** Changes batch size and/or delay while running; answers with the settings now in force. */
export const configureBackfillUpdate = defineUpdate<BackfillSettings, [BackfillSettings]>('configure');
export const pauseBackfillSignal = defineSignal('pause');
export const resumeBackfillSignal = defineSignal('resume');
/** Stops after the current chunk; what was done stays done (every batch is committed). */
export const cancelBackfillSignal = defineSignal('cancel');

const { describeBackfill } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES },
});

/** Upper bound for one batch statement (its session's statement_timeout). */
const BATCH_TIMEOUT_MS = 20_000;
/**
 * A chunk runs batches for about this long, then the workflow applies settings, pauses or stops.
 * Each chunk costs an activity round trip and a new connection (tens of ms on a loaded machine):
 * five seconds keeps that near 1% of a full-speed backfill while pause and cancel still answer soon.
 */
const CHUNK_MS = 5_000;
/**
 * Pauses between batches shorter than this are slept inside the chunk; longer ones are workflow
 * timers between one-batch chunks (the worker holds nothing while it waits, and a pause, cancel or
 * new setting takes effect at once).
 */
const WORKFLOW_DELAY_FROM_MS = 1_000;
const DELAY_TIMERS_PATCH = 'backfill-delay-timers';
/** Runs started before batches tuned themselves keep the fixed size they started with. */
const SELF_TUNING_PATCH = 'backfill-self-tuning';
/** Runs started before batches aimed shorter while the application is busy keep one target. */
const CONTENDED_TARGET_PATCH = 'backfill-contended-target';
const DEFAULT_CONTENDED_TARGET_BATCH_MS = 25;
const DEFAULT_CONTENDED_PAUSE_FACTOR = 3;
const DEFAULT_BATCH_SIZE = 1000;
const DEFAULT_TARGET_BATCH_MS = 200;
const DEFAULT_STREAMS = 2;

// The chunk heartbeats every second, also while a batch runs. The heartbeat timeout is above the
// batch statement timeout: a retry after a lost worker starts only once the lost attempt's batch
// has ended (committed with its checkpoint, or rolled back), and then resumes exactly there.
const { runBackfillChunk } = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '30 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: {
    initialInterval: '1 second',
    maximumAttempts: 20,
    nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES,
  },
});

export async function backfill(input: BackfillInput): Promise<BackfillProgress> {
  validate(input);
  const selfTuning = patched(SELF_TUNING_PATCH);
  const settings: { batchSize: number; delayMs: number; targetBatchMs: number | undefined } = {
    batchSize: input.batchSize ?? DEFAULT_BATCH_SIZE,
    delayMs: input.delayMs ?? 0,
    targetBatchMs:
      selfTuning && (input.batchSize === undefined || input.targetBatchMs !== undefined)
        ? (input.targetBatchMs ?? DEFAULT_TARGET_BATCH_MS)
        : undefined,
  };
  const sizeBounds = { minSize: input.minBatchSize ?? 100, maxSize: input.maxBatchSize ?? 100_000 };
  const contendedTargetMs =
    selfTuning && patched(CONTENDED_TARGET_PATCH)
      ? (input.contendedTargetBatchMs ?? DEFAULT_CONTENDED_TARGET_BATCH_MS)
      : undefined;
  const contendedPauseFactor = selfTuning
    ? (input.contendedPauseFactor ?? DEFAULT_CONTENDED_PAUSE_FACTOR)
    : undefined;
  /** Bumped by every accepted `configure`, so a pause between batches hears a new delay. */
  let settingsVersion = 0;
  // Absent thresholds take the activity's defaults (activities/postgres/throttle).
  const throttle: ThrottleLimits = {
    maxReplicaLagSeconds: input.maxReplicaLagSeconds ?? 10,
    maxActiveConnections: input.maxActiveConnections ?? 50,
    waitForAutovacuum: input.waitForAutovacuum,
    maxWalArchiveBacklogMb: input.maxWalArchiveBacklogMb,
    maxWalMbPerSecond: input.maxWalMbPerSecond,
    prometheus: input.prometheus,
  };
  let lastBatchMs: number | null = null;
  let aimedBatchMs: number | null = null;
  let busySessions: number | null = null;
  let streams = 1;
  let lastTimeout: string | undefined;
  let health: Reading[] = [];
  const checkpoint: BackfillCheckpoint =
    input.checkpoint === undefined
      ? {
          lastKey: null,
          batches: 0,
          rowsScanned: 0,
          rowsChanged: 0,
          busyMs: 0,
          estimatedRows: 0,
          paused: false,
          runs: 1,
        }
      : { ...input.checkpoint, runs: input.checkpoint.runs + 1 };

  let state: BackfillState = checkpoint.paused ? 'paused' : 'running';
  let throttleReason: string | undefined;
  let cancelled = false;
  const progress = (): BackfillProgress => {
    const rowsPerSecond =
      checkpoint.busyMs > 0 ? Math.round((checkpoint.rowsScanned * 1000) / checkpoint.busyMs) : 0;
    const left = Math.max(checkpoint.estimatedRows - checkpoint.rowsScanned, 0);
    return {
      name: input.name,
      instanceId: input.instanceId,
      state,
      rowsDone: checkpoint.rowsChanged,
      rowsScanned: checkpoint.rowsScanned,
      estimatedTotal: Math.max(checkpoint.estimatedRows, checkpoint.rowsScanned),
      rowsPerSecond,
      etaSeconds: state === 'completed' ? 0 : rowsPerSecond > 0 ? Math.round(left / rowsPerSecond) : null,
      batchSize: settings.batchSize,
      batchSizeMode: settings.targetBatchMs === undefined ? 'fixed' : 'auto',
      targetBatchMs: settings.targetBatchMs ?? null,
      aimedBatchMs: settings.targetBatchMs === undefined ? null : aimedBatchMs,
      busySessions,
      contendedPauseFactor: settings.targetBatchMs === undefined ? null : (contendedPauseFactor ?? null),
      streams,
      lastBatchMs,
      batchTimeouts: checkpoint.batchTimeouts ?? 0,
      lastTimeout,
      delayMs: settings.delayMs,
      lastKey: checkpoint.lastKey,
      batches: checkpoint.batches,
      throttleReason,
      health,
      runs: checkpoint.runs,
    };
  };

  // Every handler is set before the first await: a query, signal or update sent right after the
  // start is answered, not refused for want of a handler.
  setHandler(backfillProgressQuery, progress);
  setHandler(
    configureBackfillUpdate,
    (change) => {
      if (change.batchSize !== undefined) settings.batchSize = change.batchSize;
      if (change.delayMs !== undefined) settings.delayMs = change.delayMs;
      if (change.targetBatchMs !== undefined) settings.targetBatchMs = change.targetBatchMs;
      else if (change.batchSize !== undefined) settings.targetBatchMs = undefined;
      settingsVersion += 1;
      log.info('backfill settings changed', settings);
      return answer();
    },
    {
      validator: (change: BackfillSettings) => {
        checkSettings(change);
        if (change.targetBatchMs !== undefined && !selfTuning) {
          throw ApplicationFailure.nonRetryable(
            'targetBatchMs: this run started before batches tuned themselves; set batchSize',
            InvalidInputError.name,
          );
        }
      },
    },
  );
  setHandler(pauseBackfillSignal, () => {
    checkpoint.paused = true;
  });
  setHandler(resumeBackfillSignal, () => {
    checkpoint.paused = false;
  });
  setHandler(cancelBackfillSignal, () => {
    cancelled = true;
  });

  /** The settings in force, as `configure` answers them (the target only while self-tuning). */
  const answer = (): BackfillSettings => ({
    batchSize: settings.batchSize,
    delayMs: settings.delayMs,
    ...(settings.targetBatchMs === undefined ? {} : { targetBatchMs: settings.targetBatchMs }),
  });

  // Results of chunks run by earlier code lack the tuning and health fields.
  const record = (chunk: ChunkResult) => {
    checkpoint.lastKey = chunk.lastKey;
    checkpoint.batches += chunk.batches;
    checkpoint.rowsScanned += chunk.rowsScanned;
    checkpoint.rowsChanged += chunk.rowsChanged;
    checkpoint.busyMs += chunk.busyMs;
    if ((chunk.timeouts ?? 0) > 0) {
      checkpoint.batchTimeouts = (checkpoint.batchTimeouts ?? 0) + chunk.timeouts;
      lastTimeout = chunk.lastTimeout;
    }
    if (chunk.lastBatchMs !== undefined) lastBatchMs = chunk.lastBatchMs;
    if (chunk.health !== undefined) health = chunk.health;
    if (chunk.aimedMs !== undefined) aimedBatchMs = chunk.aimedMs;
    if (chunk.busySessions !== undefined) busySessions = chunk.busySessions;
    if (chunk.streams !== undefined) streams = chunk.streams;
  };

  /** A chunk; cancelled, what it committed before its running batch was rolled back is recorded. */
  const runChunk = async ({
    delayMs,
    chunkMs,
  }: {
    delayMs: number;
    chunkMs: number;
  }): Promise<ChunkResult> => {
    const seen = settingsVersion;
    const { targetBatchMs } = settings;
    try {
      const chunk = await runBackfillChunk({
        instanceId: input.instanceId,
        name: input.name,
        params: input.params,
        lastKey: checkpoint.lastKey,
        batchSize: settings.batchSize,
        ...(targetBatchMs === undefined
          ? {}
          : {
              tuning: {
                targetMs: targetBatchMs,
                ...(contendedTargetMs === undefined ? {} : { contendedTargetMs }),
                ...(contendedPauseFactor === undefined ? {} : { contendedPauseFactor }),
                ...sizeBounds,
              },
            }),
        delayMs,
        chunkMs,
        throttle,
        batchTimeoutMs: BATCH_TIMEOUT_MS,
        streams: input.streams ?? DEFAULT_STREAMS,
      });
      // The size the chunk tuned to, unless a `configure` set another meanwhile.
      if (targetBatchMs !== undefined && settingsVersion === seen) settings.batchSize = chunk.batchSize;
      return chunk;
    } catch (error) {
      if (error instanceof ActivityFailure && error.cause instanceof CancelledFailure) {
        const committed = error.cause.details[0] as ChunkResult | undefined;
        if (committed !== undefined) record(committed);
      }
      throw error;
    }
  };

  /** The pause after a batch as a workflow timer; a new delay, pause or cancel cuts it short. */
  const pauseBetweenBatches = async () => {
    const from = Date.now();
    for (;;) {
      const left = from + settings.delayMs - Date.now();
      if (left <= 0 || cancelled || checkpoint.paused) break;
      const seen = settingsVersion;
      await condition(() => cancelled || checkpoint.paused || settingsVersion !== seen, left);
    }
    checkpoint.busyMs += Date.now() - from;
  };

  try {
    if (input.checkpoint === undefined) {
      const description = await describeBackfill({
        instanceId: input.instanceId,
        name: input.name,
        params: input.params,
      });
      log.info(`backfill ${description.name}: ${description.description}`, {
        estimatedRows: description.estimatedRows,
      });
      checkpoint.estimatedRows = description.estimatedRows;
    }

    for (let chunks = 0; ; chunks++) {
      if (checkpoint.paused) {
        state = 'paused';
        await condition(() => !checkpoint.paused || cancelled);
      }
      if (cancelled) {
        state = 'cancelled';
        return progress();
      }
      if (chunks >= (input.chunksPerRun ?? 500) || workflowInfo().continueAsNewSuggested) {
        await condition(allHandlersFinished);
        return await continueAsNew<typeof backfill>({
          ...input,
          batchSize: settings.batchSize,
          delayMs: settings.delayMs,
          targetBatchMs: settings.targetBatchMs,
          checkpoint,
        });
      }
      state = 'running';
      const longDelay = settings.delayMs >= WORKFLOW_DELAY_FROM_MS;
      // Runs started before long delays became timers keep sleeping inside the chunk (under a
      // second, so within the chunk's timeout) until they continue as new.
      const timers = longDelay && patched(DELAY_TIMERS_PATCH);
      const chunk = await runChunk(
        timers
          ? { delayMs: 0, chunkMs: 0 }
          : { delayMs: Math.min(settings.delayMs, WORKFLOW_DELAY_FROM_MS - 1), chunkMs: CHUNK_MS },
      );
      record(chunk);
      if (chunk.done) {
        state = 'completed';
        throttleReason = undefined;
        return progress();
      }
      throttleReason = chunk.throttled;
      if (throttleReason !== undefined) {
        state = 'throttled';
        log.warn(`backfill throttled: ${throttleReason}`);
        await condition(() => cancelled, input.throttleWait ?? '10 seconds');
      } else if (timers) {
        await pauseBetweenBatches();
      }
    }
  } catch (error) {
    // Cancelled through Temporal: the running batch was cancelled and rolled back before this
    // point (the workflow waits for the chunk); the progress query still answers, exactly.
    if (isCancellation(error)) state = 'cancelled';
    throw error;
  }
}

function checkSettings(change: BackfillSettings): void {
  if (
    change.targetBatchMs !== undefined &&
    !(Number.isInteger(change.targetBatchMs) && change.targetBatchMs >= 10 && change.targetBatchMs <= 60_000)
  ) {
    throw ApplicationFailure.nonRetryable(
      `targetBatchMs: ${JSON.stringify(change.targetBatchMs)} is not an integer from 10 to 60000`,
      InvalidInputError.name,
    );
  }
  if (
    change.batchSize !== undefined &&
    !(Number.isInteger(change.batchSize) && change.batchSize >= 1 && change.batchSize <= 100_000)
  ) {
    throw ApplicationFailure.nonRetryable(
      `batchSize: ${JSON.stringify(change.batchSize)} is not an integer from 1 to 100000`,
      InvalidInputError.name,
    );
  }
  if (
    change.delayMs !== undefined &&
    !(Number.isInteger(change.delayMs) && change.delayMs >= 0 && change.delayMs <= 600_000)
  ) {
    throw ApplicationFailure.nonRetryable(
      `delayMs: ${JSON.stringify(change.delayMs)} is not an integer from 0 to 600000`,
      InvalidInputError.name,
    );
  }
}

function validate(input: BackfillInput): void {
  const bad = (message: string): never => {
    throw ApplicationFailure.nonRetryable(message, InvalidInputError.name);
  };
  if (typeof input !== 'object' || input === null)
    bad('input: expected an object like {"instanceId": "mcp-demo-prod", "name": "user-id-bigint"}');
  if (!isRdsIdentifier(input.instanceId))
    bad(`instanceId: ${JSON.stringify(input.instanceId)} is not ${RDS_IDENTIFIER_RULE}`);
  if (typeof input.name !== 'string' || input.name === '')
    bad(`name: ${JSON.stringify(input.name)} is not a backfill name`);
  checkSettings(input);
  for (const key of ['maxReplicaLagSeconds', 'maxActiveConnections', 'chunksPerRun'] as const) {
    const value = input[key];
    if (value !== undefined && !(typeof value === 'number' && value > 0))
      bad(`${key}: ${JSON.stringify(value)} is not a positive number`);
  }
  for (const key of ['maxWalArchiveBacklogMb', 'maxWalMbPerSecond'] as const) {
    const value = input[key];
    if (value !== undefined && !(typeof value === 'number' && Number.isFinite(value) && value >= 0))
      bad(`${key}: ${JSON.stringify(value)} is not a number from 0 up`);
  }
  if (input.streams !== undefined && input.streams !== 1 && input.streams !== 2)
    bad(`streams: ${JSON.stringify(input.streams)} is not 1 or 2`);
  const factor = input.contendedPauseFactor;
  if (factor !== undefined && !(typeof factor === 'number' && factor >= 0 && factor <= 10))
    bad(`contendedPauseFactor: ${JSON.stringify(factor)} is not a number from 0 to 10`);
  const contended = input.contendedTargetBatchMs;
  if (contended !== undefined && !(Number.isInteger(contended) && contended >= 10 && contended <= 60_000))
    bad(`contendedTargetBatchMs: ${JSON.stringify(contended)} is not an integer from 10 to 60000`);
  for (const key of ['minBatchSize', 'maxBatchSize'] as const) {
    const value = input[key];
    if (value !== undefined && !(Number.isInteger(value) && value >= 1 && value <= 100_000))
      bad(`${key}: ${JSON.stringify(value)} is not an integer from 1 to 100000`);
  }
  if ((input.minBatchSize ?? 100) > (input.maxBatchSize ?? 100_000))
    bad(`minBatchSize: ${input.minBatchSize ?? 100} is above maxBatchSize ${input.maxBatchSize ?? 100_000}`);
  if (input.waitForAutovacuum !== undefined && typeof input.waitForAutovacuum !== 'boolean')
    bad(`waitForAutovacuum: ${JSON.stringify(input.waitForAutovacuum)} is not true or false`);
  if (input.prometheus !== undefined) checkPrometheus(input.prometheus, bad);
  if (input.throttleWait !== undefined) toMs(input.throttleWait);
}

function checkPrometheus(signal: ThrottleLimits['prometheus'], bad: (message: string) => never): void {
  if (typeof signal !== 'object' || signal === null)
    bad('prometheus: expected {"url": "http://prometheus:9090", "query": "PROMQL", "threshold": N}');
  const { url, query, threshold } = signal;
  // Parsed by hand: the workflow sandbox has no URL class.
  const address = typeof url === 'string' ? /^https?:\/\/([^/?#]*)/.exec(url) : null;
  if (address === null || address[1] === '')
    bad(`prometheus.url: ${JSON.stringify(url)} is not an http(s) URL`);
  if (address[1]!.includes('@'))
    bad('prometheus.url: credentials do not go in the URL (no secret enters workflow input)');
  if (typeof query !== 'string' || query.trim() === '')
    bad(`prometheus.query: ${JSON.stringify(query)} is not a PromQL query`);
  if (typeof threshold !== 'number' || !Number.isFinite(threshold))
    bad(`prometheus.threshold: ${JSON.stringify(threshold)} is not a number`);
}
