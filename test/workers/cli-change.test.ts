import assert from 'node:assert/strict';

import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { Client } from 'pg';

import { createActivities } from '../../activities';
import type { BackfillProgress } from '../../workflows/backfill';
import type { DeployMigrationResult } from '../../workflows/deploy-migration';
import { counter } from '../fixtures/backfills/counter';
import { runDbops, type CliRun } from '../helpers/cli';
import { startLocalInstance, type LocalInstance } from '../helpers/local-instance';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';

const ROWS = 5_000;
const INSTANCE = 'cli-change-prod';
const BACKFILL_ID = `backfill-counter-${INSTANCE}`;

describe('dbops deploy / backfill / status (dev server, worker, local instance)', function () {
  this.timeout(300_000);
  let env: TestWorkflowEnvironment;
  let instance: LocalInstance;
  let client: Client;
  let worker: Worker;
  let running: Promise<void>;
  const taskQueue = 'cli-change';

  /** `bin/dbops ...args` as a user runs it, against the suite's Temporal server and queue. */
  function dbops(...args: string[]): Promise<CliRun> {
    return dbopsOn(taskQueue, ...args);
  }

  function dbopsOn(queue: string, ...args: string[]): Promise<CliRun> {
    return runDbops({ address: env.address, taskQueue: queue, stateDir: instance.stateDir }, args);
  }

  async function statusJson(): Promise<{ status: string; progress: BackfillProgress }> {
    const run = await dbops('status', BACKFILL_ID, '--json');
    assert.equal(run.code, 0, run.stderr);
    return JSON.parse(run.stdout) as { status: string; progress: BackfillProgress };
  }

  async function until(what: string, done: (p: BackfillProgress) => boolean): Promise<BackfillProgress> {
    for (let i = 0; i < 120; i++) {
      const { progress } = await statusJson();
      if (done(progress)) return progress;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.fail(`backfill never reached: ${what}`);
  }

  async function doneRows(): Promise<number> {
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM counter_rows WHERE done`,
    );
    return rows[0]!.n;
  }

  /** counter_rows with ROWS rows, none done. */
  async function resetTable(): Promise<void> {
    await client.query(`DROP TABLE IF EXISTS counter_rows`);
    await client.query(
      `CREATE TABLE counter_rows (id bigint PRIMARY KEY, value int NOT NULL, applied int NOT NULL DEFAULT 0, done boolean NOT NULL DEFAULT false)`,
    );
    await client.query(
      `INSERT INTO counter_rows (id, value) SELECT g, g % 97 FROM generate_series(1, $1) g`,
      [ROWS],
    );
    await client.query('ANALYZE counter_rows');
  }

  before(async () => {
    [env, instance] = await Promise.all([
      createDevServerEnv(),
      startLocalInstance(INSTANCE, { Environment: 'production' }),
    ]);
    client = await instance.connect();
    worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities({ ...instance.deps, backfills: { counter } }),
    });
    running = worker.run();
  });
  after(async () => {
    worker?.shutdown();
    await running?.catch(() => undefined);
    await Promise.all([env?.teardown(), instance?.stop()]);
  });

  it('deploy on a production instance waits for approval, approves as --approve-as, migrates; --json prints the result', async () => {
    const run = await dbops('deploy', '--instance', INSTANCE, '--approve-as', 'alice', '--json');
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as DeployMigrationResult;
    assert.equal(result.status, 'migrated');
    assert.equal(result.approvedBy, 'alice');
    // Production: rehearsed on a copy first, which is gone again.
    assert.deepEqual(
      [result.rehearsal?.ok, result.rehearsal?.copyDeleted, result.rehearsal?.migrations.length],
      [true, true, result.applied.length],
    );
    assert.equal(result.applied.at(-1), '0004_conversation_chunks_ivfflat_index');
    assert.match(result.snapshotId ?? '', /-pre-migration-\d{8}-\d{6}$/);
    const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgmigrations`);
    assert.equal(rows[0]!.n, result.applied.length);

    const again = await dbops('deploy', '--instance', INSTANCE);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^nothing-to-apply on cli-change-prod; pre-migration snapshot -$/m);
  });

  it('backfill start --detach, pause, set, resume; status follows the progress bar to the end', async () => {
    await resetTable();
    const start = await dbops(
      'backfill',
      'start',
      'counter',
      '--instance',
      INSTANCE,
      '--params',
      '{"factor": 3}',
      '--batch-size',
      '100',
      '--delay-ms',
      '100',
      '--detach',
    );
    assert.equal(start.code, 0, start.stderr);
    assert.equal(start.stdout.trim().split('\n').at(-1), BACKFILL_ID);

    const pause = await dbops('backfill', 'pause', BACKFILL_ID);
    assert.equal(pause.code, 0, pause.stderr);
    const paused = await until('paused', (p) => p.state === 'paused');
    assert.ok(paused.rowsDone < ROWS);
    assert.equal(await doneRows(), paused.rowsDone);

    const refused = await dbops('backfill', 'set', BACKFILL_ID, '--batch-size', '0');
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /batchSize: 0 is not an integer from 1 to 100000/);
    const set = await dbops(
      'backfill',
      'set',
      BACKFILL_ID,
      '--batch-size',
      '1000',
      '--delay-ms',
      '0',
      '--json',
    );
    assert.equal(set.code, 0, set.stderr);
    assert.deepEqual(JSON.parse(set.stdout), { batchSize: 1000, delayMs: 0 });
    assert.equal((await statusJson()).progress.batchSize, 1000);
    assert.equal(await doneRows(), paused.rowsDone, 'nothing moved while paused');

    const resume = await dbops('backfill', 'resume', BACKFILL_ID);
    assert.equal(resume.code, 0, resume.stderr);
    const status = await dbops('status', BACKFILL_ID);
    assert.equal(status.code, 0, status.stderr);
    const lines = status.stdout.trim().split('\n');
    assert.match(
      lines.at(-2)!,
      /^\[#{30}\] {2}100\.0% {2}5000\/5000 rows \(5000 changed\) {2}\d+ rows\/s {2}batch 1000 {2}ETA 0s {2}completed$/,
    );
    assert.equal(lines.at(-1), `${BACKFILL_ID}: COMPLETED`);
    const { rows } = await client.query<{ wrong: number }>(
      `SELECT count(*)::int AS wrong FROM counter_rows WHERE applied <> 1 OR value <> (id % 97) * 3`,
    );
    assert.equal(rows[0]!.wrong, 0);
  });

  it('backfill cancel stops it; status --json shows it cancelled with what was done kept', async () => {
    await resetTable();
    // 50 batches 500 ms apart: the two CLI runs before the cancel cannot outlast it even on a slow machine.
    const args = ['--params', '{"factor": 2}', '--batch-size', '100', '--delay-ms', '500'];
    const start = await dbops('backfill', 'start', 'counter', '--instance', INSTANCE, ...args, '--detach');
    assert.equal(start.code, 0, start.stderr);
    const twice = await dbops('backfill', 'start', 'counter', '--instance', INSTANCE, ...args);
    assert.equal(twice.code, 1);
    assert.match(
      twice.stderr,
      new RegExp(`${BACKFILL_ID} is already running; see dbops status ${BACKFILL_ID}`),
    );
    const cancel = await dbops('backfill', 'cancel', BACKFILL_ID);
    assert.equal(cancel.code, 0, cancel.stderr);
    const cancelled = await until('cancelled', (p) => p.state === 'cancelled');
    assert.equal((await statusJson()).status, 'COMPLETED');
    assert.ok(cancelled.rowsDone < ROWS);
    assert.equal(await doneRows(), cancelled.rowsDone);
    const late = await dbops('backfill', 'pause', BACKFILL_ID);
    assert.equal(late.code, 1);
    assert.match(late.stderr, new RegExp(`${BACKFILL_ID} is COMPLETED; nothing to pause`));
  });

  it('bad input: exit 2 naming the flag or the field and its rule, and no row changes', async () => {
    await resetTable();
    const notJson = await dbops(
      'backfill',
      'start',
      'counter',
      '--instance',
      INSTANCE,
      '--params',
      '{factor',
    );
    assert.equal(notJson.code, 2);
    assert.match(notJson.stderr, /dbops backfill start: --params is not JSON/);
    const threeStreams = await dbops(
      'backfill',
      'start',
      'counter',
      '--instance',
      INSTANCE,
      '--streams',
      '3',
    );
    assert.equal(threeStreams.code, 2);
    assert.match(threeStreams.stderr, /dbops backfill start: --streams 3: give 1 or 2/);
    const badFactor = await dbops(
      'backfill',
      'start',
      'counter',
      '--instance',
      INSTANCE,
      '--params',
      '{"factor": 11}',
    );
    assert.equal(badFactor.code, 2, badFactor.stderr);
    assert.match(badFactor.stderr, /params\.factor of backfill counter: 11 is not an integer from 2 to 10/);
    // `start` may be left out, as in `dbops backfill NAME --instance ID`.
    const unknown = await dbops('backfill', 'rewrite-everything', '--instance', INSTANCE);
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.match(unknown.stderr, /name: no backfill named "rewrite-everything"; known: counter/);
    const noId = await dbops('backfill', 'set', '--batch-size', '10');
    assert.equal(noId.code, 2);
    assert.match(noId.stderr, /dbops backfill set: WORKFLOW_ID is required/);
    const missing = await dbops('backfill', 'pause', 'no-such-backfill');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no workflow no-such-backfill/);
    const noInstance = await dbops('deploy');
    assert.equal(noInstance.code, 2);
    assert.match(noInstance.stderr, /dbops deploy: --instance ID is required/);
    assert.equal(await doneRows(), 0);
  });
});
