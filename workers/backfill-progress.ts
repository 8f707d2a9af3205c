/** The one-line progress bar `dbops status` and `dbops backfill` show for a backfill. */
import type { BackfillProgress } from '../workflows/backfill';

/** `1h02m`, `3m05s`, `12s`. */
export function shortDuration(seconds: number): string {
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

/**
 * `batch 4000 (auto, last 180 ms of 200)`; `batch 3500 (auto, last 48 ms of 50 ms: 3 sessions busy,
 * pausing 2× each batch)` while the application is busy; `batch 40000 ×2 (auto, …)` while two run
 * side by side; `batch 1000` when the size is fixed.
 */
function batchPart(progress: BackfillProgress): string {
  if (progress.batchSizeMode !== 'auto') return `batch ${progress.batchSize}`;
  const last = progress.lastBatchMs === null ? '' : `last ${progress.lastBatchMs} ms of `;
  const aimed = progress.aimedBatchMs ?? progress.targetBatchMs;
  const sessions = progress.busySessions ?? 0;
  const factor = progress.contendedPauseFactor ?? 0;
  const pause = sessions > 0 && factor > 0 ? `, pausing ${factor}× each batch` : '';
  const busy =
    aimed !== progress.targetBatchMs || pause !== ''
      ? `: ${sessions} session${sessions === 1 ? '' : 's'} busy${pause}`
      : '';
  const timeouts = progress.batchTimeouts > 0 ? `, ${progress.batchTimeouts} timed out` : '';
  const side = progress.streams === 2 ? ' ×2' : '';
  return `batch ${progress.batchSize}${side} (auto, ${last}${aimed} ms${busy}${timeouts})`;
}

/**
 * e.g. `[######------]  50.0%  10000/20000 rows (10000 changed)  1200 rows/s  batch 4000 (auto, last
 * 180 ms of 200 ms)  ETA 8s  running`; throttled, the state names the indicator and its reading.
 * The bar follows rows walked against the estimate (the estimate comes from planner statistics,
 * so a completed backfill shows 100% whatever it said).
 */
export function backfillProgressLine(progress: BackfillProgress, width = 30): string {
  const fraction =
    progress.state === 'completed'
      ? 1
      : progress.estimatedTotal > 0
        ? Math.min(progress.rowsScanned / progress.estimatedTotal, 1)
        : 0;
  const filled = Math.round(fraction * width);
  const eta = progress.etaSeconds === null ? '-' : shortDuration(progress.etaSeconds);
  const state =
    progress.throttleReason === undefined ? progress.state : `${progress.state} (${progress.throttleReason})`;
  return [
    `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`,
    `${(fraction * 100).toFixed(1).padStart(5)}%`,
    `${progress.rowsScanned}/${progress.estimatedTotal} rows (${progress.rowsDone} changed)`,
    `${progress.rowsPerSecond} rows/s`,
    batchPart(progress),
    `ETA ${eta}`,
    state,
  ].join('  ');
}
