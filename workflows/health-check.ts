import { ApplicationFailure, log, proxyActivities } from '@temporalio/workflow';

import type { Activities } from '../activities';
import type { HealthSnapshot } from '../activities/postgres/health';
import { InvalidInputError } from './lib/errors';
import { DATABASE_RETRY } from './lib/retry';
import {
  DEFAULT_THRESHOLDS,
  evaluateHealth,
  type Finding,
  type HealthThresholds,
  type Severity,
} from './lib/health-findings';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from './lib/identifiers';

export interface HealthCheckInput {
  /** The instance (found through the ControlPlane); absent: the worker's configured database. */
  instanceId?: string;
  thresholds?: Partial<HealthThresholds>;
}

export interface HealthCheckResult extends HealthSnapshot {
  instanceId: string | null;
  findings: Finding[];
  /** The most severe finding, or `ok` when there is none above info. */
  status: 'ok' | Exclude<Severity, 'info'>;
}

// The measurement heartbeats every second (sent at least every 5 s): a lost worker is noticed
// after 30 s instead of the whole 2 minutes.
const { measureHealth } = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '30 seconds',
  retry: DATABASE_RETRY,
});

/** The runbook's alert conditions, checked on the database itself; every finding is logged. */
export async function healthCheck(input: HealthCheckInput = {}): Promise<HealthCheckResult> {
  const thresholds = validate(input);
  const snapshot = await measureHealth({ instanceId: input.instanceId });
  const findings = evaluateHealth(snapshot, thresholds);
  for (const finding of findings) {
    const fields = { check: finding.check, severity: finding.severity, instanceId: input.instanceId };
    if (finding.severity === 'critical') log.error(finding.message, fields);
    else if (finding.severity === 'warning') log.warn(finding.message, fields);
    else log.info(finding.message, fields);
  }
  const status = findings.some((f) => f.severity === 'critical')
    ? 'critical'
    : findings.some((f) => f.severity === 'warning')
      ? 'warning'
      : 'ok';
  return { ...snapshot, instanceId: input.instanceId ?? null, findings, status };
}

function validate(input: HealthCheckInput): HealthThresholds {
  if (input.instanceId !== undefined && !isRdsIdentifier(input.instanceId)) {
    throw ApplicationFailure.nonRetryable(
      `instanceId ${JSON.stringify(input.instanceId)} is not valid: ${RDS_IDENTIFIER_RULE}`,
      InvalidInputError.name,
    );
  }
  const thresholds = { ...DEFAULT_THRESHOLDS, ...input.thresholds };
  for (const [name, value] of Object.entries(thresholds)) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw ApplicationFailure.nonRetryable(
        `thresholds.${name} is ${JSON.stringify(value)}; expected a number >= 0`,
        InvalidInputError.name,
      );
    }
  }
  return thresholds;
}
