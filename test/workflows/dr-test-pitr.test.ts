import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { ApplicationFailure, WorkflowFailedError } from '@temporalio/client';

import { createDatabaseConnector, withClient } from '../../activities/postgres/connect';
import { HEARTBEAT_APPLICATION_NAME, newestHeartbeat } from '../../activities/postgres/rpo-heartbeat';
import { startRpoHeartbeat, type RpoHeartbeatWriter } from '../../workers/rpo-heartbeat';
import { backup, drTest } from '../../workflows';
import type { DrTestReport } from '../../workflows/lib/recovery';
import { startRecoveryStack, type RecoveryStack } from '../helpers/recovery';

const SOURCE = 'drp-src';
const fast = { pollInterval: '250 ms', maxPollInterval: '1 second' };

/**
 * The RPO heartbeat writer (workers/rpo-heartbeat.ts) is tested here too, on the suite's source:
 * the drills need it running, and a cluster of its own would double the suite's cost.
 */
describe('drTest to a point in time (dev server, local provider on real clusters, RPO heartbeat)', function () {
  this.timeout(300_000);
  let stack: RecoveryStack;
  let writer: RpoHeartbeatWriter | undefined;
  const lines: string[] = [];
  let runs = 0;
  /** When the source had its tables and data (the window starts earlier: at its creation). */
  let seededBy: string;

  /**
   * The worker's heartbeat, every second; it lists the provider's instances as the worker does,
   * so it meets the DR copies too (and must leave them alone).
   */
  function startWriter(): void {
    writer = startRpoHeartbeat({
      controlPlane: stack.plane,
      connector: createDatabaseConnector({ primary: stack.source.endpoint }),
      intervalSeconds: 1,
      logger: { info: (line) => lines.push(`info ${line}`), warn: (line) => lines.push(`warn ${line}`) },
    });
  }

  /** The writer's sessions open on the source now. */
  const writerSessions = () =>
    withClient(stack.source.endpoint, async (c) => {
      const { rows } = await c.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
        [HEARTBEAT_APPLICATION_NAME],
      );
      return rows[0]!.n;
    });

  /** The source's newest heartbeat, polled until it is later than `after` (bounded). */
  async function heartbeatAfter(after: string): Promise<string> {
    for (let i = 0; i < 300; i++) {
      const newest = await withClient(stack.source.endpoint, newestHeartbeat);
      if (newest !== null && newest > after) return newest;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`no heartbeat after ${after}`);
  }

  /** The source server's clock, polled until it is at least `seconds` past `from`. */
  async function serverTimeAfter(from: string, seconds: number): Promise<string> {
    for (let i = 0; i < 300; i++) {
      const now = await withClient(stack.source.endpoint, async (c) =>
        (await c.query<{ now: Date }>('SELECT now()')).rows[0]!.now.toISOString(),
      );
      if (Date.parse(now) >= Date.parse(from) + seconds * 1000) return now;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`the server clock did not pass ${from} + ${seconds} s`);
  }

  before(async () => {
    stack = await startRecoveryStack({
      name: 'dr-pitr',
      sourceInstanceId: SOURCE,
      conversations: 20,
      chunksPerConversation: 1,
    });
    seededBy = new Date().toISOString();
    await stack.env.client.workflow.execute(backup, {
      taskQueue: stack.taskQueue,
      workflowId: 'dr-pitr-suite-backup',
      args: [{ instanceId: SOURCE, timeouts: fast }],
    });
    startWriter();
  });
  after(async () => {
    await writer?.stop();
    await stack?.teardown();
  });

  function run(input: Record<string, unknown>) {
    return stack.env.client.workflow.execute(drTest, {
      taskQueue: stack.taskQueue,
      workflowId: `dr-pitr-${SOURCE}-${++runs}`,
      args: [input as never],
    });
  }

  async function failureOf(promise: Promise<unknown>): Promise<ApplicationFailure> {
    const error = await promise.then(
      () => assert.fail('the workflow succeeded'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof WorkflowFailedError, String(error));
    assert.ok(error.cause instanceof ApplicationFailure, String(error.cause));
    return error.cause;
  }

  const reportFiles = async () =>
    (await readdir(path.join(stack.stateDir, 'reports')).catch(() => [])).sort();

  it("writes the server's time into dbops.rpo_heartbeat (one row, a table the worker's role created)", async () => {
    const first = await heartbeatAfter('1970-01-01T00:00:00.000Z');
    assert.ok((await heartbeatAfter(first)) > first);
    const table = await withClient(stack.source.endpoint, async (c) => {
      const { rows } = await c.query<{ owner: string; rows: number }>(
        `SELECT tableowner AS owner, (SELECT count(*)::int FROM dbops.rpo_heartbeat) AS rows
           FROM pg_tables WHERE schemaname = 'dbops' AND tablename = 'rpo_heartbeat'`,
      );
      return rows[0];
    });
    assert.deepEqual(table, { owner: 'dbops', rows: 1 });
  });

  it('the writer survives its session being terminated: it logs the loss and writes again', async () => {
    const before = await heartbeatAfter('1970-01-01T00:00:00.000Z');
    const terminated = await withClient(stack.source.endpoint, async (c) => {
      const { rows } = await c.query<{ pid: number }>(
        `WITH writer AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE application_name = $1)
         SELECT pid FROM writer WHERE pg_terminate_backend(pid)`,
        [HEARTBEAT_APPLICATION_NAME],
      );
      return rows.length;
    });
    assert.equal(terminated, 1, "the writer's one session was terminated");
    const at = await serverTimeAfter(before, 0);
    assert.ok((await heartbeatAfter(at)) > before);
    const loss = lines.find((line) => line.startsWith(`warn RPO heartbeat: instance ${SOURCE}: `));
    assert.match(loss ?? lines.join('\n'), /terminated by an administrator/);
    assert.ok(lines.includes(`info RPO heartbeat: writing into instance ${SOURCE} again`), lines.join('\n'));
  });

  it('restores to a time after some heartbeats and reports how close to it the data reaches; the copy is deleted', async () => {
    const first = await heartbeatAfter('1970-01-01T00:00:00.000Z');
    await heartbeatAfter(await heartbeatAfter(first));
    const target = new Date().toISOString();
    const report = await run({ instanceId: SOURCE, pointInTime: target, rpoLimitSeconds: 5, timeouts: fast });

    assert.equal(report.ok, true, JSON.stringify(report.checks, null, 2));
    const point = report.pointInTime!;
    assert.equal(point.requested, target);
    assert.equal(point.target, target);
    assert.ok(point.window.earliest <= target && target <= point.window.latest);
    assert.ok(
      point.newestHeartbeat !== null && point.newestHeartbeat <= target,
      point.newestHeartbeat ?? 'none',
    );
    assert.ok(
      point.dataWithinSeconds !== null && point.dataWithinSeconds >= 0 && point.dataWithinSeconds <= 5,
      String(point.dataWithinSeconds),
    );
    assert.equal(report.snapshot, null);
    const rpo = report.checks.find((c) => c.name === 'rpo');
    assert.equal(rpo?.status, 'passed');
    assert.match(rpo.detail, new RegExp(`^data to within \\d+\\.\\d s of the target ${target}`));
    assert.deepEqual(
      report.checks.slice(-2).map((c) => c.name),
      ['rpo', 'cleanup'],
    );
    assert.equal(report.temporaryInstanceDeleted, true);
    assert.deepEqual(await stack.instanceIds(), [SOURCE]);

    const markdown = await readFile(fileURLToPath(report.reportLocations[1]!), 'utf8');
    assert.ok(
      markdown.includes(
        `- Point in time: ${target} (requested in the restorable window ${point.window.earliest} to ${point.window.latest}): ` +
          `data to within ${point.dataWithinSeconds.toFixed(1)} s of the target (newest heartbeat ${point.newestHeartbeat})`,
      ),
      markdown,
    );
  });

  it('restores to a random point of the window, recorded in the report; the copy is deleted', async () => {
    // A point before the seed restores a database without the application's tables: its checks fail.
    const report = await run({ instanceId: SOURCE, pointInTime: 'random', timeouts: fast }).catch(
      (error: unknown) => {
        const cause = (error as WorkflowFailedError).cause as ApplicationFailure;
        assert.equal(cause?.type, 'DrTestFailed', String(error));
        return cause.details![0] as DrTestReport;
      },
    );
    const point = report.pointInTime!;
    if (point.target >= seededBy) assert.equal(report.ok, true, JSON.stringify(report.checks, null, 2));
    assert.equal(point.requested, 'random');
    assert.ok(
      point.window.earliest <= point.target && point.target <= point.window.latest,
      JSON.stringify(point),
    );
    // A point before the first heartbeat has none to measure by; any later one has.
    const rpo = report.checks.find((c) => c.name === 'rpo')!;
    assert.ok(['passed', 'skipped'].includes(rpo.status), rpo.detail);
    assert.equal(rpo.status === 'passed', point.dataWithinSeconds !== null);
    assert.equal(report.temporaryInstanceDeleted, true);
    assert.deepEqual(await stack.instanceIds(), [SOURCE]);
  });

  it('refuses a time outside the restorable window, naming it, with nothing created, removed or written', async () => {
    const instances = await stack.instanceIds();
    const snapshots = await stack.plane.listSnapshots(SOURCE);
    const reports = await reportFiles();
    const cases: [string, string, RegExp][] = [
      [
        '2020-01-01T00:00:00Z',
        'RestoreTimeOutOfRangeError',
        new RegExp(
          `^pointInTime 2020-01-01T00:00:00\\.000Z is outside the restorable window of instance ${SOURCE}: ` +
            `\\d{4}-\\S+Z to \\d{4}-\\S+Z; nothing was changed$`,
        ),
      ],
      [
        '2999-01-01T00:00:00Z',
        'RestoreTimeOutOfRangeError',
        /^pointInTime 2999-01-01T00:00:00\.000Z is outside/,
      ],
      [
        'yesterday',
        'InvalidInputError',
        /^pointInTime "yesterday" is not valid: latest-snapshot, random, or an ISO-8601/,
      ],
    ];
    for (const [pointInTime, type, message] of cases) {
      const failure = await failureOf(run({ instanceId: SOURCE, pointInTime, timeouts: fast }));
      assert.equal(failure.type, type, pointInTime);
      assert.match(failure.message, message, pointInTime);
    }
    assert.deepEqual(await stack.instanceIds(), instances);
    assert.deepEqual(await stack.plane.listSnapshots(SOURCE), snapshots);
    assert.deepEqual(await reportFiles(), reports);
  });

  it('flags the RPO once the heartbeat has stopped: the data ends further before the target than the limit', async () => {
    await heartbeatAfter('1970-01-01T00:00:00.000Z');
    await writer!.stop();
    writer = undefined;
    assert.equal(await writerSessions(), 0, 'stop() closed every session of the writer');
    const last = (await withClient(stack.source.endpoint, newestHeartbeat))!;
    const target = await serverTimeAfter(last, 4);
    const failure = await failureOf(
      run({ instanceId: SOURCE, pointInTime: target, rpoLimitSeconds: 3, timeouts: fast }),
    ).finally(startWriter);
    assert.equal(failure.type, 'DrTestFailed');
    const report = failure.details?.[0] as DrTestReport;
    assert.equal(report.pointInTime!.newestHeartbeat, last);
    assert.ok(report.pointInTime!.dataWithinSeconds! >= 4, String(report.pointInTime!.dataWithinSeconds));
    const rpo = report.checks.find((c) => c.name === 'rpo')!;
    assert.equal(rpo.status, 'failed');
    assert.match(
      rpo.detail,
      /: more than the limit of 3 s, so the log chain lost data or the heartbeat stopped$/,
    );
    assert.match(
      failure.message,
      /^DR test of drp-src FAILED \(point in time \S+, data to within \d+(\.\d)? s of it, /,
    );
    assert.equal(report.temporaryInstanceDeleted, true);
    assert.deepEqual(await stack.instanceIds(), [SOURCE]);
  });
});
