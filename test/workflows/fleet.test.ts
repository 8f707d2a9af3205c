import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  ApplicationFailure,
  CancelledFailure,
  WorkflowFailedError,
  type WorkflowHandle,
} from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';

import { seedDemoData } from '../../workers/seed';
import { fleet, healthCheck } from '../../workflows';
import type { DrTestInput } from '../../workflows/dr-test';
import { fleetProgressQuery, type FleetInput, type FleetReport } from '../../workflows/fleet';
import { runDbops, type CliRun } from '../helpers/cli';
import { startRecoveryStack, waitForInstances, type RecoveryStack } from '../helpers/recovery';

const UNTAGGED = 'fleet-plain';
const TAG = 'env=fleet-test';
const TAGGED = ['fleet-a', 'fleet-b', 'fleet-c', 'fleet-d'];
/** Tagged with another value of the same key: not selected either. */
const STAGING = 'fleet-staging';
/**
 * Gets no snapshot of its data: its newest is the automated one taken when it was created, before
 * the data, so its DR test fails (no conversations table) while the others pass.
 */
const NO_SNAPSHOT = 'fleet-d';
const fast = { pollInterval: '1 second' };

describe('fleet workflow (dev server, six local instances on real clusters)', function () {
  this.timeout(300_000);
  let stack: RecoveryStack;
  let runs = 0;
  let all: string[];

  before(async () => {
    stack = await startRecoveryStack({
      name: 'fleet',
      sourceInstanceId: UNTAGGED,
      conversations: 30,
      chunksPerConversation: 1,
    });
    const tagged = [
      ...TAGGED.map((id) => [id, { env: 'fleet-test' }] as const),
      [STAGING, { env: 'staging' }] as const,
    ];
    await Promise.all(tagged.map(([id, tags]) => stack.plane.createInstance(id, { tags })));
    await Promise.all(
      tagged.map(async ([id]) => {
        const endpoint = await stack.plane.ensureRunning(id);
        if (id === STAGING) return; // never selected: no data needed
        await seedDemoData(endpoint, { conversations: 30, chunksPerConversation: 1 });
        if (id !== NO_SNAPSHOT) {
          await stack.plane.createSnapshot(id, `${id}-snap`);
          for (let i = 0; (await stack.plane.describeSnapshot(`${id}-snap`)).status !== 'available'; i++) {
            assert.ok(i < 1200, `the snapshot of ${id} did not become available`);
            await sleep(100);
          }
        }
      }),
    );
    all = await stack.instanceIds();
  });
  after(async () => {
    await stack?.teardown();
  });

  function start(input: FleetInput): Promise<WorkflowHandle<typeof fleet>> {
    return stack.env.client.workflow.start(fleet, {
      taskQueue: stack.taskQueue,
      workflowId: `fleet-suite-${++runs}`,
      args: [input],
    });
  }

  /** The report of a fleet run that failed because an instance did (FleetFailed carries it). */
  async function failedReport(handle: WorkflowHandle<typeof fleet>): Promise<FleetReport> {
    const error = await handle.result().then(
      () => assert.fail('the fleet run succeeded'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof WorkflowFailedError, String(error));
    assert.ok(error.cause instanceof ApplicationFailure, String(error.cause));
    assert.equal(error.cause.type, 'FleetFailed');
    return error.cause.details?.[0] as FleetReport;
  }

  /** The most children running at once, from their start and close times on the server. */
  async function mostAtOnce(report: FleetReport): Promise<number> {
    const edges: [number, number][] = [];
    for (const instance of report.instances) {
      const described = await stack.env.client.workflow.getHandle(instance.workflowId).describe();
      assert.ok(described.closeTime !== undefined, `${instance.workflowId} is still running`);
      edges.push([described.startTime.getTime(), 1], [described.closeTime.getTime(), -1]);
    }
    // At the same instant an end counts before a start: a lane starts its next child after the last.
    edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let running = 0;
    let most = 0;
    for (const [, step] of edges) most = Math.max(most, (running += step));
    return most;
  }

  /** Polls the progress query until the run ends; returns the most children it saw running. */
  async function watchProgress(
    handle: WorkflowHandle<typeof fleet>,
  ): Promise<{ running: number; pending: number }> {
    const seen = { running: 0, pending: 0 };
    const ended = handle.result().then(
      () => true,
      () => true,
    );
    while (!(await Promise.race([ended, sleep(200).then(() => false)]))) {
      const progress = await handle.query(fleetProgressQuery).catch(() => undefined);
      if (progress === undefined) continue;
      assert.equal(progress.pending + progress.running + progress.done, progress.instances.length);
      seen.running = Math.max(seen.running, progress.running);
      if (progress.running > 0) seen.pending = Math.max(seen.pending, progress.pending);
    }
    return seen;
  }

  it('health-checks every instance tagged env=fleet-test, 2 at a time; the untagged and the staging instance are skipped', async () => {
    const handle = await start({ operation: 'healthCheck', tag: TAG, concurrency: 2 });
    const seen = await watchProgress(handle);
    const report = await handle.result();
    assert.equal(report.ok, true, JSON.stringify(report.instances, null, 2));
    assert.deepEqual(
      report.instances.map((i) => i.instanceId),
      TAGGED,
    );
    assert.deepEqual(report.skipped, [UNTAGGED, STAGING].sort());
    for (const instance of report.instances) {
      assert.ok(['passed', 'warning'].includes(instance.outcome!), JSON.stringify(instance));
      assert.equal(instance.workflowId, `${handle.workflowId}--${instance.instanceId}`);
      assert.match(instance.summary, /^health (ok|warning), \d+ finding\(s\) above info$/);
    }
    assert.equal(await mostAtOnce(report), 2);
    assert.ok(seen.running <= 2, `the progress query showed ${seen.running} children running`);
    assert.equal(report.reportLocations.length, 2);
    const markdown = await readFile(fileURLToPath(report.reportLocations[1]!), 'utf8');
    assert.match(markdown, /^# Fleet healthCheck of env=fleet-test: PASSED \(4 of 4 passed\)/);
  });

  it('DR-tests the tagged instances 2 at a time: the one whose snapshot predates its data fails, the others pass, every copy is deleted', async () => {
    const handle = await start({ operation: 'drTest', tag: TAG, concurrency: 2, timeouts: fast });
    const seen = await watchProgress(handle);
    const report = await failedReport(handle);

    const outcomes = Object.fromEntries(report.instances.map((i) => [i.instanceId, i.outcome]));
    assert.deepEqual(outcomes, {
      'fleet-a': 'passed',
      'fleet-b': 'passed',
      'fleet-c': 'passed',
      'fleet-d': 'failed',
    });
    const failed = report.instances.find((i) => i.instanceId === NO_SNAPSHOT)!;
    assert.match(
      failed.summary,
      /^DR test of fleet-d FAILED .*conversations: table conversations does not exist/,
    );
    assert.ok(
      failed.findings.includes('conversations: table conversations does not exist'),
      failed.findings.join('\n'),
    );
    for (const instance of report.instances) {
      assert.ok(instance.rtoSeconds! > 0 && instance.rpoSeconds! >= 0, JSON.stringify(instance));
      assert.equal(instance.reportLocations.length, 2, 'the child wrote its own report');
      const own = await readFile(fileURLToPath(instance.reportLocations[1]!), 'utf8');
      assert.match(
        own,
        new RegExp(
          `^# DR test of ${instance.instanceId}: ${instance.outcome === 'passed' ? 'PASSED' : 'FAILED'}`,
        ),
      );
    }
    assert.deepEqual(report.skipped, [UNTAGGED, STAGING].sort());
    assert.equal(await mostAtOnce(report), 2);
    assert.ok(seen.running <= 2, `the progress query showed ${seen.running} children running`);
    assert.ok(seen.pending > 0, 'the progress query never showed an instance waiting for a lane');
    assert.deepEqual(await stack.instanceIds(), all, 'a DR copy was left behind');

    const [json, markdown] = await Promise.all(
      report.reportLocations.map((location) => readFile(fileURLToPath(location), 'utf8')),
    );
    assert.deepEqual((JSON.parse(json!) as FleetReport).instances, report.instances);
    assert.match(markdown!, /^# Fleet drTest of env=fleet-test: FAILED \(3 of 4 passed\)/);
    assert.match(markdown!, /\| fleet-d \| failed \| [\d.]+ s \| [\d.]+ s \| DR test of fleet-d FAILED/);
    assert.match(markdown!, /\| fleet-a \| passed \| [\d.]+ s \| [\d.]+ s \| .*\[report\]\(file:/);
  });

  it('a fleet run that meets a child of its id already run (an earlier run of the same fleet) takes its outcome instead of running it again', async () => {
    const workflowId = `fleet-suite-${++runs}`;
    const earlier = await stack.env.client.workflow.start(healthCheck, {
      taskQueue: stack.taskQueue,
      workflowId: `${workflowId}--fleet-a`,
      args: [{ instanceId: 'fleet-a' }],
    });
    await earlier.result();
    const report = await stack.env.client.workflow.execute(fleet, {
      taskQueue: stack.taskQueue,
      workflowId,
      args: [{ operation: 'healthCheck', tag: TAG, concurrency: 2 }],
    });
    assert.equal(report.ok, true, JSON.stringify(report.instances, null, 2));
    assert.match(report.instances[0]!.summary, /^health (ok|warning), /);
    // The latest run of that id is still the earlier one: the fleet did not start it again.
    const latest = await stack.env.client.workflow.getHandle(`${workflowId}--fleet-a`).describe();
    assert.equal(latest.runId, earlier.firstExecutionRunId, 'the child ran again');
  });

  it('cancelled, it cancels its running children, whose copies (to a random point in time) are deleted, and starts no more', async () => {
    const handle = await start({
      operation: 'drTest',
      tag: TAG,
      concurrency: 1,
      timeouts: { pollInterval: '1 minute' },
      pointInTime: 'random',
    });
    await waitForInstances(
      stack.plane,
      (list) => list.some((i) => i.instanceId.startsWith('fleet-a-dr-test-')),
      'the first child to request its copy',
    );
    await handle.cancel();
    const error = await handle.result().then(
      () => assert.fail('the fleet run succeeded'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof WorkflowFailedError && error.cause instanceof CancelledFailure, String(error));
    const childHandle = stack.env.client.workflow.getHandle(`${handle.workflowId}--fleet-a`);
    assert.equal((await childHandle.describe()).status.name, 'CANCELLED');
    // The child was asked for the fleet's point in time and restored to it.
    const { events } = await childHandle.fetchHistory();
    const childInput = defaultPayloadConverter.fromPayload<DrTestInput>(
      events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!,
    );
    assert.equal(childInput.pointInTime, 'random');
    assert.ok(
      events!.some(
        (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'restoreToPointInTime',
      ),
      'the child did not restore to a point in time',
    );
    assert.deepEqual(await stack.instanceIds(), all, 'a DR copy was left behind');
    const progress = await handle.query(fleetProgressQuery);
    assert.deepEqual(
      progress.instances.map((i) => [i.instanceId, i.outcome]),
      [
        ['fleet-a', 'cancelled'],
        ['fleet-b', 'not-started'],
        ['fleet-c', 'not-started'],
        ['fleet-d', 'not-started'],
      ],
    );
  });

  /** `bin/dbops ...args` as a user runs it, against the suite's Temporal server, queue and state. */
  function dbops(...args: string[]): Promise<CliRun> {
    return runDbops(
      { address: stack.env.address, taskQueue: stack.taskQueue, stateDir: stack.stateDir },
      args,
    );
  }

  it('dbops maintenance --all --tag env=fleet-test --concurrency 2 shows each instance as it runs and ends, then the summary', async () => {
    const run = await dbops('maintenance', '--all', '--tag', TAG, '--concurrency', '2');
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stderr, /^started fleet-maintenance-env=fleet-test-\d{8}-\d{6}$/m);
    for (const id of TAGGED) {
      assert.match(
        run.stderr,
        new RegExp(`^\\[\\d\\d:\\d\\d:\\d\\d\\] ${id}: passed: \\d+ table\\(s\\) vacuumed`, 'm'),
      );
      assert.match(run.stdout, new RegExp(`^${id} +passed +- +- +\\d+ table\\(s\\) vacuumed`, 'm'));
    }
    assert.match(run.stdout, /^Fleet maintenance of env=fleet-test: PASSED \(4 of 4 passed\)$/m);
    assert.match(run.stdout, new RegExp(`^  not selected: ${UNTAGGED}, ${STAGING}$`, 'm'));
    assert.equal(
      [...run.stdout.matchAll(/^ {2}report: file:\/\/\S+fleet-maintenance-\S+\.(json|md)$/gm)].length,
      2,
    );
  });

  it('dbops dr-test --all refuses a tag that is not key=value (exit 2)', async () => {
    const run = await dbops('dr-test', '--all', '--tag', 'env');
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /dbops dr-test: --tag "env" is not valid: key=value/);
  });

  it('refuses a tag that is not key=value and a concurrency out of bounds, starting nothing', async () => {
    for (const [input, message] of [
      [{ operation: 'healthCheck', tag: 'env' }, /^tag "env" is not valid: key=value/],
      [
        { operation: 'healthCheck', concurrency: 0 },
        /^concurrency 0 is not valid: a whole number from 1 to 20/,
      ],
      [{ operation: 'backup' }, /^operation "backup" is not valid: one of drTest, maintenance, healthCheck/],
      [
        { operation: 'drTest', pointInTime: 'yesterday' },
        /^pointInTime "yesterday" is not valid: latest-snapshot, random, or an ISO-8601 time/,
      ],
      [
        { operation: 'healthCheck', pointInTime: 'random' },
        /^pointInTime is for the drTest operation only, not for healthCheck/,
      ],
    ] as const) {
      const handle = await start(input as unknown as FleetInput);
      const error = await handle.result().then(
        () => assert.fail('the fleet run succeeded'),
        (e: unknown) => e,
      );
      assert.ok(
        error instanceof WorkflowFailedError && error.cause instanceof ApplicationFailure,
        String(error),
      );
      assert.match(error.cause.message, message);
      assert.equal(error.cause.type, 'InvalidInputError');
      const history = await handle.fetchHistory();
      assert.ok(
        !history.events!.some(
          (e) =>
            e.startChildWorkflowExecutionInitiatedEventAttributes || e.activityTaskScheduledEventAttributes,
        ),
        'something was started',
      );
    }
  });
});
