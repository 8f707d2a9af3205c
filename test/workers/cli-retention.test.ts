import assert from 'node:assert/strict';

import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';

import { createActivities } from '../../activities';
import { OWNER_TAGS } from '../../workflows/lib/owner-tags';
import { runDbops, type CliRun } from '../helpers/cli';
import { startLocalInstance, type LocalInstance } from '../helpers/local-instance';
import { backdatedCopy } from '../helpers/snapshot-copies';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';

const SOURCE = 'cli-ret-src';
const TASK_QUEUE = 'cli-retention';
const backup = (extra: Record<string, string> = {}) => ({
  [OWNER_TAGS.workflowId]: `backup-${SOURCE}`,
  [OWNER_TAGS.runId]: 'run-1',
  [OWNER_TAGS.purpose]: 'backup',
  ...extra,
});

const SNAPSHOTS = [
  { id: 'cli-ret-newest', ageDays: 0, tags: backup() },
  { id: 'cli-ret-old', ageDays: 40, tags: backup() },
  { id: 'cli-ret-old-kept', ageDays: 45, tags: backup({ [OWNER_TAGS.keep]: 'true' }) },
];

describe('dbops retention (dev server, worker, local provider on a real cluster)', function () {
  this.timeout(300_000);
  let env: TestWorkflowEnvironment;
  let instance: LocalInstance;
  let worker: Worker;
  let running: Promise<void>;
  let template: string;

  /** `bin/dbops ...args` as a user runs it, against the suite's Temporal server, queue and state. */
  function dbops(...args: string[]): Promise<CliRun> {
    return runDbops({ address: env.address, taskQueue: TASK_QUEUE, stateDir: instance.stateDir }, args);
  }

  const snapshotIds = async () =>
    (await instance.plane.listSnapshots(SOURCE)).map((s) => s.snapshotId).sort();

  before(async () => {
    [env, instance] = await Promise.all([createDevServerEnv(), startLocalInstance(SOURCE)]);
    // The instance's automated backup, taken when it was created, gives the files of the copies.
    template = (await instance.plane.listSnapshots(SOURCE))[0]!.snapshotId;
    worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: TASK_QUEUE,
      workflowBundle: await workflowBundle(),
      activities: createActivities(instance.deps),
    });
    running = worker.run();
  });
  // Each test starts from the whole fixture, whatever ran before it.
  beforeEach(async () => {
    const present = await snapshotIds();
    for (const snapshot of SNAPSHOTS) {
      if (!present.includes(snapshot.id)) await backdatedCopy(instance.stateDir, template, snapshot);
    }
  });
  after(async () => {
    worker?.shutdown();
    await running?.catch(() => undefined);
    await env?.teardown();
    await instance?.stop();
  });

  it('refuses a bad policy or an unknown instance with a specific error, and --dry-run deletes nothing', async () => {
    const before = await snapshotIds();
    const [fewest, negative, unknown, dryRun] = await Promise.all([
      dbops('retention', '--keep-newest', '0', '--dry-run'),
      dbops('retention', '--keep-days=-1'),
      dbops('retention', '--instance', 'cli-ret-nowhere'),
      dbops('retention', '--instance', SOURCE, '--keep-newest', '1', '--keep-days', '10', '--dry-run'),
    ]);
    assert.equal(fewest.code, 2);
    assert.match(
      fewest.stderr,
      /^dbops retention: --keep-newest 0 is not valid: at least 1 \(the newest snapshot always stays\)$/m,
    );
    assert.equal(negative.code, 2);
    assert.match(negative.stderr, /^dbops retention: --keep-days -1 is not valid: from 0 to 3650$/m);
    assert.equal(unknown.code, 1, unknown.stderr);
    assert.match(unknown.stderr, /^dbops retention failed: .*instance cli-ret-nowhere not found$/m);

    assert.equal(dryRun.code, 0, `${dryRun.stdout}\n${dryRun.stderr}`);
    assert.match(dryRun.stdout, /^SNAPSHOT +INSTANCE +CREATED +ACTION +REASON$/m);
    assert.match(
      dryRun.stdout,
      /^cli-ret-old +cli-ret-src +\S+ +would delete +40\.0 days old \(over 10\) and not among the newest 1$/m,
    );
    assert.match(dryRun.stdout, /^cli-ret-newest +cli-ret-src +\S+ +kept +the newest available snapshot$/m);
    assert.match(dryRun.stdout, /^cli-ret-old-kept +cli-ret-src +\S+ +kept +tagged dbops:keep=true$/m);
    assert.match(dryRun.stdout, /^rds:cli-ret-src-\S+ +cli-ret-src +\S+ +kept +automated: /m);
    assert.match(dryRun.stdout, /^dry run: retention would delete 1 snapshot \(cli-ret-old\), kept 3$/m);
    assert.deepEqual(await snapshotIds(), before);
  });

  it('without --dry-run deletes what the dry run listed and says so', async () => {
    const run = await dbops('retention', '--instance', SOURCE, '--keep-newest', '1', '--keep-days', '10');
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stderr, new RegExp(`^started retention-${SOURCE}-\\d{8}-\\d{6}$`, 'm'));
    assert.match(run.stdout, /^cli-ret-old +cli-ret-src +\S+ +deleted +40\.0 days old/m);
    assert.match(run.stdout, /^retention deleted 1 snapshot \(cli-ret-old\), kept 3$/m);
    const left = await snapshotIds();
    assert.ok(!left.includes('cli-ret-old'));
    assert.ok(left.includes('cli-ret-newest') && left.includes('cli-ret-old-kept'));
  });
});
