import { ApplicationFailure, log, metricMeter, patched, proxyActivities } from '@temporalio/workflow';

import type { Activities } from '../activities';
import type { RecoverabilityDescription } from '../activities/control-plane/control-plane';
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
import { recordRecoverability } from './lib/metrics';

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
  /** The newest snapshot and restorable time of the named instance; null without `instanceId`. */
  recoverability?: RecoverabilityDescription | null;
}

// The measurement heartbeats every second (sent at least every 5 s): a lost worker is noticed
// after 30 s instead of the whole 2 minutes.
const { measureHealth, describeRecoverability } = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '30 seconds',
  retry: DATABASE_RETRY,
});

/** Runs started before the health check measured recoverability replay without that call. */
const RECOVERABILITY = 'health-check-recoverability';

/** The runbook's alert conditions, checked on the database itself; every finding is logged. */
export async function healthCheck(input: HealthCheckInput = {}): Promise<HealthCheckResult> {
  const thresholds = validate(input);
  // The recoverability gauges (newest snapshot, recovery point) are updated here because the
  // health check is what runs often for every instance (its schedule: every few minutes); the DR
  // test (monthly) and backups (daily at best) are too rare for a recovery point measured in
  // minutes. Measured first, from the ControlPlane alone: a database that cannot be reached still
  // gets them. The worker's configured database without an instance id has no ControlPlane entry.
  let recoverability: RecoverabilityDescription | null = null;
  if (input.instanceId !== undefined && patched(RECOVERABILITY)) {
    recoverability = await describeRecoverability(input.instanceId);
    recordRecoverability(metricMeter, recoverability);
  }
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
  return { ...snapshot, instanceId: input.instanceId ?? null, findings, status, recoverability };
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
