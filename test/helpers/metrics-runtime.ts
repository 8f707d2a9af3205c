/**
 * Mocha root hook (loaded from .mocharc.json): installs the Temporal runtime with its Prometheus
 * endpoint once for the whole test process, before any suite creates a connection. The runtime is
 * a singleton; when idle it shuts down and comes back with the same options, on the same port.
 */
import { freePort } from '../../activities/ports';
import { installMetricsRuntime } from '../../workers/metrics';

let metricsPort: number | undefined;

/** Where the test process's worker metrics are served. */
export function metricsUrl(): string {
  if (metricsPort === undefined) throw new Error('the metrics runtime is not installed (see .mocharc.json)');
  return `http://127.0.0.1:${metricsPort}/metrics`;
}

export const mochaHooks = {
  async beforeAll(): Promise<void> {
    if (metricsPort !== undefined) return;
    metricsPort = await freePort();
    installMetricsRuntime(metricsPort, '127.0.0.1', 'WARN'); // the suites' own assertions say what happened
  },
};
