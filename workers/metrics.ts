/**
 * The worker's Prometheus endpoint. The Temporal SDK runtime serves it: its own metrics (prefix
 * `temporal_`) and ours (workflows/lib/metrics.ts, recorded through the SDK's metric meter) end up
 * on one `/metrics`. The runtime is a process-wide singleton: install it once, before the first
 * connection or worker.
 */
import { DefaultLogger, Runtime, type Logger, type LogLevel } from '@temporalio/worker';

/** `logger`: where the SDK's log lines go (default: stderr at `logLevel`). */
export function installMetricsRuntime(
  port: number,
  host = '0.0.0.0',
  logLevel: LogLevel = 'INFO',
  logger: Logger = new DefaultLogger(logLevel),
): void {
  Runtime.install({
    logger,
    telemetryOptions: {
      metrics: {
        prometheus: {
          bindAddress: `${host}:${port}`,
          // Prometheus conventions: counters end in _total, durations in seconds.
          countersTotalSuffix: true,
          useSecondsForDurations: true,
        },
      },
    },
  });
}
