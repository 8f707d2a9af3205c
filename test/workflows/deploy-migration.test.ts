import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { Client } from 'pg';

import { createActivities, type ActivityDeps } from '../../activities';
import { adminEndpoint } from '../../activities/control-plane/local-jobs';
import { DEFAULT_MIGRATE_SETTINGS, runMigrations } from '../../activities/postgres/migrations';
import { setUpWorkerRole } from '../../activities/postgres/worker-role';
import { HEARTBEAT_THROTTLE } from '../../activities/heartbeat';
import type { DeployFailure } from '../../workflows/deploy-migration';
import { deployMigration, pitrRestore } from '../../workflows';
import { createWorker } from '../../workers/worker';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';
import { migrationsDir, startLocalInstance, type LocalInstance } from '../helpers/local-instance';

const SCHEMA = '0004_conversation_chunks_ivfflat_index';
const addNote =
  '-- Up Migration\nALTER TABLE conversations ADD COLUMN note text;\n-- Down Migration\n-- squawk-ignore ban-drop-column\nALTER TABLE conversations DROP COLUMN note;\n';
const broken = '-- Up Migration\nSELECT 1 / 0;\n-- Down Migration\nSELECT 1;\n';
/** A migration that runs until it is cancelled or its session ends. */
const SLOW_SQL = 'pg_sleep(600)';
/** What the gate migration's statement contains. */
const GATE_SQL = 'SELECT open FROM deploy_gate';
/** Waits until the test opens the gate: a step is observed inside it, never placed by timing. */
const WAIT_FOR_GATE = `-- Up Migration\nDO $$ BEGIN WHILE NOT (${GATE_SQL}) LOOP PERFORM pg_sleep(0.05); END LOOP; END $$;\n-- Down Migration\nSELECT 1;\n`;
const ADD_LEVEL = addNote.replaceAll('note', 'level');
const slow = `-- Up Migration\nSELECT ${SLOW_SQL};\n-- Down Migration\nSELECT 1;\n`;

/** The failure's structured details (DeployFailure) and its message. */
async function deployFailure(
  promise: Promise<unknown>,
): Promise<{ message: string; details: DeployFailure }> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof WorkflowFailedError, String(error));
    const cause = error.cause as { message: string; details?: unknown[] };
    return { message: cause.message, details: cause.details?.[0] as DeployFailure };
  }
  assert.fail('the deploy succeeded');
}

/** Reads and writes conversations in a loop on several connections, counting failures. */
function startLoad(clients: Client[]) {
  let running = true;
  const counts = { ok: 0, failed: 0, errors: [] as string[] };
  const loops = clients.map(async (client, n) => {
    while (running) {
      try {
        await client.query('BEGIN');
        await client.query(`INSERT INTO conversations (user_id, title) VALUES ($1, 'load')`, [n]);
        await client.query(
          `UPDATE conversations SET updated_at = now() WHERE id = (SELECT max(id) FROM conversations)`,
        );
        await client.query(`SELECT count(*) FROM conversations WHERE user_id = $1`, [n]);
        await client.query('COMMIT');
        counts.ok++;
      } catch (error) {
        counts.failed++;
        counts.errors.push((error as Error).message);
        await client.query('ROLLBACK').catch(() => undefined);
      }
    }
  });
  return {
    counts,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return counts;
    },
  };
}

describe('deployMigration workflow (dev server, local instance)', () => {
  let env: TestWorkflowEnvironment;
  let instance: LocalInstance;
  let queue = 0;

  before(async () => {
    [env, instance] = await Promise.all([createDevServerEnv(), startLocalInstance('deploy-test')]);
  });
  // Each test starts from the schema and nothing else, whatever ran before it.
  beforeEach(async () => {
    await emptyDatabase();
    const client = await instance.connect();
    const schema = await migrationsDir(SCHEMA);
    await runMigrations(
      client,
      schema,
      'up',
      (await readdir(schema))
        .filter((f) => f.endsWith('.sql'))
        .map((f) => path.basename(f, '.sql'))
        .sort(),
      DEFAULT_MIGRATE_SETTINGS,
    );
    await client.end();
  });
  after(async () => {
    await Promise.all([env?.teardown(), instance?.stop()]);
  });

  /** An application database as a new instance has it: the worker role set up, no table. */
  async function emptyDatabase(): Promise<void> {
    const admin = new Client(adminEndpoint(instance.endpoint.port, instance.endpoint.database));
    admin.on('error', () => undefined);
    await admin.connect();
    try {
      await admin.query(
        'DROP SCHEMA public CASCADE; DROP SCHEMA IF EXISTS dbops CASCADE; CREATE SCHEMA public',
      );
      await setUpWorkerRole(admin);
    } finally {
      await admin.end();
    }
  }

  /** Runs `fn` with a worker whose activities use `deps` on top of the instance's. */
  async function withWorker<T>(
    deps: Partial<ActivityDeps>,
    fn: (taskQueue: string) => Promise<T>,
  ): Promise<T> {
    const taskQueue = `deploy-${++queue}`;
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities({ ...instance.deps, ...deps }),
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    });
    return worker.runUntil(fn(taskQueue));
  }

  const start = (taskQueue: string, id: string, input: Partial<Parameters<typeof deployMigration>[0]> = {}) =>
    env.client.workflow.start(deployMigration, {
      taskQueue,
      workflowId: id,
      args: [{ instanceId: instance.instanceId, lockTimeoutMs: 1000, ...input }],
    });

  it('applies the schema after a pre-migration snapshot', async () => {
    await emptyDatabase();
    const result = await withWorker({}, async (taskQueue) =>
      (await start(taskQueue, 'deploy-schema')).result(),
    );
    assert.equal(result.status, 'migrated');
    assert.deepEqual(result.applied, [
      '0001_conversations',
      '0002_conversation_chunks',
      '0003_conversation_chunks_hnsw_index',
      SCHEMA,
    ]);
    assert.deepEqual(result.heldBack, []);
    // Named after the instance: under the worker's IAM operations prefix, as the instance is.
    assert.match(result.snapshotId ?? '', new RegExp(`^${instance.instanceId}-pre-migration-\\d{8}-\\d{6}$`));
    assert.equal((await instance.plane.describeSnapshot(result.snapshotId!)).status, 'available');
    assert.deepEqual(result.verify?.invalidIndexes, []);
    assert.deepEqual(result.verify?.analyzedTables, ['conversation_chunks', 'conversations']);
  });

  it('an unsafe migration is blocked by the lint, naming file, line and rule; nothing is snapshotted or applied', async () => {
    const dir = await migrationsDir(SCHEMA, {
      '0100_unsafe.sql': '-- Up Migration\nCREATE INDEX conversations_title_idx ON conversations (title);\n',
    });
    const snapshotsBefore = (await instance.plane.listSnapshots(instance.instanceId)).length;
    const { message, details } = await withWorker({ migrationsDir: dir }, async (taskQueue) =>
      deployFailure((await start(taskQueue, 'deploy-unsafe')).result()),
    );
    assert.equal(details.stage, 'lint');
    assert.deepEqual(
      details.lintViolations.map(({ file, line, rule }) => ({ file, line, rule })),
      [{ file: 'migrations/0100_unsafe.sql', line: 2, rule: 'require-concurrent-index-creation' }],
    );
    assert.match(
      message,
      /blocked by the migration lint: migrations\/0100_unsafe\.sql:2 require-concurrent-index-creation/,
    );
    assert.equal((await instance.plane.listSnapshots(instance.instanceId)).length, snapshotsBefore);
    const client = await instance.connect();
    const { rowCount } = await client.query(`SELECT 1 FROM pgmigrations WHERE name = '0100_unsafe'`);
    assert.equal(rowCount, 0);
  });

  it('under a concurrent read/write load, adds a column and builds an index concurrently with zero failed load transactions', async () => {
    const seed = await instance.connect();
    await seed.query(
      `INSERT INTO conversations (user_id, title) SELECT g % 100, 'seed ' || g FROM generate_series(1, 20000) g`,
    );
    const dir = await migrationsDir(SCHEMA, {
      '0100_add_summary.sql':
        '-- Up Migration\nALTER TABLE conversations ADD COLUMN summary text;\n-- Down Migration\n-- squawk-ignore ban-drop-column\nALTER TABLE conversations DROP COLUMN summary;\n',
      '0101_index_created_at.sql':
        '-- dbops:no-transaction\n-- Up Migration\nCREATE INDEX CONCURRENTLY IF NOT EXISTS conversations_created_at_idx ON conversations (created_at);\n-- Down Migration\nDROP INDEX CONCURRENTLY IF EXISTS conversations_created_at_idx;\n',
    });
    const load = startLoad(await Promise.all([1, 2, 3, 4].map(() => instance.connect())));
    const result = await withWorker({ migrationsDir: dir }, async (taskQueue) =>
      (await start(taskQueue, 'deploy-under-load')).result(),
    );
    const okDuringDeploy = load.counts.ok;
    const counts = await load.stop();
    assert.deepEqual(result.applied, ['0100_add_summary', '0101_index_created_at']);
    assert.deepEqual(counts.errors, []);
    assert.equal(counts.failed, 0);
    assert.ok(okDuringDeploy > 0, 'the load ran while deploying');
    const { rows } = await seed.query<{ valid: boolean }>(
      `SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = 'conversations_created_at_idx'::regclass`,
    );
    assert.deepEqual(rows, [{ valid: true }]);
  });

  it('two concurrent deploys never interleave: one applies, the other waits and finds it done', async () => {
    const dir = await migrationsDir(SCHEMA, {
      '0102_add_tag.sql':
        '-- Up Migration\nSELECT pg_sleep(2);\n\nALTER TABLE conversations ADD COLUMN IF NOT EXISTS tag text;\n-- Down Migration\n-- squawk-ignore ban-drop-column\nALTER TABLE conversations DROP COLUMN IF EXISTS tag;\n',
    });
    const results = await withWorker({ migrationsDir: dir }, async (taskQueue) => {
      const [a, b] = await Promise.all([
        start(taskQueue, 'deploy-concurrent-a'),
        start(taskQueue, 'deploy-concurrent-b'),
      ]);
      return Promise.all([a.result(), b.result()]);
    });
    assert.deepEqual(results.map((r) => r.applied).sort(), [[], ['0102_add_tag']]);
    assert.notEqual(results[0].snapshotId, results[1].snapshotId);
    const client = await instance.connect();
    const { rows } = await client.query(
      `SELECT count(*)::int AS n FROM pgmigrations WHERE name = '0102_add_tag'`,
    );
    assert.deepEqual(rows, [{ n: 1 }]);
  });

  it('whenLocked "fail": fails at once naming the session that holds the migration lock; nothing applied', async () => {
    const holder = await instance.connect();
    await holder.query(`SET application_name = 'manual-migration'`);
    await holder.query('SELECT pg_advisory_lock(7241865325823964)');
    const dir = await migrationsDir(SCHEMA, { '0103_add_note.sql': addNote });
    const { message, details } = await withWorker({ migrationsDir: dir }, async (taskQueue) =>
      deployFailure((await start(taskQueue, 'deploy-locked', { whenLocked: 'fail' })).result()),
    );
    await holder.query('SELECT pg_advisory_unlock_all()');
    assert.equal(details.stage, 'migrate');
    assert.deepEqual(details.applied, []);
    assert.match(message, /the migration lock is held by session pid \d+ \(manual-migration/);
    assert.match(message, /nothing was applied/);
  });

  it('a failing migration: what this deploy applied is migrated down, and the result says so', async () => {
    const dir = await migrationsDir(SCHEMA, {
      '0103_add_note.sql': addNote,
      '0104_broken.sql': broken,
    });
    const { message, details } = await withWorker({ migrationsDir: dir }, async (taskQueue) =>
      deployFailure((await start(taskQueue, 'deploy-broken')).result()),
    );
    assert.deepEqual(details.applied, ['0103_add_note']);
    assert.deepEqual(details.reverted, ['0103_add_note']);
    assert.equal(details.restoreCommand, undefined);
    assert.match(message, /division by zero \(SQLSTATE 22012\)/);
    const client = await instance.connect();
    const { rowCount } = await client.query(
      `SELECT 1 FROM information_schema.columns WHERE table_name = 'conversations' AND column_name = 'note'
       UNION ALL SELECT 1 FROM pgmigrations WHERE name IN ('0103_add_note', '0104_broken')`,
    );
    assert.equal(rowCount, 0);
  });

  it('an irreversible migration applied before the failure: no revert, the snapshot and the exact restore commands reported; the point-in-time restore given gives the schema from before the migration', async () => {
    const irreversible = '-- Up Migration\nALTER TABLE conversations ALTER COLUMN title DROP DEFAULT;\n';
    // The failing migration waits for the test: it fails in a later second than the irreversible
    // one committed, so a restore to any time after the migration began would keep that change.
    const observer = await instance.connect();
    await observer.query(
      'CREATE TABLE pitr_gate (open boolean NOT NULL); INSERT INTO pitr_gate VALUES (false)',
    );
    const gatedBroken = `-- Up Migration\nDO $$ BEGIN WHILE NOT (SELECT open FROM pitr_gate) LOOP PERFORM pg_sleep(0.05); END LOOP; END $$;\nSELECT 1 / 0;\n`;
    const dir = await migrationsDir(SCHEMA, {
      '0103_title_no_default.sql': irreversible,
      '0104_broken.sql': gatedBroken,
    });
    const startedAt = new Date();
    const { message, details, restored } = await withWorker({ migrationsDir: dir }, async (taskQueue) => {
      const handle = await start(taskQueue, 'deploy-irreversible');
      await runningStatement(observer, 'SELECT open FROM pitr_gate'); // the irreversible one has committed
      const second = Math.floor(Date.now() / 1000);
      while (Math.floor(Date.now() / 1000) <= second) await new Promise((resolve) => setTimeout(resolve, 50));
      await observer.query('UPDATE pitr_gate SET open = true');
      const failure = await deployFailure(handle.result());
      assert.ok(failure.details.pitrRestore !== undefined, failure.message);
      // What a user does with the report: start pitrRestore with the input it gives.
      const restoredCopy = await env.client.workflow.execute(pitrRestore, {
        taskQueue,
        workflowId: 'deploy-irreversible-pitr',
        args: [{ ...failure.details.pitrRestore.input, timeouts: { pollInterval: '1 second' } }],
      });
      return { ...failure, restored: restoredCopy };
    });
    assert.deepEqual(details.applied, ['0103_title_no_default']);
    assert.deepEqual(details.reverted, []);
    assert.match(details.snapshotId ?? '', /-pre-migration-\d{8}-\d{6}$/);
    assert.equal(
      details.restoreCommand,
      `dbops restore --instance deploy-test --snapshot ${details.snapshotId} --target deploy-test-restored`,
    );
    assert.ok(message.includes(details.restoreCommand), message);
    const snapshot = await instance.plane.describeSnapshot(details.snapshotId!);
    assert.equal(snapshot.status, 'available');
    assert.equal((await instance.plane.describeInstance('deploy-test')).status, 'available');

    // The point in time: the whole second before the migration step began, after the snapshot.
    const { restoreTime } = details.pitrRestore!.input;
    assert.match(restoreTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.ok(
      restoreTime >= startedAt.toISOString().slice(0, 19),
      `${restoreTime} is before the deploy started`,
    );
    assert.ok(
      snapshot.createdAt !== undefined && restoreTime >= snapshot.createdAt.slice(0, 19),
      `${restoreTime} is before the snapshot (${snapshot.createdAt})`,
    );
    assert.deepEqual(details.pitrRestore!.input, {
      instanceId: 'deploy-test',
      restoreTime,
      targetInstanceId: 'deploy-test-restored',
    });
    assert.equal(
      details.pitrRestore!.command,
      `dbops restore --instance deploy-test --to ${restoreTime} --target deploy-test-restored`,
    );
    assert.ok(message.includes(details.pitrRestore!.command), message);

    const copy = new Client({ ...restored.endpoint });
    copy.on('error', () => undefined);
    await copy.connect();
    try {
      const { rows } = await copy.query<{ has_default: boolean; recorded: number }>(
        `SELECT (SELECT column_default IS NOT NULL FROM information_schema.columns
                  WHERE table_name = 'conversations' AND column_name = 'title') AS has_default,
                (SELECT count(*)::int FROM pgmigrations WHERE name = '0103_title_no_default') AS recorded`,
      );
      assert.deepEqual(rows, [{ has_default: true, recorded: 0 }], 'the copy has the schema from before');
    } finally {
      await copy.end();
      await instance.plane.deleteInstance(restored.targetInstanceId, { skipFinalSnapshot: true });
    }
  });

  it('waits for approval on production, records who approved, then runs the rollout hook', async () => {
    const out = path.join(await mkdtemp(path.join(os.tmpdir(), 'dbops-hook-')), 'rollout.txt');
    const hook = { command: ['sh', '-c', `echo "rolled out after $DBOPS_APPLIED_MIGRATIONS" | tee ${out}`] };
    const dir = await migrationsDir(SCHEMA, { '0105_add_note.sql': addNote });
    const snapshotsBefore = (await instance.plane.listSnapshots(instance.instanceId)).length;
    let approvedAt = '';
    const result = await withWorker(
      { migrationsDir: dir, rolloutHooks: { kubectl: hook } },
      async (taskQueue) => {
        const handle = await start(taskQueue, 'deploy-approved', {
          requireApproval: true,
          rolloutHook: 'kubectl',
        });
        await waitForStage(handle, 'awaiting-approval');
        // No snapshot while waiting: the one to restore is taken just before migrating.
        const waiting = await handle.query<{ snapshotId: string | undefined }>('progress');
        assert.equal(waiting.snapshotId, undefined);
        assert.equal((await instance.plane.listSnapshots(instance.instanceId)).length, snapshotsBefore);
        approvedAt = new Date().toISOString();
        await assert.rejects(
          handle.executeUpdate('approve', { args: [{ approvedBy: ' ' }] }),
          (error: Error) =>
            /approvedBy: name who approves/.test((error.cause as Error | undefined)?.message ?? ''),
        );
        assert.equal(
          await handle.executeUpdate('approve', { args: [{ approvedBy: 'alice' }] }),
          'approved by alice',
        );
        return handle.result();
      },
    );
    assert.equal(result.approvedBy, 'alice');
    assert.deepEqual(result.applied, ['0105_add_note']);
    const snapshot = await instance.plane.describeSnapshot(result.snapshotId!);
    assert.ok(
      snapshot.createdAt !== undefined && snapshot.createdAt >= approvedAt,
      `snapshot ${snapshot.createdAt} taken before the approval at ${approvedAt}`,
    );
    assert.equal(result.rollout?.output.trim(), 'rolled out after 0105_add_note');
    assert.equal((await readFile(out, 'utf8')).trim(), 'rolled out after 0105_add_note');
  });

  it('no approval within the timeout: fails; nothing snapshotted or migrated', async () => {
    const dir = await migrationsDir(SCHEMA, {
      '0106_add_lang.sql': addNote.replaceAll('note', 'lang'),
    });
    const snapshotsBefore = (await instance.plane.listSnapshots(instance.instanceId)).length;
    const { message, details } = await withWorker({ migrationsDir: dir }, async (taskQueue) =>
      deployFailure(
        (
          await start(taskQueue, 'deploy-unapproved', { requireApproval: true, approvalTimeout: '2 seconds' })
        ).result(),
      ),
    );
    assert.equal(details.stage, 'approval');
    assert.equal(details.snapshotId, undefined);
    assert.equal(message, 'deploy to deploy-test: no approval within 2 seconds; nothing was migrated');
    assert.equal((await instance.plane.listSnapshots(instance.instanceId)).length, snapshotsBefore);
    const client = await instance.connect();
    const { rowCount } = await client.query(`SELECT 1 FROM pgmigrations WHERE name = '0106_add_lang'`);
    assert.equal(rowCount, 0);
  });

  it('cancelled while a migration runs: its SQL is cancelled, what this deploy applied is reverted, and the report says exactly that', async () => {
    const dir = await migrationsDir(SCHEMA, {
      '0107_add_mood.sql': addNote.replaceAll('note', 'mood'),
      '0108_slow.sql': slow,
    });
    const observer = await instance.connect();
    const { message, details } = await withWorker({ migrationsDir: dir }, async (taskQueue) => {
      const handle = await start(taskQueue, 'deploy-cancelled');
      await runningStatement(observer, SLOW_SQL);
      await handle.cancel();
      return deployFailure(handle.result());
    });
    assert.equal(details.stage, 'migrate');
    assert.deepEqual(details.applied, ['0107_add_mood']);
    assert.deepEqual(details.reverted, ['0107_add_mood']);
    assert.match(message, /the deploy was cancelled\. reverted 0107_add_mood; the schema is as before/);
    assert.deepEqual(await leftovers(observer, SLOW_SQL), { running: 0, advisoryLocks: 0 });
    assert.deepEqual(await applied(observer, ['0107_add_mood', '0108_slow']), []);
    const { rowCount } = await observer.query(
      `SELECT 1 FROM information_schema.columns WHERE table_name = 'conversations' AND column_name = 'mood'`,
    );
    assert.equal(rowCount, 0);
  });

  it('a failure that is no migration error (connection lost on every attempt): the retries apply nothing twice, and the report and revert cover what the table says this deploy applied', async () => {
    const dir = await migrationsDir(SCHEMA, {
      '0109_add_score.sql': addNote.replaceAll('note', 'score'),
      '0110_slow.sql': slow,
    });
    const observer = await instance.connect();
    const seenApplied: string[][] = [];
    const { message, details } = await withWorker({ migrationsDir: dir }, async (taskQueue) => {
      const handle = await start(taskQueue, 'deploy-connection-lost');
      // Each attempt of the migrate step: once it runs the slow migration, its session is terminated.
      for (let attempt = 1; attempt <= 3; attempt++) {
        const pid = await runningStatement(observer, SLOW_SQL);
        seenApplied.push(await applied(observer, ['0109_add_score', '0110_slow']));
        await observer.query('SELECT pg_terminate_backend($1, 10000)', [pid]);
      }
      return deployFailure(handle.result());
    });
    assert.deepEqual(seenApplied, [['0109_add_score'], ['0109_add_score'], ['0109_add_score']]);
    assert.deepEqual(details.applied, ['0109_add_score']);
    assert.deepEqual(details.reverted, ['0109_add_score']);
    assert.match(message, /terminat/);
    assert.deepEqual(await leftovers(observer, SLOW_SQL), { running: 0, advisoryLocks: 0 });
    assert.deepEqual(await applied(observer, ['0109_add_score', '0110_slow']), []);
  });

  it('a worker SIGKILLed between two migrations: its session ends, the retry applies only the missing one, and the result lists both', async () => {
    const observer = await instance.connect();
    await observer.query(
      'CREATE TABLE deploy_gate (open boolean NOT NULL); INSERT INTO deploy_gate VALUES (false)',
    );
    const dir = await migrationsDir(SCHEMA, {
      '0111_add_level.sql': ADD_LEVEL,
      '0112_wait_for_gate.sql': WAIT_FOR_GATE,
    });
    const taskQueue = `deploy-${++queue}`;
    const first = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(__dirname, '..', 'fixtures', 'worker-process.ts')],
      {
        env: {
          ...process.env,
          TEST_STATE_DIR: instance.stateDir,
          TEST_ENDPOINT: JSON.stringify(instance.endpoint),
          TEST_TEMPORAL_ADDRESS: env.address,
          TEST_TASK_QUEUE: taskQueue,
          TEST_MIGRATIONS_DIR: dir,
        },
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
    const handle = await start(taskQueue, 'deploy-worker-killed');
    const killedPid = await runningStatement(observer, GATE_SQL);
    assert.deepEqual(await applied(observer, ['0111_add_level', '0112_wait_for_gate']), ['0111_add_level']);
    first.kill('SIGKILL');
    await new Promise((resolve) => first.once('exit', resolve));
    // The database notices the vanished client and ends its session: the lock is free for the retry.
    await sessionGone(observer, killedPid);

    const second = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities({ ...instance.deps, migrationsDir: dir }),
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    });
    const result = await second.runUntil(async () => {
      // The retry (after the step's heartbeat timeout) runs only the gate migration: open it.
      await runningStatement(observer, GATE_SQL);
      assert.deepEqual(await applied(observer, ['0111_add_level', '0112_wait_for_gate']), ['0111_add_level']);
      await observer.query('UPDATE deploy_gate SET open = true');
      return handle.result();
    });
    assert.equal(result.status, 'migrated');
    assert.deepEqual(result.applied, ['0111_add_level', '0112_wait_for_gate']);
    assert.deepEqual(await applied(observer, ['0111_add_level', '0112_wait_for_gate']), result.applied);
    assert.deepEqual(await leftovers(observer, GATE_SQL), { running: 0, advisoryLocks: 0 });
  });

  it('a worker stopped mid-migration (a redeploy) gives it the shutdown grace, then cancels its SQL and frees the lock; another worker finishes the deploy', async () => {
    const observer = await instance.connect();
    await observer.query(
      'CREATE TABLE deploy_gate (open boolean NOT NULL); INSERT INTO deploy_gate VALUES (false)',
    );
    const dir = await migrationsDir(SCHEMA, {
      '0113_add_rank.sql': addNote.replaceAll('note', 'rank'),
      '0114_wait_for_gate.sql': WAIT_FOR_GATE,
    });
    const both = ['0113_add_rank', '0114_wait_for_gate'];
    const taskQueue = `deploy-${++queue}`;
    const temporal = {
      address: env.address,
      namespace: 'default',
      taskQueue,
      uiPort: 0,
      shutdownGraceTime: '1 second',
    };
    const stopping = await createWorker(temporal, { ...instance.deps, migrationsDir: dir });
    const running = stopping.worker.run();
    const handle = await start(taskQueue, 'deploy-worker-stopped');
    const pid = await runningStatement(observer, GATE_SQL);
    stopping.worker.shutdown();
    await running; // returns once its activities have ended
    await stopping.close();
    assert.deepEqual(await leftovers(observer, GATE_SQL), { running: 0, advisoryLocks: 0 });
    await sessionGone(observer, pid);
    assert.deepEqual(await applied(observer, both), ['0113_add_rank']);

    const second = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities({ ...instance.deps, migrationsDir: dir }),
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    });
    const result = await second.runUntil(async () => {
      await runningStatement(observer, GATE_SQL);
      await observer.query('UPDATE deploy_gate SET open = true');
      return handle.result();
    });
    assert.deepEqual(result.applied, both);
    assert.deepEqual(await applied(observer, both), both);
    assert.deepEqual(await leftovers(observer, GATE_SQL), { running: 0, advisoryLocks: 0 });
  });
});

async function waitForStage(handle: WorkflowHandle<typeof deployMigration>, stage: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const progress = await handle.query<{ stage: string }>('progress').catch(() => undefined);
    if (progress?.stage === stage) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`the deploy never reached stage ${stage}`);
}

/** Waits until a session runs a statement containing `text` (observed, not timed); its pid. */
async function runningStatement(observer: Client, text: string): Promise<number> {
  for (let i = 0; i < 1200; i++) {
    const { rows } = await observer.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity
        WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()`,
      [text],
    );
    if (rows[0] !== undefined) return rows[0].pid;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`no session ran ${text}`);
}

/** After a run ended: sessions still running `text`, and advisory locks held by anyone. */
async function leftovers(
  observer: Client,
  text: string,
): Promise<{ running: number; advisoryLocks: number }> {
  const { rows } = await observer.query<{ running: number; advisory_locks: number }>(
    `SELECT (SELECT count(*)::int FROM pg_stat_activity
              WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()) AS running,
            (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory') AS advisory_locks`,
    [text],
  );
  return { running: rows[0]!.running, advisoryLocks: rows[0]!.advisory_locks };
}

/** Of `names`, those the migrations table lists as applied. */
async function applied(client: Client, names: string[]): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    'SELECT name FROM pgmigrations WHERE name = ANY($1) ORDER BY id',
    [names],
  );
  return rows.map((row) => row.name);
}

/** Waits until the session `pid` has ended. */
async function sessionGone(observer: Client, pid: number): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const { rowCount } = await observer.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
    if (rowCount === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`session ${pid} still runs 30 s after its client vanished`);
}
