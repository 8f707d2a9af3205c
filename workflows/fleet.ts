/**
 * `fleet`: one operation (`drTest`, `maintenance` or `healthCheck`) over every instance carrying a
 * tag (`key=value`; no tag: every managed instance, i.e. every instance that is not a copy dbops
 * made), so a team with many databases runs the monthly DR test, the weekly maintenance or a health
 * round once instead of once per database, and reads one summary. Each instance's operation is a
 * child workflow of its own (its own history, retries, progress and, for a DR test, its own
 * report), run as it is when started alone.
 *
 * Steps, in order:
 * 1. Validate the input (operation, tag, concurrency 1-20, default 3; timeouts and the point in
 *    time to restore to for drTest only).
 * 2. List the instances through the control plane; keep those the tag selects, sorted by id; the
 *    other managed instances are reported as skipped.
 * 3. Run one child per instance, at most `concurrency` at once (that many lanes, each taking the
 *    next instance when its child ends). A child's id is `<fleet workflow id>--<instance>`: a
 *    retried or reset fleet run meets the children its earlier run started (the id is refused as
 *    taken) and waits for their outcome instead of running the operation twice. A child that
 *    fails is recorded and the lanes go on.
 * 4. Cancelling the fleet cancels its running children and waits until they have ended (a DR test
 *    deletes its copy in its own cleanup); children not started yet are reported as not started.
 *    Closing the fleet any other way (terminate, timeout) asks its children to cancel as well.
 * 5. Write the summary (per instance: outcome, RPO / RTO or findings, the child's workflow id and
 *    its report's locations) as JSON and Markdown, in a scope that cannot be cancelled, and return
 *    it; the run fails with the summary (FleetFailed) when an instance failed or was cancelled.
 *
 * The `fleetProgress` query gives the state of every instance (pending, running, done) at any time.
 */
import {
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  ChildWorkflowFailure,
  defineQuery,
  executeChild,
  isCancellation,
  log,
  ParentClosePolicy,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
  WorkflowIdReusePolicy,
} from '@temporalio/workflow';

import type { Activities } from '../activities';
import type { InstanceDescription } from '../activities/control-plane/control-plane';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';

import type { ChildOutcome } from '../activities/recovery/fleet';
import { drTest, requirePointInTime } from './dr-test';
import { healthCheck, type HealthCheckResult } from './health-check';
import { maintenance, type MaintenanceResult } from './maintenance';
import { OWNER_TAGS } from './lib/owner-tags';
import {
  invalidInput,
  rejectUnknownFields,
  requireObject,
  timeouts as parseTimeouts,
  type DrTestReport,
  type RecoveryTimeouts,
} from './lib/recovery';
import { controlPlane, failureMessage } from './lib/recovery-steps';
import { DbopsOperation } from './lib/search-attributes';

export const FLEET_OPERATIONS = ['drTest', 'maintenance', 'healthCheck'] as const;
export type FleetOperation = (typeof FLEET_OPERATIONS)[number];

export const DEFAULT_FLEET_CONCURRENCY = 3;
export const MAX_FLEET_CONCURRENCY = 20;

export interface FleetInput {
  operation: FleetOperation;
  /** `key=value`: only instances with that tag; absent: every managed instance. */
  tag?: string;
  /** Children running at once: 1 to 20, default 3. */
  concurrency?: number;
  /** drTest only: the children's timeouts (as drTest takes them). */
  timeouts?: Partial<RecoveryTimeouts>;
  /** drTest only: what each child restores to (as drTest takes it); absent: its latest snapshot. */
  pointInTime?: string;
}

export type FleetOutcome = 'passed' | 'warning' | 'failed' | 'cancelled' | 'not-started';

export interface FleetInstanceResult {
  instanceId: string;
  /** The child run's workflow id: its history, and the name its own report is filed under. */
  workflowId: string;
  state: 'pending' | 'running' | 'done';
  /** null until the child has ended. */
  outcome: FleetOutcome | null;
  startedAt: string | null;
  finishedAt: string | null;
  /** One line: what the child found or why it failed. */
  summary: string;
  /** drTest: the snapshot's age when the test started, and the restore's duration. */
  rpoSeconds: number | null;
  rtoSeconds: number | null;
  /** Failed checks, health findings above info, maintenance notes. */
  findings: string[];
  /** Where the child's own report went (drTest). */
  reportLocations: string[];
}

export interface FleetReport {
  workflowId: string;
  operation: FleetOperation;
  tag: string | null;
  concurrency: number;
  ok: boolean;
  startedAt: string;
  finishedAt: string;
  /** Managed instances the tag did not select. */
  skipped: string[];
  instances: FleetInstanceResult[];
  /** Where this summary was written (filled in after writing). */
  reportLocations: string[];
}

export interface FleetProgress {
  operation: FleetOperation;
  pending: number;
  running: number;
  done: number;
  instances: Pick<FleetInstanceResult, 'instanceId' | 'workflowId' | 'state' | 'outcome' | 'summary'>[];
}

export const fleetProgressQuery = defineQuery<FleetProgress>('fleetProgress');

/** Waiting for a child an earlier run of this fleet started: as long as the longest child may run. */
const { awaitFleetChild } = proxyActivities<Activities>({
  startToCloseTimeout: '3 days',
  heartbeatTimeout: '1 minute',
  retry: { maximumInterval: '1 minute' },
});

export async function fleet(input: FleetInput): Promise<FleetReport> {
  const valid = validate(input);
  const { workflowId } = workflowInfo();
  upsertSearchAttributes([{ key: DbopsOperation, value: 'fleet' }]);
  const report: FleetReport = {
    workflowId,
    operation: valid.operation,
    tag: valid.tag === undefined ? null : `${valid.tag.key}=${valid.tag.value}`,
    concurrency: valid.concurrency,
    ok: false,
    startedAt: new Date().toISOString(),
    finishedAt: new Date().toISOString(),
    skipped: [],
    instances: [],
    reportLocations: [],
  };
  setHandler(fleetProgressQuery, () => progressOf(report));

  const managed = (await controlPlane.listInstances())
    .filter((instance) => instance.tags[OWNER_TAGS.purpose] === undefined)
    .sort((a, b) => a.instanceId.localeCompare(b.instanceId));
  const selected = managed.filter((instance) => selects(valid.tag, instance));
  report.skipped = managed.filter((instance) => !selected.includes(instance)).map((i) => i.instanceId);
  report.instances = selected.map((instance) => ({
    instanceId: instance.instanceId,
    workflowId: `${workflowId}--${instance.instanceId}`,
    state: 'pending',
    outcome: null,
    startedAt: null,
    finishedAt: null,
    summary: 'not started yet',
    rpoSeconds: null,
    rtoSeconds: null,
    findings: [],
    reportLocations: [],
  }));
  log.info(
    `${valid.operation} over ${selected.length} instance(s), ${valid.concurrency} at a time` +
      (report.skipped.length > 0 ? `; not selected: ${report.skipped.join(', ')}` : ''),
    { tag: report.tag },
  );

  let cancelled: CancelledFailure | undefined;
  const queue = [...report.instances];
  const lane = async () => {
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
      // Cancelled (even if the children running then ended anyway): start no more.
      if (CancellationScope.current().consideredCancelled) {
        cancelled ??= new CancelledFailure('the fleet run was cancelled');
        return;
      }
      try {
        await runChild(valid, next, report);
      } catch (error) {
        if (!isCancellation(error)) throw error;
        Object.assign(next, { outcome: 'cancelled', summary: 'cancelled with the fleet run' });
        cancelled ??= new CancelledFailure('the fleet run was cancelled');
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(valid.concurrency, queue.length) }, lane));

  await CancellationScope.nonCancellable(async () => {
    for (const instance of report.instances.filter((i) => i.state === 'pending')) {
      Object.assign(instance, {
        state: 'done',
        outcome: 'not-started',
        summary: 'the fleet run was cancelled first',
      });
    }
    report.finishedAt = new Date().toISOString();
    report.ok = report.instances.every((i) => i.outcome === 'passed' || i.outcome === 'warning');
    try {
      report.reportLocations = await controlPlane.writeFleetReport(report);
    } catch (error) {
      log.error(`the fleet summary could not be written: ${failureMessage(error)}`);
    }
  });
  if (cancelled !== undefined) throw cancelled;

  const counts = FLEET_OUTCOMES.map(
    (o) => [o, report.instances.filter((i) => i.outcome === o).length] as const,
  )
    .filter(([, n]) => n > 0)
    .map(([o, n]) => `${n} ${o}`);
  const summary = `${valid.operation} over ${report.instances.length} instance(s): ${counts.join(', ') || 'none selected'}`;
  if (!report.ok) {
    const failed = report.instances.filter((i) => i.outcome !== 'passed' && i.outcome !== 'warning');
    log.error(`ALERT: ${summary} (${failed.map((i) => `${i.instanceId}: ${i.summary}`).join('; ')})`, {
      reportLocations: report.reportLocations,
    });
    throw ApplicationFailure.create({
      message: summary,
      type: 'FleetFailed',
      nonRetryable: true,
      details: [report],
    });
  }
  log.info(summary, { reportLocations: report.reportLocations });
  return report;
}

const FLEET_OUTCOMES: FleetOutcome[] = ['passed', 'warning', 'failed', 'cancelled', 'not-started'];

/** Runs (or, started by an earlier run of this fleet, waits for) one instance's child. */
async function runChild(
  valid: ReturnType<typeof validate>,
  instance: FleetInstanceResult,
  report: FleetReport,
): Promise<void> {
  const { instanceId, workflowId } = instance;
  instance.state = 'running';
  instance.summary = 'running';
  instance.startedAt = new Date().toISOString();
  setCurrentDetails(describeProgress(progressOf(report)));
  const options = {
    workflowId,
    // Ids are never reused: a retried fleet run meets the child its earlier run started.
    workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
    // A fleet closed without its own cancel (terminated, timed out) still lets children clean up.
    parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
  };
  let outcome: ChildOutcome;
  try {
    const result =
      valid.operation === 'drTest'
        ? await executeChild(drTest, {
            ...options,
            args: [
              {
                instanceId,
                timeouts: valid.timeouts,
                ...(valid.pointInTime === undefined ? {} : { pointInTime: valid.pointInTime }),
              },
            ],
          })
        : valid.operation === 'maintenance'
          ? await executeChild(maintenance, { ...options, args: [{ instanceId }] })
          : await executeChild(healthCheck, { ...options, args: [{ instanceId }] });
    outcome = { status: 'completed', result };
  } catch (error) {
    if (error instanceof WorkflowExecutionAlreadyStartedError) {
      log.info(`${workflowId} was started by an earlier run of this fleet: waiting for its outcome`);
      outcome = await awaitFleetChild(workflowId);
    } else if (error instanceof ChildWorkflowFailure && error.cause instanceof ApplicationFailure) {
      outcome = {
        status: 'failed',
        message: error.cause.message,
        type: error.cause.type ?? null,
        details: error.cause.details ?? [],
      };
    } else if (isCancellation(error)) {
      throw error;
    } else {
      outcome = { status: 'failed', message: failureMessage(error), type: null, details: [] };
    }
  } finally {
    instance.state = 'done';
    instance.finishedAt = new Date().toISOString();
  }
  Object.assign(instance, describeOutcome(valid.operation, outcome));
  log.info(`${instanceId}: ${instance.outcome}: ${instance.summary}`, { workflowId });
  setCurrentDetails(describeProgress(progressOf(report)));
}

/** What a child's ending says, for the summary. */
function describeOutcome(
  operation: FleetOperation,
  outcome: ChildOutcome,
): Pick<
  FleetInstanceResult,
  'outcome' | 'summary' | 'rpoSeconds' | 'rtoSeconds' | 'findings' | 'reportLocations'
> {
  const none = { rpoSeconds: null, rtoSeconds: null, findings: [], reportLocations: [] };
  if (outcome.status === 'cancelled') return { ...none, outcome: 'cancelled', summary: outcome.message };
  if (outcome.status === 'failed') {
    // A failed DR test carries its report: its timings, failed checks and report files.
    const dr = outcome.type === 'DrTestFailed' ? (outcome.details[0] as DrTestReport | undefined) : undefined;
    return dr === undefined
      ? { ...none, outcome: 'failed', summary: outcome.message, findings: [outcome.message] }
      : { ...drFigures(dr), outcome: 'failed', summary: outcome.message };
  }
  if (operation === 'drTest') {
    const dr = outcome.result as DrTestReport;
    return {
      ...drFigures(dr),
      outcome: 'passed',
      summary: `${dr.checks.length} checks passed, RPO ${dr.rpoSeconds ?? '?'} s, RTO ${dr.rtoSeconds ?? '?'} s`,
    };
  }
  if (operation === 'healthCheck') {
    const health = outcome.result as HealthCheckResult;
    const findings = health.findings
      .filter((f) => f.severity !== 'info')
      .map((f) => `${f.severity} ${f.check}: ${f.message}`);
    return {
      ...none,
      outcome: health.status === 'critical' ? 'failed' : health.status === 'warning' ? 'warning' : 'passed',
      summary: `health ${health.status}, ${findings.length} finding(s) above info`,
      findings,
    };
  }
  const done = outcome.result as MaintenanceResult;
  const findings = [
    ...(done.stopped === undefined ? [] : [`stopped: ${done.stopped}`]),
    ...done.after.unusedIndexes.map((i) => `unused index ${i.schema}.${i.index} on ${i.table}`),
  ];
  return { ...none, outcome: 'passed', summary: `${done.vacuumed.length} table(s) vacuumed`, findings };
}

function drFigures(dr: DrTestReport) {
  return {
    rpoSeconds: dr.rpoSeconds,
    rtoSeconds: dr.rtoSeconds,
    findings: [
      ...(dr.error === null ? [] : [dr.error]),
      ...dr.checks.filter((c) => c.status === 'failed').map((c) => `${c.name}: ${c.detail}`),
    ],
    reportLocations: dr.reportLocations,
  };
}

function progressOf(report: FleetReport): FleetProgress {
  const count = (state: FleetInstanceResult['state']) =>
    report.instances.filter((i) => i.state === state).length;
  return {
    operation: report.operation,
    pending: count('pending'),
    running: count('running'),
    done: count('done'),
    instances: report.instances.map(({ instanceId, workflowId, state, outcome, summary }) => ({
      instanceId,
      workflowId,
      state,
      outcome,
      summary,
    })),
  };
}

function describeProgress(progress: FleetProgress): string {
  return `fleet ${progress.operation}: ${progress.done} done, ${progress.running} running, ${progress.pending} pending`;
}

function selects(tag: { key: string; value: string } | undefined, instance: InstanceDescription): boolean {
  return tag === undefined || instance.tags[tag.key] === tag.value;
}

/** `key=value`: a tag key of letters, digits and `_.:/=+-@` (as RDS allows), any value but empty. */
export function parseFleetTag(text: string): { key: string; value: string } | undefined {
  const match = /^([\w.:/+\-@]{1,128})=(.{1,256})$/u.exec(text);
  return match === null ? undefined : { key: match[1]!, value: match[2]! };
}

export const FLEET_TAG_RULE =
  'key=value, e.g. env=prod (a key of letters, digits and _.:/+-@, a non-empty value)';

function validate(raw: unknown) {
  const input = requireObject(raw);
  rejectUnknownFields(input, ['operation', 'tag', 'concurrency', 'timeouts', 'pointInTime']);
  const operation = input.operation as FleetOperation;
  if (!FLEET_OPERATIONS.includes(operation)) {
    throw invalidInput(
      `operation ${JSON.stringify(input.operation)} is not valid: one of ${FLEET_OPERATIONS.join(', ')}`,
    );
  }
  let tag: { key: string; value: string } | undefined;
  if (input.tag !== undefined) {
    tag = typeof input.tag === 'string' ? parseFleetTag(input.tag) : undefined;
    if (tag === undefined)
      throw invalidInput(`tag ${JSON.stringify(input.tag)} is not valid: ${FLEET_TAG_RULE}`);
  }
  const concurrency = input.concurrency ?? DEFAULT_FLEET_CONCURRENCY;
  if (
    !Number.isInteger(concurrency) ||
    (concurrency as number) < 1 ||
    (concurrency as number) > MAX_FLEET_CONCURRENCY
  ) {
    throw invalidInput(
      `concurrency ${JSON.stringify(input.concurrency)} is not valid: a whole number from 1 to ${MAX_FLEET_CONCURRENCY}`,
    );
  }
  for (const field of ['timeouts', 'pointInTime'] as const) {
    if (input[field] !== undefined && operation !== 'drTest') {
      throw invalidInput(`${field} is for the drTest operation only, not for ${operation}`);
    }
  }
  return {
    operation,
    tag,
    concurrency: concurrency as number,
    timeouts: operation === 'drTest' ? parseTimeouts(input.timeouts) : undefined,
    pointInTime: input.pointInTime === undefined ? undefined : requirePointInTime(input.pointInTime),
  };
}
