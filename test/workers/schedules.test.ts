import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

import type { TestWorkflowEnvironment } from '@temporalio/testing';

import {
  applySchedules,
  listSchedules,
  scheduleDefinitions,
  type ScheduleSettings,
} from '../../workers/schedules';
import { createDevServerEnv } from '../helpers/temporal';

const settings: ScheduleSettings = {
  taskQueue: 'dbops',
  instanceId: 'mcp-demo-prod',
  maintenanceWindow: 'sun:04:00-sun:05:00',
  healthCheckIntervalMinutes: 5,
  sweepIntervalMinutes: 60,
};

// The Java time-skipping server has no Schedules API: these run on the dev server.
describe('schedules (dev server)', () => {
  let env: TestWorkflowEnvironment;
  before(async () => {
    env = await createDevServerEnv();
  });
  after(async () => {
    await env?.teardown();
  });

  /** Schedule listing goes through visibility, which catches up shortly after a change. */
  async function listedIds(expected: number): Promise<string[]> {
    for (let attempt = 0; ; attempt++) {
      const ids = (await listSchedules(env.client)).map((s) => s.scheduleId);
      if (ids.length >= expected || attempt === 100) return ids;
      await sleep(200);
    }
  }

  async function describe(scheduleId: string) {
    return env.client.schedule.getHandle(scheduleId).describe();
  }

  it('creates the four schedules, then updates them in place when applied again', async () => {
    const first = await applySchedules(env.client, settings);
    assert.deepEqual(first, [
      { scheduleId: 'dbops-dr-test-mcp-demo-prod', outcome: 'created' },
      { scheduleId: 'dbops-maintenance-mcp-demo-prod', outcome: 'created' },
      { scheduleId: 'dbops-health-check-mcp-demo-prod', outcome: 'created' },
      { scheduleId: 'dbops-sweep-orphans', outcome: 'created' },
    ]);
    const second = await applySchedules(env.client, settings);
    assert.deepEqual(
      second.map((s) => s.outcome),
      ['updated', 'updated', 'updated', 'updated'],
    );
    assert.deepEqual(await listedIds(4), [
      'dbops-dr-test-mcp-demo-prod',
      'dbops-health-check-mcp-demo-prod',
      'dbops-maintenance-mcp-demo-prod',
      'dbops-sweep-orphans',
    ]);
  });

  it('runs drTest on the 1st of the month at 06:00 UTC, skipping overlaps, catching up for a day', async () => {
    const dr = await describe('dbops-dr-test-mcp-demo-prod');
    assert.equal(dr.action.workflowType, 'drTest');
    assert.deepEqual(dr.action.args, [{ instanceId: 'mcp-demo-prod' }]);
    assert.equal(dr.action.taskQueue, 'dbops');
    assert.equal(dr.spec.calendars?.length, 1);
    assert.deepEqual(dr.spec.calendars[0]!.dayOfMonth, [{ start: 1, end: 1, step: 1 }]);
    assert.deepEqual(dr.spec.calendars[0]!.hour, [{ start: 6, end: 6, step: 1 }]);
    assert.deepEqual(dr.spec.calendars[0]!.minute, [{ start: 0, end: 0, step: 1 }]);
    assert.equal(dr.spec.timezone, 'UTC');
    assert.equal(dr.policies.overlap, 'SKIP');
    assert.equal(dr.policies.catchupWindow, 24 * 3600 * 1000);
    const next = dr.info.nextActionTimes[0]!;
    assert.deepEqual([next.getUTCDate(), next.getUTCHours(), next.getUTCMinutes()], [1, 6, 0]);
  });

  it("asks the monthly drTest, and the fleet's, for a random point in time when configured (DBOPS_DR_TEST_POINT_IN_TIME)", () => {
    const definitions = scheduleDefinitions({
      ...settings,
      drTestPointInTime: 'random',
      fleetDrTest: { tag: undefined, concurrency: 3 },
    });
    const [dr] = definitions;
    assert.equal(dr!.scheduleId, 'dbops-dr-test-mcp-demo-prod');
    assert.deepEqual(dr!.action.args, [{ instanceId: 'mcp-demo-prod', pointInTime: 'random' }]);
    const fleet = definitions.find((s) => s.scheduleId === 'dbops-fleet-dr-test');
    assert.equal(fleet?.action.workflowType, 'fleet');
    assert.deepEqual(fleet.action.args, [{ operation: 'drTest', concurrency: 3, pointInTime: 'random' }]);
  });

  it('adds the monthly fleet DR test when configured (DBOPS_FLEET_DR_TEST), at 07:00 UTC on the 1st', () => {
    assert.ok(!scheduleDefinitions(settings).some((s) => s.scheduleId === 'dbops-fleet-dr-test'));
    const fleet = scheduleDefinitions({ ...settings, fleetDrTest: { tag: 'env=prod', concurrency: 5 } }).find(
      (s) => s.scheduleId === 'dbops-fleet-dr-test',
    );
    assert.equal(fleet?.action.workflowType, 'fleet');
    assert.deepEqual(fleet.action.args, [{ operation: 'drTest', tag: 'env=prod', concurrency: 5 }]);
    assert.deepEqual(fleet.spec.calendars, [{ dayOfMonth: 1, hour: 7, minute: 0 }]);
    assert.equal(fleet.policies?.overlap, 'SKIP');
  });

  it('runs maintenance weekly when the maintenance window opens (Sunday 04:00 UTC)', async () => {
    const maintenance = await describe('dbops-maintenance-mcp-demo-prod');
    assert.equal(maintenance.action.workflowType, 'maintenance');
    assert.equal(maintenance.policies.overlap, 'SKIP');
    for (const next of maintenance.info.nextActionTimes) {
      assert.deepEqual([next.getUTCDay(), next.getUTCHours(), next.getUTCMinutes()], [0, 4, 0]);
    }
  });

  it('runs healthCheck every 5 minutes, and follows a changed interval on the next apply', async () => {
    const health = await describe('dbops-health-check-mcp-demo-prod');
    assert.equal(health.action.workflowType, 'healthCheck');
    assert.deepEqual(health.spec.intervals, [{ every: 5 * 60 * 1000, offset: undefined }]);

    await applySchedules(env.client, { ...settings, healthCheckIntervalMinutes: 15 });
    const changed = await describe('dbops-health-check-mcp-demo-prod');
    assert.deepEqual(changed.spec.intervals, [{ every: 15 * 60 * 1000, offset: undefined }]);
    assert.equal(changed.policies.catchupWindow, 15 * 60 * 1000);
  });

  it('sweeps orphans hourly over every instance, skipping overlaps, and follows a changed interval', async () => {
    const sweep = await describe('dbops-sweep-orphans');
    assert.equal(sweep.action.workflowType, 'sweepOrphans');
    assert.deepEqual(sweep.action.args, [{}]);
    assert.equal(sweep.action.taskQueue, 'dbops');
    assert.deepEqual(sweep.spec.intervals, [{ every: 60 * 60 * 1000, offset: undefined }]);
    assert.equal(sweep.policies.overlap, 'SKIP');
    assert.equal(sweep.policies.catchupWindow, 60 * 60 * 1000);

    await applySchedules(env.client, { ...settings, sweepIntervalMinutes: 20 });
    const changed = await describe('dbops-sweep-orphans');
    assert.deepEqual(changed.spec.intervals, [{ every: 20 * 60 * 1000, offset: undefined }]);
    assert.equal(changed.policies.catchupWindow, 20 * 60 * 1000);
  });

  it('runs retention over every instance with the configured policy when configured (daily by default)', () => {
    const policy = { keepNewest: 7, keepDays: 30, includeForeign: false, includeAutomated: false };
    const defined = scheduleDefinitions({ ...settings, retention: { ...policy, intervalHours: 24 } });
    const retention = defined.find((s) => s.scheduleId === 'dbops-retention');
    assert.equal(retention?.action.workflowType, 'retention');
    assert.deepEqual(retention.action.args, [policy]);
    assert.equal(retention.action.taskQueue, 'dbops');
    assert.deepEqual(retention.spec.intervals, [{ every: '24 hours' }]);
    assert.equal(retention.policies?.overlap, 'SKIP');
    assert.ok(!scheduleDefinitions(settings).some((s) => s.scheduleId === 'dbops-retention'));
  });

  it('keeps a schedule an operator paused paused when applied again', async () => {
    const handle = env.client.schedule.getHandle('dbops-maintenance-mcp-demo-prod');
    await handle.pause('paused by the on-call');
    await applySchedules(env.client, settings);
    assert.equal((await handle.describe()).state.paused, true);
  });
});
