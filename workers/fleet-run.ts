/**
 * A fleet run from the command line (`dbops dr-test --all`, `dbops maintenance --all`, `dbops
 * health --all`): the command's flags checked before anything starts, the `fleet` workflow started
 * under `fleet-<operation>-<tag or all>-<UTC stamp>`, one progress line per instance whenever its
 * state changes (on stderr), and the summary as a table (or `--json`).
 */
import type { Client } from '@temporalio/client';

import { fleet } from '../workflows';
import {
  FLEET_TAG_RULE,
  fleetProgressQuery,
  MAX_FLEET_CONCURRENCY,
  parseFleetTag,
  type FleetOperation,
  type FleetReport,
} from '../workflows/fleet';
import { utcStamp } from '../workflows/lib/recovery';
import { loadConfig } from './config';
import {
  clock,
  explainFailure,
  integerOption,
  pollTimeouts,
  print,
  reportOfFailure,
  UsageError,
  whileRunning,
  withTemporal,
} from './cli/common';

export interface FleetFlags {
  all?: boolean;
  tag?: string;
  concurrency?: string;
}

/** The flags a fleet command adds: `--all [--tag k=v] [--concurrency N]`. */
export const FLEET_FLAGS = {
  all: { type: 'boolean' },
  tag: { type: 'string' },
  concurrency: { type: 'string' },
} as const;

/** `--tag` and `--concurrency` checked (they need `--all`); undefined without `--all`. */
export function fleetOptions(
  command: string,
  flags: FleetFlags,
): { tag: string | undefined; concurrency: number | undefined } | undefined {
  if (flags.all !== true) {
    if (flags.tag !== undefined || flags.concurrency !== undefined) {
      throw new UsageError(`dbops ${command}: --tag and --concurrency go with --all`);
    }
    return undefined;
  }
  if (flags.tag !== undefined && parseFleetTag(flags.tag) === undefined) {
    throw new UsageError(
      `dbops ${command}: --tag ${JSON.stringify(flags.tag)} is not valid: ${FLEET_TAG_RULE}`,
    );
  }
  const concurrency = integerOption(command, 'concurrency', flags.concurrency);
  if (concurrency !== undefined && (concurrency < 1 || concurrency > MAX_FLEET_CONCURRENCY)) {
    throw new UsageError(
      `dbops ${command}: --concurrency ${concurrency} is not valid: from 1 to ${MAX_FLEET_CONCURRENCY}`,
    );
  }
  return { tag: flags.tag, concurrency };
}

export interface FleetRequest {
  taskQueue: string;
  operation: FleetOperation;
  tag: string | undefined;
  concurrency: number | undefined;
  timeouts?: { pollInterval: string };
  /** drTest: what each instance's copy is restored to; absent: its latest snapshot. */
  pointInTime?: string;
}

/**
 * Runs the fleet and waits for its summary, printing each instance's progress unless `quiet`. A
 * fleet that failed because an instance did returns its summary too (`ok` false).
 */
export async function runFleet(client: Client, request: FleetRequest, quiet: boolean): Promise<FleetReport> {
  const { operation, tag, concurrency, timeouts, pointInTime } = request;
  const workflowId = `fleet-${kebab(operation)}-${tag ?? 'all'}-${utcStamp(new Date())}`;
  const handle = await client.workflow.start(fleet, {
    taskQueue: request.taskQueue,
    workflowId,
    // The same command twice within a second: the second waits for the first's summary.
    workflowIdConflictPolicy: 'USE_EXISTING',
    staticSummary: `${operation} of ${tag === undefined ? 'every managed instance' : `the instances tagged ${tag}`}`,
    args: [{ operation, tag, concurrency, timeouts, ...(pointInTime === undefined ? {} : { pointInTime }) }],
  });
  if (!quiet) console.error(`started ${workflowId}`);
  const shown = new Map<string, string>();
  const look = async () => {
    const progress = await handle.query(fleetProgressQuery).catch(() => undefined);
    for (const instance of progress?.instances ?? []) {
      const line = instance.state === 'done' ? `${instance.outcome}: ${instance.summary}` : instance.state;
      if (quiet || line === 'pending' || shown.get(instance.instanceId) === line) continue;
      shown.set(instance.instanceId, line);
      console.error(`[${clock()}] ${instance.instanceId}: ${line}`);
    }
  };
  try {
    return await whileRunning(handle.result(), look).finally(look);
  } catch (error) {
    return (
      reportOfFailure<FleetReport>(error, 'FleetFailed') ?? explainFailure(Promise.reject(error as Error))
    );
  }
}

/** A fleet command: runs `operation` over the fleet, prints the summary; exit 1 when an instance failed. */
export async function fleetCommand(
  operation: FleetOperation,
  options: { tag: string | undefined; concurrency: number | undefined; pointInTime?: string },
  json: boolean,
): Promise<number> {
  const config = loadConfig();
  const report = await withTemporal(config, (client) =>
    runFleet(
      client,
      {
        taskQueue: config.temporal.taskQueue,
        operation,
        ...options,
        timeouts: operation === 'drTest' ? pollTimeouts(config) : undefined,
      },
      json,
    ),
  );
  printFleetReport(json, report);
  return report.ok ? 0 : 1;
}

/** One row per instance, then the outcome, what was not selected and where the summary is. */
export function printFleetReport(json: boolean, report: FleetReport): void {
  const seconds = (value: number | null) => (value === null ? '-' : `${value} s`);
  print(json, report, [
    ['INSTANCE', 'OUTCOME', 'RPO', 'RTO', 'SUMMARY'],
    ...report.instances.map((i) => [
      i.instanceId,
      i.outcome ?? i.state,
      seconds(i.rpoSeconds),
      seconds(i.rtoSeconds),
      i.summary.split('\n')[0]!,
    ]),
  ]);
  if (json) return;
  const passed = report.instances.filter((i) => i.outcome === 'passed' || i.outcome === 'warning').length;
  console.log(
    `\nFleet ${report.operation}${report.tag === null ? '' : ` of ${report.tag}`}: ` +
      `${report.ok ? 'PASSED' : 'FAILED'} (${passed} of ${report.instances.length} passed)` +
      (report.skipped.length === 0 ? '' : `\n  not selected: ${report.skipped.join(', ')}`) +
      report.reportLocations.map((location) => `\n  report: ${location}`).join(''),
  );
}

const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
