import assert from 'node:assert/strict';

import { backfillProgressLine, shortDuration } from '../../workers/backfill-progress';
import type { BackfillProgress } from '../../workflows/backfill';

const halfway: BackfillProgress = {
  name: 'user-id-bigint',
  instanceId: 'mcp-demo-prod',
  state: 'running',
  rowsDone: 9_500,
  rowsScanned: 10_000,
  estimatedTotal: 20_000,
  rowsPerSecond: 1_250,
  etaSeconds: 8,
  batchSize: 1000,
  batchSizeMode: 'fixed',
  targetBatchMs: null,
  lastBatchMs: 150,
  batchTimeouts: 0,
  lastTimeout: undefined,
  delayMs: 0,
  lastKey: '10000',
  batches: 10,
  throttleReason: undefined,
  health: [],
  runs: 1,
};

describe('backfill progress bar', () => {
  it('shows rows walked of the estimate, rows changed, rate, batch size, ETA and state', () => {
    assert.equal(
      backfillProgressLine(halfway, 10),
      '[#####-----]   50.0%  10000/20000 rows (9500 changed)  1250 rows/s  batch 1000  ETA 8s  running',
    );
  });

  it('a self-tuned batch size shows its last duration against the target, and its timeouts', () => {
    const tuned = { ...halfway, batchSizeMode: 'auto', targetBatchMs: 200, batchSize: 4000 } as const;
    assert.match(backfillProgressLine(tuned, 4), / {2}batch 4000 \(auto, last 150 ms of 200 ms\) {2}/);
    assert.match(
      backfillProgressLine({ ...tuned, batchTimeouts: 2 }, 4),
      / {2}batch 4000 \(auto, last 150 ms of 200 ms, 2 timed out\) {2}/,
    );
  });

  it('while other sessions are busy, a self-tuned batch shows the shorter target it aims at and why', () => {
    const tuned = { ...halfway, batchSizeMode: 'auto', targetBatchMs: 200, batchSize: 900 } as const;
    assert.match(
      backfillProgressLine({ ...tuned, lastBatchMs: 19, aimedBatchMs: 20, busySessions: 3 }, 4),
      / {2}batch 900 \(auto, last 19 ms of 20 ms: 3 sessions busy\) {2}/,
    );
    assert.match(
      backfillProgressLine(
        { ...tuned, lastBatchMs: 19, aimedBatchMs: 20, busySessions: 3, contendedPauseFactor: 2 },
        4,
      ),
      / {2}batch 900 \(auto, last 19 ms of 20 ms: 3 sessions busy, pausing 2× each batch\) {2}/,
    );
    assert.match(
      backfillProgressLine({ ...tuned, lastBatchMs: 190, aimedBatchMs: 200, busySessions: 0 }, 4),
      / {2}batch 900 \(auto, last 190 ms of 200 ms\) {2}/,
    );
  });

  it('two batches side by side show as ×2', () => {
    const tuned = { ...halfway, batchSizeMode: 'auto', targetBatchMs: 200, batchSize: 30000 } as const;
    assert.match(
      backfillProgressLine({ ...tuned, lastBatchMs: 210, aimedBatchMs: 200, busySessions: 0, streams: 2 }, 4),
      / {2}batch 30000 ×2 \(auto, last 210 ms of 200 ms\) {2}/,
    );
    assert.match(
      backfillProgressLine({ ...tuned, lastBatchMs: 48, aimedBatchMs: 50, busySessions: 1, streams: 1 }, 4),
      / {2}batch 30000 \(auto, last 48 ms of 50 ms: 1 session busy\) {2}/,
    );
  });

  it('a throttled backfill says why; no ETA before the first batch', () => {
    const line = backfillProgressLine(
      {
        ...halfway,
        state: 'throttled',
        rowsScanned: 0,
        rowsDone: 0,
        etaSeconds: null,
        throttleReason: 'active sessions 60 > 50',
      },
      4,
    );
    assert.equal(
      line,
      '[----]    0.0%  0/20000 rows (0 changed)  1250 rows/s  batch 1000  ETA -  throttled (active sessions 60 > 50)',
    );
  });

  it('a completed backfill is full even when the estimate was low; walking past it stays at 100%', () => {
    assert.match(
      backfillProgressLine({ ...halfway, state: 'completed', rowsScanned: 25_000, etaSeconds: 0 }, 4),
      /^\[####\] {2}100\.0% {2}25000\/20000 rows .* ETA 0s {2}completed$/,
    );
    assert.match(backfillProgressLine({ ...halfway, rowsScanned: 25_000 }, 4), /^\[####\] {2}100\.0%/);
  });

  it('durations read as hours and minutes, minutes and seconds, or seconds', () => {
    assert.deepEqual(
      [shortDuration(3725), shortDuration(185), shortDuration(12.4)],
      ['1h02m', '3m05s', '12s'],
    );
  });
});
