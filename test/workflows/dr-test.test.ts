import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { setTimeout as sleep } from 'node:timers/promises';

import { ApplicationFailure, CancelledFailure, WorkflowFailedError } from '@temporalio/client';
import { Client } from 'pg';

import type { SnapshotRecord } from '../../activities/control-plane/local-state';
import { backup, drTest } from '../../workflows';
import { progressQuery, type DrTestReport } from '../../workflows/lib/recovery';
import { metricsUrl } from '../helpers/metrics-runtime';
import { startRecoveryStack, waitForInstances, type RecoveryStack } from '../helpers/recovery';
import { requireTool } from '../../workers/tools';

const execFileAsync = promisify(execFile);
const SOURCE = 'dr-src';
const fast = { pollInterval: '1 second' };

/** The value of a dbops gauge for the suite's instance on the worker's Prometheus endpoint. */
async function gauge(name: string): Promise<number | undefined> {
  const text = await (await fetch(metricsUrl())).text();
  const line = new RegExp(`^${name}\\{[^}]*instance_id="${SOURCE}"[^}]*\\} (\\S+)$`, 'm').exec(text);
  return line ? Number(line[1]) : undefined;
}

describe('drTest workflow (dev server, local provider on real clusters)', function () {
  this.timeout(300_000);
  let stack: RecoveryStack;
  let snapshotId: string;
  let runs = 0;

  before(async () => {
    stack = await startRecoveryStack({
      name: 'dr-test',
      sourceInstanceId: SOURCE,
      conversations: 400,
      chunksPerConversation: 2,
    });
    const taken = await stack.env.client.workflow.execute(backup, {
      taskQueue: stack.taskQueue,
      workflowId: 'dr-test-suite-backup',
      args: [{ instanceId: SOURCE, timeouts: fast }],
    });
    snapshotId = taken.snapshotId;
  });
  after(async () => {
    await stack?.teardown();
  });

  function start(input: Record<string, unknown>) {
    return stack.env.client.workflow.start(drTest, {
      taskQueue: stack.taskQueue,
      workflowId: `dr-test-${SOURCE}-${++runs}`,
      args: [input as never],
    });
  }

  async function failureOf(promise: Promise<unknown>): Promise<WorkflowFailedError> {
    const error = await promise.then(
      () => assert.fail('the workflow succeeded'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof WorkflowFailedError, String(error));
    return error;
  }

  async function reportFiles(): Promise<string[]> {
    return (await readdir(path.join(stack.stateDir, 'reports')).catch(() => [])).sort();
  }

  it('passes on real data: every check green, report written as JSON and Markdown, copy deleted', async () => {
    const report = await (await start({ instanceId: SOURCE, timeouts: fast })).result();
    assert.equal(report.ok, true, JSON.stringify(report.checks, null, 2));
    assert.equal(report.snapshot?.snapshotId, snapshotId);
    assert.match(report.temporaryInstanceId, new RegExp(`^${SOURCE}-dr-test-\\d{8}$`));
    assert.deepEqual(
      report.checks.map((c) => [c.name, c.status]),
      [
        ['connectivity', 'passed'],
        ['amcheck', 'passed'],
        ['conversations', 'passed'],
        ['row-counts', 'passed'],
        ['table-contents', 'passed'],
        ['pgvector', 'passed'],
        ['vector-index:conversations_embedding_idx', 'passed'],
        ['vector-index:conversations_embedding_ivfflat_idx', 'passed'],
        ['recall:conversations_embedding_idx', 'passed'],
        ['cleanup', 'passed'],
      ],
    );
    assert.match(report.checks[2]!.detail, /^400 conversations, latest created_at \d{4}-/);
    assert.match(report.checks[4]!.detail, /^\d+ tables match the snapshot's content hashes \(/);
    assert.match(report.checks[5]!.detail, /^vector 0\.8\.0 installed$/);
    assert.match(report.checks[8]!.detail, /^recall@10 (0\.9\d\d|1\.000) over 20 queries/);
    assert.ok(report.rpoSeconds !== null && report.rpoSeconds >= 0);
    assert.ok(report.rtoSeconds !== null && report.rtoSeconds > 0);
    assert.equal(report.temporaryInstanceDeleted, true);
    assert.deepEqual(await stack.instanceIds(), [SOURCE]);

    assert.equal(report.reportLocations.length, 2);
    const [jsonFile, markdownFile] = report.reportLocations.map((url) => fileURLToPath(url));
    const written = JSON.parse(await readFile(jsonFile!, 'utf8')) as DrTestReport;
    assert.deepEqual(written.checks, report.checks);
    const markdown = await readFile(markdownFile!, 'utf8');
    assert.match(markdown, new RegExp(`^# DR test of ${SOURCE}: PASSED`));
    assert.match(markdown, /\| recall:conversations_embedding_idx \| passed \| recall@10/);

    assert.equal(await gauge('dbops_dr_test_success'), 1);
    assert.equal(await gauge('dbops_dr_test_rto_seconds'), report.rtoSeconds);
    assert.equal(
      await gauge('dbops_dr_test_last_success_timestamp_seconds'),
      Date.parse(report.finishedAt) / 1000,
    );
    assert.ok((await gauge('dbops_backup_last_success_timestamp_seconds'))! > 0);
  });

  it('fails naming the check when the snapshot recorded another row count, and still deletes the copy', async () => {
    const file = path.join(stack.stateDir, 'snapshots', snapshotId, 'snapshot.json');
    const original = await readFile(file, 'utf8');
    const record = JSON.parse(original) as SnapshotRecord;
    record.tableRowCounts!['mcp_db.public.conversations'] = 401;
    await writeFile(file, JSON.stringify(record));
    try {
      const failure = await failureOf((await start({ instanceId: SOURCE, timeouts: fast })).result());
      const cause = failure.cause;
      assert.ok(cause instanceof ApplicationFailure);
      assert.equal(cause.type, 'DrTestFailed');
      assert.match(
        cause.message,
        /row-counts: 1 of \d+ tables differ: mcp_db\.public\.conversations: 400 rows, expected 401/,
      );
      const report = cause.details?.[0] as DrTestReport;
      assert.equal(report.ok, false);
      assert.equal(
        report.checks.find((c) => c.name === 'recall:conversations_embedding_idx')?.status,
        'passed',
      );
      assert.equal(report.temporaryInstanceDeleted, true);
      assert.deepEqual(await stack.instanceIds(), [SOURCE]);
      assert.equal(report.reportLocations.length, 2);
      assert.match(await readFile(fileURLToPath(report.reportLocations[1]!), 'utf8'), /: FAILED/);
      assert.equal(await gauge('dbops_dr_test_success'), 0);
    } finally {
      await writeFile(file, original);
    }
  });

  it('deletes the temporary instance when cancelled mid-restore', async () => {
    const handle = await start({ instanceId: SOURCE, timeouts: { pollInterval: '1 minute' } });
    await waitForInstances(
      stack.plane,
      (list) => list.some((i) => i.instanceId.startsWith(`${SOURCE}-dr-test-`)),
      'the DR copy to be requested',
    );
    await handle.cancel();
    const failure = await failureOf(handle.result());
    assert.ok(failure.cause instanceof CancelledFailure, String(failure.cause));
    assert.deepEqual(await stack.instanceIds(), [SOURCE]);
  });

  it('removes the orphan a crashed run left behind', async () => {
    const crashed = await start({ instanceId: SOURCE, timeouts: { pollInterval: '1 minute' } });
    const [orphan] = (
      await waitForInstances(
        stack.plane,
        (list) => list.some((i) => i.instanceId.startsWith(`${SOURCE}-dr-test-`)),
        'the DR copy to be requested',
      )
    ).filter((i) => i.instanceId !== SOURCE);
    await crashed.terminate('simulated crash: no cleanup runs');
    assert.deepEqual(await stack.instanceIds(), [orphan!.instanceId, SOURCE].sort());

    const report = await (await start({ instanceId: SOURCE, timeouts: fast })).result();
    assert.deepEqual(report.orphansRemoved, [orphan!.instanceId]);
    assert.equal(report.ok, true, JSON.stringify(report.checks));
    assert.deepEqual(await stack.instanceIds(), [SOURCE]);
  });

  it('a DR test started while another of the instance runs waits for its copy to be gone, then runs its own: both pass', async () => {
    const first = await start({ instanceId: SOURCE, timeouts: fast });
    // Hold the first test in its checks: its copy's conversations table locked once the copy is up.
    const [copy] = (
      await waitForInstances(
        stack.plane,
        (list) => list.some((i) => i.instanceId.startsWith(`${SOURCE}-dr-test-`) && i.status === 'available'),
        'the first copy',
      )
    ).filter((i) => i.instanceId.startsWith(`${SOURCE}-dr-test-`));
    const locker = new Client({ ...copy!.endpoint! });
    await locker.connect();
    await locker.query('BEGIN; LOCK TABLE conversations IN ACCESS EXCLUSIVE MODE');
    let second: Awaited<ReturnType<typeof start>>;
    try {
      second = await start({ instanceId: SOURCE, timeouts: fast });
      const waiting = `waiting for the DR test ${first.workflowId} to finish with ${copy!.instanceId}`;
      for (let i = 0; (await second.query(progressQuery)).step !== waiting; i++) {
        assert.ok(i < 300, `the second test never waited: ${(await second.query(progressQuery)).step}`);
        await sleep(100);
      }
    } finally {
      await locker.query('ROLLBACK');
      await locker.end();
    }
    const [a, b] = await Promise.all([first.result(), second.result()]);
    assert.equal(a.ok, true, JSON.stringify(a.checks));
    assert.equal(b.ok, true, JSON.stringify(b.checks));
    assert.equal(b.temporaryInstanceId, a.temporaryInstanceId);
    assert.ok(b.startedAt > a.startedAt);
    assert.deepEqual(await stack.instanceIds(), [SOURCE]);
  });

  it("leaves alone an instance of the copy's name that is no DR orphan, and fails naming it", async () => {
    const today = new Date().toISOString().slice(0, 10).replace(/-/g, '');
    const squatter = `${SOURCE}-dr-test-${today}`;
    await stack.plane.createInstance(squatter, { tags: { team: 'someone-else' } });
    try {
      const failure = await failureOf((await start({ instanceId: SOURCE, timeouts: fast })).result());
      const report = (failure.cause as ApplicationFailure).details?.[0] as DrTestReport;
      assert.match(
        report.error!,
        new RegExp(`^instance ${squatter} already exists \\(.*\\) and is not a DR test copy of ${SOURCE}`),
      );
      assert.deepEqual(report.orphansRemoved, []);
      assert.equal(
        report.checks.find((c) => c.name === 'cleanup')?.detail,
        `instance ${squatter} belongs to another run: left alone`,
      );
      assert.deepEqual(await stack.instanceIds(), [SOURCE, squatter].sort());
    } finally {
      await waitForInstances(stack.plane, (list) => list.every((i) => i.status !== 'creating'), 'the create');
      await stack.plane.deleteInstance(squatter, { skipFinalSnapshot: true });
    }
  });

  it('refuses bad input naming the field and rule, and creates nothing', async () => {
    const before = { instances: await stack.instanceIds(), reports: await reportFiles() };
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ instanceId: 'Bad_Id' }, /^instanceId "Bad_Id" is not valid: a letter first/],
      [{}, /^instanceId undefined is not valid/],
      [{ instanceId: SOURCE, minRecall: 2 }, /^minRecall 2 is not valid: a number from 0 to 1$/],
      [{ instanceId: SOURCE, timeouts: { restore: 'soon' } }, /^timeouts\.restore "soon" is not valid/],
      [{ instanceId: SOURCE, instance: SOURCE }, /^unknown input field instance/],
      [{ instanceId: 'a'.repeat(50) }, /^instanceId "a{50}" is too long/],
    ];
    for (const [input, message] of cases) {
      const failure = await failureOf((await start(input)).result());
      assert.ok(
        failure.cause instanceof ApplicationFailure,
        `${JSON.stringify(input)}: ${String(failure.cause)}`,
      );
      assert.equal(failure.cause.type, 'InvalidInputError', JSON.stringify(input));
      assert.match(failure.cause.message, message, JSON.stringify(input));
    }
    assert.deepEqual({ instances: await stack.instanceIds(), reports: await reportFiles() }, before);
  });

  it('runs when started by the temporal CLI (workflow start --type drTest --input JSON)', async () => {
    const workflowId = `dr-test-${SOURCE}-cli`;
    await execFileAsync(requireTool('temporal'), [
      ...['workflow', 'start', '--type', 'drTest', '--task-queue', stack.taskQueue],
      ...['--workflow-id', workflowId, '--address', stack.env.address, '--namespace', 'default'],
      ...['--input', JSON.stringify({ instanceId: SOURCE, timeouts: fast })],
    ]);
    const report = (await stack.env.client.workflow.getHandle(workflowId).result()) as DrTestReport;
    assert.equal(report.ok, true, JSON.stringify(report.checks));
    const described = await stack.env.client.workflow.getHandle(workflowId).describe();
    assert.deepEqual(described.searchAttributes.DbopsInstance, [SOURCE]);
    assert.deepEqual(described.searchAttributes.DbopsOperation, ['drTest']);
    assert.deepEqual(await stack.instanceIds(), [SOURCE]);
  });
});
