/**
 * A Prometheus query as an SLO signal (e.g. the application's p99 latency): its first sample
 * against a threshold, asked at most every few seconds. A query that fails or returns nothing
 * counts as over: the backfill waits rather than run blind, and progress says why.
 */
import { reading, type HealthIndicator, type Reading } from './indicator';

const ASK_EVERY_MS = 5_000;
const TIMEOUT_MS = 3_000;

interface Asked {
  at: number;
  reading: Reading;
}

export const prometheus: HealthIndicator = {
  name: 'prometheus',
  async read({ limits, memory }) {
    const signal = limits.prometheus;
    if (signal === undefined) return undefined;
    const last = memory.get('prometheus') as Asked | undefined;
    if (last !== undefined && performance.now() - last.at < ASK_EVERY_MS) return last.reading;
    const indicator = `prometheus ${signal.query}`;
    let result: Reading;
    try {
      result = reading(indicator, await query(signal.url, signal.query), signal.threshold, '');
    } catch (error) {
      result = {
        indicator,
        value: 0,
        threshold: signal.threshold,
        unit: '',
        over: true,
        error: (error as Error).message,
      };
    }
    memory.set('prometheus', { at: performance.now(), reading: result });
    return result;
  },
};

/** The first sample's value of an instant query. */
async function query(url: string, promql: string): Promise<number> {
  const address = new URL('api/v1/query', url.endsWith('/') ? url : `${url}/`);
  address.searchParams.set('query', promql);
  const response = await fetch(address, { signal: AbortSignal.timeout(TIMEOUT_MS) });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const body = (await response.json()) as {
    data?: { resultType?: string; result?: unknown };
  };
  const result = body.data?.result;
  // A scalar is [time, "value"]; a vector is [{ value: [time, "value"] }, ...].
  const sample =
    body.data?.resultType === 'scalar'
      ? (result as [number, string])
      : (result as { value: [number, string] }[] | undefined)?.[0]?.value;
  if (sample === undefined) throw new Error('no sample');
  const value = Number(sample[1]);
  if (Number.isNaN(value)) throw new Error(`not a number: ${sample[1]}`);
  return value;
}
