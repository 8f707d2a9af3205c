/**
 * The recurring operations as Temporal Schedules (not cron strings on workflows): the monthly DR
 * test, the weekly maintenance in the maintenance window, the periodic health check, the (hourly
 * by default) orphan sweep, the (daily by default) snapshot retention and, when configured, the
 * monthly DR test of a fleet. `apply` is an idempotent upsert, run at every start: create, or
 * update the existing schedule in place.
 */
import {
  ScheduleAlreadyRunning,
  ScheduleOverlapPolicy,
  type Client,
  type DayOfWeek,
  type ScheduleOptions,
} from '@temporalio/client';

import { parseMaintenanceWindow } from '../workflows/lib/maintenance-window';
import { DbopsInstance, DbopsOperation } from '../workflows/lib/search-attributes';
import type { RetentionSettings } from './config';

export interface ScheduleSettings {
  taskQueue: string;
  instanceId: string;
  /** RDS syntax, UTC; maintenance starts when the window opens. */
  maintenanceWindow: string;
  healthCheckIntervalMinutes: number;
  /** Minutes between orphan sweeps (over every instance, not only `instanceId`). */
  sweepIntervalMinutes: number;
  /** The snapshot retention policy and its interval; absent: no retention schedule. */
  retention?: RetentionSettings;
  /** `random`: the monthly DR test restores a random point of the restorable window (default: the newest snapshot). */
  drTestPointInTime?: 'latest-snapshot' | 'random';
  /** The monthly DR test of every managed instance (or those tagged `key=value`); absent: none. */
  fleetDrTest?: { tag: string | undefined; concurrency: number };
  /** The recall of the instance's vector indexes, every `intervalMinutes`; absent: none. */
  vectorRecall?: { intervalMinutes: number; filterColumn: string | undefined };
}

export interface AppliedSchedule {
  scheduleId: string;
  outcome: 'created' | 'updated';
}

export interface ScheduleListing {
  scheduleId: string;
  workflowType: string | undefined;
  paused: boolean;
  nextRuns: string[];
}

const DAYS: DayOfWeek[] = ['SUNDAY', 'MONDAY', 'TUESDAY', 'WEDNESDAY', 'THURSDAY', 'FRIDAY', 'SATURDAY'];

/** Every schedule dbops owns has this prefix: `list` shows only ours. */
export const SCHEDULE_PREFIX = 'dbops-';

export function scheduleDefinitions(settings: ScheduleSettings): ScheduleOptions[] {
  const window = parseMaintenanceWindow(settings.maintenanceWindow);
  if (window === undefined) throw new Error(`maintenance window ${settings.maintenanceWindow} is not valid`);
  const { instanceId, taskQueue } = settings;
  const action = (workflowType: string, operation: string, summary: string) => ({
    type: 'startWorkflow' as const,
    workflowType,
    taskQueue,
    staticSummary: `${summary} (schedule)`,
    args: [{ instanceId }],
    workflowId: `${SCHEDULE_PREFIX}${operation}-${instanceId}`,
    typedSearchAttributes: [
      { key: DbopsInstance, value: instanceId },
      { key: DbopsOperation, value: workflowType },
    ],
  });
  return [
    {
      scheduleId: `${SCHEDULE_PREFIX}dr-test-${instanceId}`,
      // 1st of the month, 06:00 UTC: after the nightly backup window (03:00-04:00).
      spec: { calendars: [{ dayOfMonth: 1, hour: 6, minute: 0 }], timezone: 'UTC' },
      // drTest is the workflow type name; its implementation is registered by the worker.
      action: {
        ...action('drTest', 'dr-test', `Monthly DR test of ${instanceId}`),
        // The default input stays as it was, so a schedule without the option is unchanged.
        ...(settings.drTestPointInTime === 'random' ? { args: [{ instanceId, pointInTime: 'random' }] } : {}),
      },
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 day' },
    },
    {
      scheduleId: `${SCHEDULE_PREFIX}maintenance-${instanceId}`,
      spec: {
        calendars: [
          {
            dayOfWeek: DAYS[Math.floor(window.startMinute / (24 * 60))]!,
            hour: Math.floor((window.startMinute % (24 * 60)) / 60),
            minute: window.startMinute % 60,
          },
        ],
        timezone: 'UTC',
      },
      action: action('maintenance', 'maintenance', `Weekly maintenance of ${instanceId}`),
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 hour' },
    },
    {
      scheduleId: `${SCHEDULE_PREFIX}health-check-${instanceId}`,
      spec: { intervals: [{ every: `${settings.healthCheckIntervalMinutes} minutes` }] },
      action: action('healthCheck', 'health-check', `Health check of ${instanceId}`),
      // A missed check is worthless later: the next one measures the present.
      policies: {
        overlap: ScheduleOverlapPolicy.SKIP,
        catchupWindow: `${settings.healthCheckIntervalMinutes} minutes`,
      },
    },
    {
      scheduleId: `${SCHEDULE_PREFIX}sweep-orphans`,
      spec: { intervals: [{ every: `${settings.sweepIntervalMinutes} minutes` }] },
      action: {
        type: 'startWorkflow',
        workflowType: 'sweepOrphans',
        taskQueue,
        staticSummary: 'Sweep of orphaned DR copies and restore targets (schedule)',
        args: [{}],
        workflowId: `${SCHEDULE_PREFIX}sweep-orphans`,
        typedSearchAttributes: [{ key: DbopsOperation, value: 'sweepOrphans' }],
      },
      // A sweep still deleting is not started twice; a missed one is made up by the next.
      policies: {
        overlap: ScheduleOverlapPolicy.SKIP,
        catchupWindow: `${settings.sweepIntervalMinutes} minutes`,
      },
    },
    ...(settings.retention === undefined ? [] : [retentionSchedule(taskQueue, settings.retention)]),
    ...(settings.fleetDrTest === undefined
      ? []
      : [fleetDrTestSchedule(taskQueue, settings.fleetDrTest, settings.drTestPointInTime)]),
    ...(settings.vectorRecall === undefined
      ? []
      : [
          {
            scheduleId: `${SCHEDULE_PREFIX}vector-recall-${instanceId}`,
            spec: { intervals: [{ every: `${settings.vectorRecall.intervalMinutes} minutes` }] },
            action: {
              ...action('vectorRecall', 'vector-recall', `Recall of the vector indexes of ${instanceId}`),
              args: [
                settings.vectorRecall.filterColumn === undefined
                  ? { instanceId }
                  : { instanceId, filterColumn: settings.vectorRecall.filterColumn },
              ],
            },
            // A measurement still running is not started twice; a missed one is worth nothing later.
            policies: {
              overlap: ScheduleOverlapPolicy.SKIP,
              catchupWindow: `${settings.vectorRecall.intervalMinutes} minutes`,
            },
          },
        ]),
  ];
}

/** Snapshot retention over every instance, with the configured policy. */
function retentionSchedule(taskQueue: string, settings: RetentionSettings): ScheduleOptions {
  const { intervalHours, ...policy } = settings;
  return {
    scheduleId: `${SCHEDULE_PREFIX}retention`,
    spec: { intervals: [{ every: `${intervalHours} hours` }] },
    action: {
      type: 'startWorkflow',
      workflowType: 'retention',
      taskQueue,
      staticSummary: 'Snapshot retention (schedule)',
      args: [policy],
      workflowId: `${SCHEDULE_PREFIX}retention`,
      typedSearchAttributes: [{ key: DbopsOperation, value: 'retention' }],
    },
    // A run still deleting is not started twice; a missed one is made up by the next.
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: `${intervalHours} hours` },
  };
}

/**
 * The DR test of a fleet, as a `fleet` run on the 1st of the month at 07:00 UTC: an hour after the
 * configured instance's own DR test, so an instance that is in both is not tested twice at once.
 */
function fleetDrTestSchedule(
  taskQueue: string,
  { tag, concurrency }: { tag: string | undefined; concurrency: number },
  pointInTime: ScheduleSettings['drTestPointInTime'],
): ScheduleOptions {
  return {
    scheduleId: `${SCHEDULE_PREFIX}fleet-dr-test`,
    spec: { calendars: [{ dayOfMonth: 1, hour: 7, minute: 0 }], timezone: 'UTC' },
    action: {
      type: 'startWorkflow',
      workflowType: 'fleet',
      taskQueue,
      staticSummary: `Monthly DR test of ${tag === undefined ? 'every managed instance' : `the instances tagged ${tag}`} (schedule)`,
      args: [
        {
          operation: 'drTest',
          ...(tag === undefined ? {} : { tag }),
          concurrency,
          ...(pointInTime === 'random' ? { pointInTime } : {}),
        },
      ],
      workflowId: `${SCHEDULE_PREFIX}fleet-dr-test`,
      typedSearchAttributes: [{ key: DbopsOperation, value: 'fleet' }],
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 day' },
  };
}

/** Creates each schedule, or updates it in place when it exists (a paused schedule stays paused). */
export async function applySchedules(client: Client, settings: ScheduleSettings): Promise<AppliedSchedule[]> {
  const applied: AppliedSchedule[] = [];
  for (const definition of scheduleDefinitions(settings)) {
    try {
      await client.schedule.create(definition);
      applied.push({ scheduleId: definition.scheduleId, outcome: 'created' });
    } catch (error) {
      if (!(error instanceof ScheduleAlreadyRunning)) throw error;
      const { spec, action, policies } = definition;
      await client.schedule
        .getHandle(definition.scheduleId)
        .update((current) => ({ spec, action, policies, state: current.state }));
      applied.push({ scheduleId: definition.scheduleId, outcome: 'updated' });
    }
  }
  return applied;
}

/** dbops' schedules with their next run times. */
export async function listSchedules(client: Client): Promise<ScheduleListing[]> {
  const listed: ScheduleListing[] = [];
  for await (const summary of client.schedule.list()) {
    if (!summary.scheduleId.startsWith(SCHEDULE_PREFIX)) continue;
    listed.push({
      scheduleId: summary.scheduleId,
      workflowType: summary.action?.workflowType,
      paused: summary.state.paused,
      nextRuns: summary.info.nextActionTimes.map((time) => time.toISOString()),
    });
  }
  return listed.sort((a, b) => a.scheduleId.localeCompare(b.scheduleId));
}
