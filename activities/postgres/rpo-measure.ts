/**
 * The measured RPO of a point-in-time DR test: on the restored copy, the newest RPO heartbeat
 * (rpo-heartbeat.ts) against the time the copy was restored to. The copy must hold data up to
 * the target and nothing after it, so the heartbeat must be at or before the target and no
 * further from it than the limit; either way round it is a finding.
 */
import type { Endpoint } from '../control-plane/control-plane';
import type { DatabaseConnector } from './connect';
import type { DrCheck } from './dr-checks';
import { newestHeartbeat } from './rpo-heartbeat';

export interface RpoMeasureInput {
  /** The restored copy. */
  endpoint: Endpoint;
  /** The time the copy was restored to (ISO). */
  target: string;
  /** The largest gap between the newest heartbeat and the target that passes. */
  limitSeconds: number;
}

export interface RpoMeasurement {
  /** The copy's newest heartbeat (ISO), null when it has none. */
  newestHeartbeat: string | null;
  /** Target minus newest heartbeat: the copy's data reaches to within this of the target. */
  dataWithinSeconds: number | null;
  /** The `rpo` check of the report. */
  check: DrCheck;
}

export function createRpoMeasureActivities(connector: DatabaseConnector) {
  return {
    async measureRpo(input: RpoMeasureInput): Promise<RpoMeasurement> {
      const newest = await connector.withEndpoint(input.endpoint, newestHeartbeat);
      return judgeRpo(input, newest);
    },
  };
}

/** The check for a copy whose newest heartbeat is `newest`. */
export function judgeRpo(
  input: Pick<RpoMeasureInput, 'target' | 'limitSeconds'>,
  newest: string | null,
): RpoMeasurement {
  if (newest === null) {
    return {
      newestHeartbeat: null,
      dataWithinSeconds: null,
      check: {
        name: 'rpo',
        status: 'skipped',
        detail:
          `the copy has no RPO heartbeat at or before ${input.target}: the worker's heartbeat ` +
          '(DBOPS_RPO_HEARTBEAT) is off for this instance, or began after the target',
      },
    };
  }
  const within = Math.round((Date.parse(input.target) - Date.parse(newest)) / 100) / 10;
  const measured = { newestHeartbeat: newest, dataWithinSeconds: within };
  if (within < 0) {
    return {
      ...measured,
      check: {
        name: 'rpo',
        status: 'failed',
        detail: `the copy holds a heartbeat of ${newest}, after the target ${input.target}: the restore did not stop at the target`,
      },
    };
  }
  const passed = within <= input.limitSeconds;
  return {
    ...measured,
    check: {
      name: 'rpo',
      status: passed ? 'passed' : 'failed',
      detail:
        `data to within ${within.toFixed(1)} s of the target ${input.target} (newest heartbeat ${newest})` +
        (passed
          ? ''
          : `: more than the limit of ${input.limitSeconds} s, so the log chain lost data or the heartbeat stopped`),
    },
  };
}
