/**
 * Dropped database connections never take the worker down. The real worker runs as its own
 * process, as `npm run worker` starts it (a dev server, the local provider on a real instance),
 * while this test terminates its database sessions again and again during each kind of
 * activity: the health check, a VACUUM, a migration (waiting for the migration lock, then building
 * an index), backfill batches, and the DR checks on a restored copy, whose server is also
 * restarted at once as after a crashed backend. Each termination is placed by what the database
 * shows: a dbops backend waiting behind a lock this test holds (or polling the migration lock),
 * never by timing. Then every run must complete, the attempts in between must have failed with
 * DatabaseConnectionError, and the worker must be the same process, with no unhandled 'error'
 * event in its output.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Client } from 'pg';

import { StateLayout, readJson, type InstanceRecord } from '../../activities/control-plane/local-state';
import { withClient } from '../../activities/postgres/connect';
import {
  DEFAULT_MIGRATE_SETTINGS,
  appliedMigrations,
  runMigrations,
} from '../../activities/postgres/migrations';
import { freePort } from '../../activities/ports';
import { projectRoot } from '../../activities/config-types';
import { backfill, deployMigration, drTest, healthCheck, maintenance } from '../../workflows';
import { MIGRATIONS_DIR, seedDemoData } from '../../workers/seed';
import { startLocalInstance, type LocalInstance } from '../helpers/local-instance';
import {
  backendPid,
  restartImmediately,
  terminateBackend,
  testSession,
  waitForDbopsBackend,
} from '../helpers/sessions';
import { createDevServerEnv } from '../helpers/temporal';

const SOURCE = 'drops-src';
const TASK_QUEUE = 'connection-drops';
const IVFFLAT = '0004_conversation_chunks_ivfflat_index';

/** The worker as `npm run worker` runs it, with everything it writes kept. */
class WorkerProcess {
  output = '';
  readonly exited: Promise<string>;
  private constructor(readonly child: ChildProcess) {
    child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => resolve(`exited (code ${code}, signal ${signal})`)),
    );
  }

  static async start(env: NodeJS.ProcessEnv): Promise<WorkerProcess> {
    const child = spawn(
      process.execPath,
      ['--require', 'tsx/cjs', path.join(projectRoot, 'workers', 'worker-main.ts')],
      { cwd: projectRoot, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const worker = new WorkerProcess(child);
    for (;;) {
      if (worker.output.includes('dbops worker polling task queue')) return worker;
      if (worker.child.exitCode !== null) throw new Error(`the worker did not start: ${worker.output}`);
      await sleep(100);
    }
  }

  /** Why the test should stop waiting: the worker is gone. */
  gone(): string | undefined {
    return this.child.exitCode !== null || this.child.signalCode !== null
      ? `the worker process exited: ${this.output.slice(-2000)}`
      : undefined;
  }

  /** `handle`'s result; fails at once, with the worker's last words, if the worker dies first. */
  result<T>(handle: { workflowId: string; result(): Promise<T> }): Promise<T> {
    return Promise.race([
      handle.result(),
      this.exited.then((how) => {
        throw new Error(
          `the worker process ${how} while ${handle.workflowId} ran:\n${this.output.slice(-3000)}`,
        );
      }),
    ]);
  }

  async stop(): Promise<void> {
    if (this.gone() !== undefined) return;
    this.child.kill('SIGTERM');
    await this.exited;
  }
}

describe('dropped database connections: the worker process stays up and every run completes (dev server, real worker process, local instances)', function () {
  this.timeout(600_000);
  let env: TestWorkflowEnvironment;
  let instance: LocalInstance;
  let worker: WorkerProcess;
  let workerPid: number;
  let monitor: Client;
  let logDir: string;
  /** Terminations that hit a live dbops backend, and restarts that ended one. */
  const hits = { terminated: 0, restarted: 0 };

  before(async () => {
    [env, instance] = await Promise.all([createDevServerEnv(), startLocalInstance(SOURCE)]);
    await seedDemoData(instance.endpoint, { conversations: 300, chunksPerConversation: 2 });
    logDir = await mkdtemp(path.join(os.tmpdir(), 'dbops-drops-'));
    monitor = await testSession(instance.endpoint);
    worker = await WorkerProcess.start({
      ...process.env,
      TEMPORAL_ADDRESS: env.address,
      TEMPORAL_NAMESPACE: 'default',
      DBOPS_TASK_QUEUE: TASK_QUEUE,
      DBOPS_PROVIDER: 'local',
      DBOPS_STATE_DIR: instance.stateDir,
      DBOPS_INSTANCE_ID: SOURCE,
      DBOPS_METRICS_PORT: String(await freePort()),
      PGHOST: instance.endpoint.host,
      PGPORT: String(instance.endpoint.port),
      PGDATABASE: instance.endpoint.database,
      PGUSER: instance.endpoint.user,
    });
    workerPid = worker.child.pid!;
  });
  after(async () => {
    await worker?.stop();
    await monitor?.end().catch(() => undefined);
    for (const other of (await instance?.plane.listInstances().catch(() => [])) ?? []) {
      if (other.instanceId !== SOURCE) {
        await instance.plane
          .deleteInstance(other.instanceId, { skipFinalSnapshot: true })
          .catch(() => undefined);
      }
    }
    await Promise.all([
      env?.teardown(),
      instance?.stop(),
      logDir && rm(logDir, { recursive: true, force: true }),
    ]);
  });

  /** Why waiting for a backend of `handle`'s run is pointless now. */
  const stopWhen = (handle: WorkflowHandle) => async () =>
    worker.gone() ??
    ((await handle.describe()).status.name !== 'RUNNING'
      ? `${handle.workflowId} is no longer running`
      : undefined);

  /** A test session holding `lock` on `table` in an open transaction: what dbops will wait behind. */
  async function lockGate(endpoint: LocalInstance['endpoint'], table: string, mode: string) {
    const gate = await testSession(endpoint);
    await gate.query('BEGIN');
    await gate.query(`LOCK TABLE ${table} IN ${mode} MODE`);
    return { gate, pid: await backendPid(gate) };
  }

  /**
   * The failure of the attempt before `attempt` (once that one is scheduled), as the server
   * records it: the proof that a dropped connection failed it with our typed, retryable error.
   */
  async function lastFailure(
    handle: WorkflowHandle,
    attempt: number,
  ): Promise<{ type: string; message: string; attempt: number }> {
    for (;;) {
      const { raw } = await handle.describe();
      const pending = raw.pendingActivities?.find((activity) => (activity.attempt ?? 0) >= attempt);
      if (pending?.lastFailure) {
        return {
          type: pending.lastFailure.applicationFailureInfo?.type ?? '',
          message: pending.lastFailure.message ?? '',
          attempt: pending.attempt ?? 0,
        };
      }
      const stopped = await stopWhen(handle)();
      if (stopped !== undefined) throw new Error(`no attempt ${attempt} of a pending activity: ${stopped}`);
      await sleep(50);
    }
  }

  /**
   * `rounds` times: wait for a new dbops backend matching `where`, terminate it; from the second
   * round on, first check that the previous termination failed its attempt with DatabaseConnectionError.
   */
  async function terminateRounds(
    handle: WorkflowHandle,
    session: Client,
    what: string,
    where: string,
    rounds: number,
  ): Promise<number[]> {
    const done: number[] = [];
    for (let round = 1; round <= rounds; round++) {
      const pid = await waitForDbopsBackend(session, what, where, { exclude: done, stop: stopWhen(handle) });
      if (round > 1) await assertDroppedAttempt(handle, round);
      assert.equal(await terminateBackend(session, pid), true, `round ${round}: backend ${pid} was gone`);
      hits.terminated++;
      done.push(pid);
    }
    return done;
  }

  /** Attempt `attempt - 1` of the pending activity failed with DatabaseConnectionError. */
  async function assertDroppedAttempt(handle: WorkflowHandle, attempt: number): Promise<void> {
    const failure = await lastFailure(handle, attempt);
    assert.equal(failure.type, 'DatabaseConnectionError', JSON.stringify(failure));
    assert.match(
      failure.message,
      /^the database connection to 127\.0\.0\.1:\d+\/mcp_db was closed: (terminated by an administrator \(pg_terminate_backend\)|the server closed the connection unexpectedly)/,
    );
  }

  it('healthCheck: the kNN EXPLAIN terminated twice, the third attempt measures', async () => {
    const { gate, pid } = await lockGate(instance.endpoint, 'conversation_chunks', 'ACCESS EXCLUSIVE');
    const handle = await env.client.workflow.start(healthCheck, {
      taskQueue: TASK_QUEUE,
      workflowId: 'drops-health',
      args: [{ instanceId: SOURCE }],
    });
    await terminateRounds(handle, monitor, 'waiting for the gate', `${pid} = ANY(pg_blocking_pids(pid))`, 2);
    await assertDroppedAttempt(handle, 3);
    await gate.end();
    const result = await worker.result(handle);
    assert.equal(result.instanceId, SOURCE);
    assert.equal(result.knn.status, 'explained'); // it read the table the gate held
  });

  it('maintenance: the VACUUM terminated twice, then the table is vacuumed', async () => {
    const { gate, pid } = await lockGate(instance.endpoint, 'conversations', 'SHARE UPDATE EXCLUSIVE');
    const handle = await env.client.workflow.start(maintenance, {
      taskQueue: TASK_QUEUE,
      workflowId: 'drops-maintenance',
      args: [
        {
          instanceId: SOURCE,
          tables: ['conversations'],
        },
      ],
    });
    await terminateRounds(
      handle,
      monitor,
      'running VACUUM behind the gate',
      `${pid} = ANY(pg_blocking_pids(pid)) AND query ILIKE 'VACUUM%'`,
      2,
    );
    await assertDroppedAttempt(handle, 3);
    await gate.end();
    const result = await worker.result(handle);
    assert.deepEqual(
      result.vacuumed.map((v) => `${v.schema}.${v.table}`),
      ['public.conversations'],
    );
  });

  it('deployMigration: terminated while polling the migration lock, then while building the index; the deploy applies it', async () => {
    // Back to before the IVFFlat index: the deploy has that index (and what the seed applied after it) to apply.
    const reverted = await withClient(instance.endpoint, async (client) => {
      const applied = await appliedMigrations(client);
      const names = applied.slice(applied.indexOf(IVFFLAT));
      await runMigrations(client, MIGRATIONS_DIR, 'down', names, DEFAULT_MIGRATE_SETTINGS);
      return names;
    });
    assert.equal(reverted[0], IVFFLAT);
    const { PG_MIGRATE_LOCK_ID } = await import('node-pg-migrate');
    const lockHolder = await testSession(instance.endpoint);
    await lockHolder.query('SELECT pg_advisory_lock($1)', [PG_MIGRATE_LOCK_ID]);
    const handle = await env.client.workflow.start(deployMigration, {
      taskQueue: TASK_QUEUE,
      workflowId: 'drops-deploy',
      args: [{ instanceId: SOURCE }],
    });
    // An idle session between two polls of the lock (the worker's client sees the loss while idle).
    const [polling] = await terminateRounds(
      handle,
      monitor,
      'polling the migration lock',
      `state = 'idle' AND (query LIKE '%pg_try_advisory_lock%' OR query LIKE '%pg_locks%')`,
      1,
    );
    // Then a running statement: the index build waits behind the gate and is terminated there.
    const { gate, pid } = await lockGate(instance.endpoint, 'conversation_chunks', 'SHARE UPDATE EXCLUSIVE');
    await lockHolder.end();
    const pidBuilding = await waitForDbopsBackend(
      monitor,
      'building the index behind the gate',
      `${pid} = ANY(pg_blocking_pids(pid))`,
      { exclude: [polling!], stop: stopWhen(handle) },
    );
    await assertDroppedAttempt(handle, 2);
    assert.equal(await terminateBackend(monitor, pidBuilding), true);
    hits.terminated++;
    await assertDroppedAttempt(handle, 3);
    await gate.end();
    const result = await worker.result(handle);
    assert.equal(result.status, 'migrated');
    assert.deepEqual(result.applied, reverted);
    const { rows } = await monitor.query<{ valid: boolean }>(
      `SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = 'conversations_embedding_ivfflat_idx'::regclass`,
    );
    assert.deepEqual(rows, [{ valid: true }]);
  });

  it('backfill: batches terminated three times, then the table equals the single UPDATE', async () => {
    // The column the change's expand adds; its backfill (user-id-bigint) fills it.
    await monitor.query('ALTER TABLE conversations ADD COLUMN _new_user_id bigint');
    const { gate, pid } = await lockGate(instance.endpoint, 'conversations', 'SHARE');
    const handle = await env.client.workflow.start(backfill, {
      taskQueue: TASK_QUEUE,
      workflowId: 'drops-backfill',
      args: [
        {
          instanceId: SOURCE,
          name: 'user-id-bigint',
          batchSize: 50,
        },
      ],
    });
    await terminateRounds(
      handle,
      monitor,
      'running a batch behind the gate',
      `${pid} = ANY(pg_blocking_pids(pid)) AND query ILIKE '%"_new_user_id"%'`,
      3,
    );
    await assertDroppedAttempt(handle, 4);
    await gate.end();
    const result = await worker.result(handle);
    assert.equal(result.state, 'completed');
    const { rows } = await monitor.query<{ total: number; differing: number }>(
      `SELECT count(*)::int AS total, count(*) FILTER (WHERE _new_user_id IS DISTINCT FROM user_id::bigint)::int AS differing
         FROM conversations`,
    );
    assert.deepEqual(rows, [{ total: 300, differing: 0 }]);
    await monitor.query('ALTER TABLE conversations DROP COLUMN _new_user_id');
  });

  it("drTest: the copy's DR checks terminated, then the copy's server restarted at once (as after a crash); the DR test passes", async () => {
    const snapshot = await instance.plane.createSnapshot(SOURCE, 'drops-src-before-dr');
    while ((await instance.plane.describeSnapshot(snapshot.snapshotId)).status !== 'available')
      await sleep(100);
    const handle = await env.client.workflow.start(drTest, {
      taskQueue: TASK_QUEUE,
      workflowId: 'drops-dr',
      args: [
        {
          instanceId: SOURCE,
          timeouts: { pollInterval: '1 second' },
        },
      ],
    });

    // The copy's server accepts connections before the plane calls it available: gate it first.
    const layout = new StateLayout(instance.stateDir);
    let copy: InstanceRecord | undefined;
    const untilRunEnds = stopWhen(handle);
    const stillWaiting = async () => {
      const stopped = await untilRunEnds();
      if (stopped !== undefined) throw new Error(`no DR copy to gate: ${stopped}`);
      await sleep(20);
    };
    while (copy === undefined) {
      const found = (await instance.plane.listInstances()).find((i) =>
        i.instanceId.startsWith(`${SOURCE}-dr-test-`),
      );
      if (found !== undefined)
        copy = await readJson<InstanceRecord>(layout.record('instances', found.instanceId));
      else await stillWaiting();
    }
    const copyEndpoint = { ...instance.endpoint, port: copy.port };
    let gated: Awaited<ReturnType<typeof lockGate>> | undefined;
    while (gated === undefined) {
      gated = await lockGate(copyEndpoint, 'conversations', 'ACCESS EXCLUSIVE').catch(() => undefined);
      if (gated === undefined) await stillWaiting();
    }
    const onCopy = await testSession(copyEndpoint);
    // amcheck is the first DR check to read conversations.
    const checking = `${gated.pid} = ANY(pg_blocking_pids(pid)) AND query ILIKE '%verify_heapam(%'`;
    const [first] = await terminateRounds(
      handle,
      onCopy,
      'running the DR checks behind the gate',
      checking,
      1,
    );
    const second = await waitForDbopsBackend(onCopy, 'running the DR checks again', checking, {
      exclude: [first!],
      stop: stopWhen(handle),
    });
    await assertDroppedAttempt(handle, 2);
    await restartImmediately(layout.dataDir(copy.instanceId), logDir);
    const after = await testSession(copyEndpoint);
    const { rows } = await after.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [second]);
    assert.equal(rows.length, 0, 'the restart ended the DR checks session');
    hits.restarted++;
    await after.end();

    const report = await worker.result(handle);
    assert.equal(report.ok, true, JSON.stringify(report.checks));
    assert.equal(report.temporaryInstanceDeleted, true);
  });

  it('the worker is the same process, never exited, and printed no unhandled error event; every termination hit a dbops backend', () => {
    assert.equal(worker.gone(), undefined);
    assert.equal(worker.child.pid, workerPid);
    process.kill(workerPid, 0); // throws if no such process
    assert.doesNotMatch(worker.output, /Unhandled 'error' event/);
    // 2 health + 2 maintenance + 2 deploy + 3 backfill + 1 DR checks, and the DR copy's restart.
    assert.deepEqual(hits, { terminated: 10, restarted: 1 });
  });
});
