/**
 * expandContract running the declared change user-id-bigint on a real local instance with a
 * Temporal dev server:
 * - the proof: two writer loops run through the whole change, old code writing `user_id` as it
 *   always did, new code writing it through the change's schema (the new column); neither sees an
 *   error, and at the end every row holds the latest value either wrote, in the bigint column;
 * - abort in every phase before the contract puts the table back: schema and data checksums equal;
 * - each applied phase is a row of the migrations table, gone again after an abort;
 * - `dbops plan` prints the SQL before anything runs, `dbops change abort` aborts, also a run that
 *   was terminated mid-change.
 */
import assert from 'node:assert/strict';

import { CancelledFailure, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { Client } from 'pg';

import { createActivities } from '../../activities';
import { CHECKPOINT_TABLE, ensureCheckpointTable } from '../../activities/postgres/backfill';
import {
  DEFAULT_MIGRATE_SETTINGS,
  readMigrations,
  runMigrations,
} from '../../activities/postgres/migrations';
import { MIGRATIONS_DIR } from '../../workers/seed';
import { expandContract } from '../../workflows';
import type {
  ExpandContractInput,
  ExpandContractProgress,
  ExpandContractStage,
} from '../../workflows/expand-contract';
import { runDbops, type CliRun } from '../helpers/cli';
import { startLocalInstance, type LocalInstance } from '../helpers/local-instance';
import { tableChecksums, type TableChecksums } from '../helpers/table-checksums';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';

const ROWS = 20_000;
const INSTANCE = 'change-test';
const VERSION_SCHEMA = 'change_user_id_bigint';

type Handle = WorkflowHandle<typeof expandContract>;

async function progressOf(handle: Handle): Promise<ExpandContractProgress | undefined> {
  return handle.query<ExpandContractProgress>('progress').catch(() => undefined);
}

async function untilStage(handle: Handle, stage: ExpandContractStage): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    if ((await progressOf(handle))?.stage === stage) return;
    const { status } = await handle.describe();
    if (status.name !== 'RUNNING') assert.fail(`expandContract ended ${status.name} before ${stage}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`expandContract never reached ${stage}`);
}

/**
 * A writer loop: inserts rows and updates its own rows with fresh values, one statement at a time,
 * remembering the latest value it gave each row and every error it met, and in which stage.
 */
class Writer {
  readonly latest = new Map<string, number>();
  readonly errors: string[] = [];
  readonly writesIn = new Map<string, number>();
  private stopped = false;
  private loop: Promise<void> | undefined;
  private value: number;

  constructor(
    private readonly client: Client,
    /** Rows it owns to begin with (ids), with their values. */
    owned: Map<string, number>,
    valueBase: number,
    private readonly stage: () => string,
  ) {
    for (const [id, value] of owned) this.latest.set(id, value);
    this.value = valueBase;
  }

  start(): void {
    this.loop = (async () => {
      const ids = [...this.latest.keys()];
      for (let n = 0; !this.stopped; n++) {
        const value = ++this.value;
        const stage = this.stage();
        try {
          if (n % 3 === 0) {
            const { rows } = await this.client.query<{ id: string }>(
              `INSERT INTO conversations (user_id, title) VALUES ($1, 'w') RETURNING id::text`,
              [value],
            );
            this.latest.set(rows[0]!.id, value);
            ids.push(rows[0]!.id);
          } else {
            const id = ids[(n * 7919) % ids.length]!;
            await this.client.query(`UPDATE conversations SET user_id = $1 WHERE id = $2`, [value, id]);
            this.latest.set(id, value);
          }
          this.writesIn.set(stage, (this.writesIn.get(stage) ?? 0) + 1);
        } catch (error) {
          this.errors.push(`${stage}: ${(error as Error).message}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 3));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

describe('expandContract workflow: the declared change user-id-bigint (dev server, local instance)', function () {
  this.timeout(600_000);
  let env: TestWorkflowEnvironment;
  let instance: LocalInstance;
  let client: Client;
  let worker: Worker;
  let running: Promise<void>;
  const taskQueue = 'expand-contract';

  /** conversations as before any change: integer user_id, ROWS rows with user_id = id % 1000. */
  async function resetTable(): Promise<TableChecksums> {
    await client.query(`DROP SCHEMA IF EXISTS ${VERSION_SCHEMA} CASCADE`);
    await client.query(`DROP TABLE IF EXISTS conversation_chunks, conversations CASCADE`);
    await client.query(`DROP FUNCTION IF EXISTS dbops_sync_user_id_bigint()`);
    await client.query(`DROP TABLE IF EXISTS pgmigrations, dbops_migration_owners`);
    // The application's schema as a deploy leaves it, before any user_id change.
    const names = (await readMigrations(MIGRATIONS_DIR)).map((m) => m.name).filter((n) => n <= '0004_z');
    await runMigrations(client, MIGRATIONS_DIR, 'up', names, DEFAULT_MIGRATE_SETTINGS);
    await client.query(
      `INSERT INTO conversations (user_id, title) SELECT g % 1000, 'c' || g FROM generate_series(1, $1) g`,
      [ROWS],
    );
    await client.query('ANALYZE conversations');
    await ensureCheckpointTable(client);
    return tableChecksums(client, 'conversations');
  }

  /**
   * Holds the lock that makes a backfill batch wait: the batch records its checkpoint in the same
   * statement, so it cannot start while the checkpoint table is locked in SHARE mode. Expand,
   * tighten and the writers do not touch that table. The returned function releases it.
   */
  async function holdBackfill(): Promise<() => Promise<void>> {
    const holder = await instance.connect();
    await holder.query('BEGIN');
    await holder.query(`LOCK TABLE ${CHECKPOINT_TABLE} IN SHARE MODE`);
    return async () => {
      await holder.query('COMMIT');
    };
  }

  /** The rows of the change's phases in the migrations table, with the workflow that applied each. */
  async function phaseRows(): Promise<{ name: string; workflow_id: string }[]> {
    const { rows } = await client.query<{ name: string; workflow_id: string }>(
      `SELECT m.name, o.workflow_id FROM pgmigrations m LEFT JOIN dbops_migration_owners o USING (name)
        WHERE m.name LIKE 'change:%' ORDER BY m.id`,
    );
    return rows;
  }

  function dbops(...args: string[]): Promise<CliRun> {
    return runDbops({ address: env.address, taskQueue: taskQueue, stateDir: instance.stateDir }, args);
  }

  before(async () => {
    [env, instance] = await Promise.all([createDevServerEnv(), startLocalInstance(INSTANCE)]);
    client = await instance.connect();
    worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities(instance.deps),
    });
    running = worker.run();
  });
  after(async () => {
    worker?.shutdown();
    await running?.catch(() => undefined);
    await Promise.all([env?.teardown(), instance?.stop()]);
  });

  it('dbops plan prints every phase of the change and squawk finds nothing; nothing changes', async () => {
    const before = await resetTable();
    const run = await dbops('plan', 'user-id-bigint', '--instance', INSTANCE);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^ALTER TABLE "public"."conversations" ADD COLUMN "_new_user_id" bigint;$/m);
    assert.match(run.stdout, /^CREATE TRIGGER "dbops_sync_user_id_bigint" BEFORE INSERT OR UPDATE/m);
    assert.match(run.stdout, /IS DISTINCT FROM t."user_id"::bigint/);
    assert.match(
      run.stdout,
      /ADD CONSTRAINT "_new_user_id_not_null" CHECK \("_new_user_id" IS NOT NULL\) NOT VALID;/,
    );
    assert.match(
      run.stdout,
      /^ALTER TABLE "public"."conversations" RENAME COLUMN "_new_user_id" TO "user_id";$/m,
    );
    assert.match(run.stdout, /^-- new code: SET search_path TO change_user_id_bigint, public$/m);
    assert.match(run.stdout, /^lint: clean$/m);
    assert.deepEqual(await tableChecksums(client, 'conversations'), before);

    const unknown = await dbops('plan', 'no-such-change', '--instance', INSTANCE);
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.match(unknown.stderr, /change: no change named "no-such-change"; known: user-id-bigint/);
    const hostile = await dbops('change', 'start', 'x;DROP TABLE conversations', '--instance', INSTANCE);
    assert.equal(hostile.code, 2, hostile.stderr);
    assert.match(
      hostile.stderr,
      /change: "x;DROP TABLE conversations" is not a change name like user-id-bigint/,
    );
    assert.deepEqual(await tableChecksums(client, 'conversations'), before);
  });

  it('proof: old-code and new-code writers through the whole change, no error, every row holds its latest value', async () => {
    await resetTable();
    const { rows: initial } = await client.query<{ id: string; user_id: number }>(
      `SELECT id::text, user_id FROM conversations ORDER BY id`,
    );
    const odd = new Map(initial.filter((_, i) => i % 2 === 0).map((r) => [r.id, r.user_id]));
    const even = new Map(initial.filter((_, i) => i % 2 === 1).map((r) => [r.id, r.user_id]));
    let stage = 'before';
    const oldClient = await instance.connect();
    const newClient = await instance.connect();
    await newClient.query(`SET search_path TO ${VERSION_SCHEMA}, public`);
    const oldCode = new Writer(oldClient, odd, 1_000_000, () => stage);
    const newCode = new Writer(newClient, even, 2_000_000, () => stage);
    oldCode.start();

    // The backfill waits until both writers have written while it is in its phase.
    const releaseBackfill = await holdBackfill();
    const handle = await env.client.workflow.start(expandContract, {
      taskQueue,
      workflowId: 'change-proof',
      args: [{ instanceId: INSTANCE, change: 'user-id-bigint', batchSize: 200, reminderEvery: '1 second' }],
    });
    const watcher = (async () => {
      for (;;) {
        const now = await progressOf(handle);
        if (now !== undefined) stage = now.stage;
        // New code can run once expand has made its schema.
        if (now?.applied.includes('expand') && newCode.writesIn.size === 0 && newCode.errors.length === 0)
          newCode.start();
        if (stage === 'done') return;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    await untilStage(handle, 'backfill');
    const during = (w: Writer) => w.writesIn.get('backfill') ?? 0;
    while (during(oldCode) < 30 || during(newCode) < 30)
      await new Promise((resolve) => setTimeout(resolve, 50));
    await releaseBackfill();
    await untilStage(handle, 'awaiting-code-deploy');
    // Both writers keep going while the operator deploys the new code.
    const awaiting = (w: Writer) => w.writesIn.get('awaiting-code-deploy') ?? 0;
    while (awaiting(oldCode) < 30 || awaiting(newCode) < 30)
      await new Promise((resolve) => setTimeout(resolve, 50));
    const { rows: mid } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM conversations WHERE _new_user_id IS DISTINCT FROM user_id::bigint`,
    );
    assert.equal(mid[0]!.n, 0, 'before contract, every new value is the conversion of the old one');
    const deployed = await dbops('change', 'code-deployed', 'change-proof', '--by', 'ci-run-7');
    assert.equal(deployed.code, 0, deployed.stderr);
    const result = await handle.result();
    await watcher;
    // A few more writes of both against the contracted table.
    const after = (w: Writer) => w.writesIn.get('done') ?? 0;
    while (after(oldCode) < 30 || after(newCode) < 30)
      await new Promise((resolve) => setTimeout(resolve, 50));
    await Promise.all([oldCode.stop(), newCode.stop()]);

    assert.equal(result.outcome, 'completed');
    assert.deepEqual(
      result.phases.map((p) => p.phase),
      ['expand', 'tighten', 'contract'],
    );
    assert.equal(result.backfill?.state, 'completed');
    assert.match(result.snapshotId ?? '', /-pre-migration-\d{8}-\d{6}$/);
    assert.deepEqual(oldCode.errors, [], 'old code met no error');
    assert.deepEqual(newCode.errors, [], 'new code met no error');
    for (const writer of [oldCode, newCode]) {
      for (const busy of ['backfill', 'awaiting-code-deploy', 'done'])
        assert.ok(
          (writer.writesIn.get(busy) ?? 0) > 0,
          `a writer wrote during ${busy}: ${JSON.stringify([...writer.writesIn])}`,
        );
    }
    const { rows: shape } = await client.query<{ type: string; notnull: boolean }>(
      `SELECT format_type(atttypid, atttypmod) AS type, attnotnull AS notnull FROM pg_attribute
        WHERE attrelid = 'conversations'::regclass AND attname = 'user_id'`,
    );
    assert.deepEqual(shape, [{ type: 'bigint', notnull: true }]);
    const { rows } = await client.query<{ id: string; user_id: string }>(
      `SELECT id::text, user_id::text FROM conversations`,
    );
    const expected = new Map([...oldCode.latest, ...newCode.latest]);
    assert.equal(rows.length, expected.size);
    const wrong = rows.filter((row) => String(expected.get(row.id)) !== row.user_id);
    assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} rows do not hold their latest value`);

    // Each phase is a row of the migrations table, as a deploy's migrations are.
    assert.deepEqual(
      await phaseRows(),
      ['expand', 'tighten', 'contract'].map((phase) => ({
        name: `change:user-id-bigint:${phase}`,
        workflow_id: 'change-proof',
      })),
    );
    const late = await dbops('change', 'abort', 'change-proof', '--by', 'tester');
    assert.equal(late.code, 1);
    assert.match(late.stderr, /change-proof is at done: too late to abort/);
  });

  /**
   * Holds ACCESS SHARE on conversations: reads and the backfill's updates go on, but a phase's
   * ALTER TABLE waits (and retries its lock_timeout) until the returned function releases it.
   */
  async function holdTable(): Promise<() => Promise<void>> {
    const holder = await instance.connect();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE conversations IN ACCESS SHARE MODE');
    return async () => {
      await holder.query('COMMIT');
    };
  }

  for (const stage of ['plan', 'expand', 'backfill', 'tighten', 'awaiting-code-deploy'] as const) {
    it(`abort during ${stage}: the table is back as it was (schema and data checksums equal)`, async () => {
      const before = await resetTable();
      const workflowId = `change-abort-${stage}`;
      const args: [ExpandContractInput] = [
        { instanceId: INSTANCE, change: 'user-id-bigint', batchSize: 100 },
      ];
      let handle: Handle;
      if (stage === 'plan') {
        // Sent with the start: the first thing the run hears.
        handle = await env.client.workflow.signalWithStart(expandContract, {
          taskQueue,
          workflowId,
          args,
          signal: 'abort',
          signalArgs: [{ by: 'tester' }],
        });
      } else if (stage === 'awaiting-code-deploy') {
        const start = await dbops('change', 'start', 'user-id-bigint', '--instance', INSTANCE, '--detach');
        assert.equal(start.code, 0, start.stderr);
        assert.equal(start.stdout.trim(), `change-user-id-bigint-${INSTANCE}`);
        handle = env.client.workflow.getHandle<typeof expandContract>(start.stdout.trim());
        await untilStage(handle, stage);
        const status = await dbops('status', start.stdout.trim(), '--json');
        assert.match(status.stdout, /"stage": "awaiting-code-deploy"/);
        assert.deepEqual(
          (await phaseRows()).map((row) => row.name),
          ['change:user-id-bigint:expand', 'change:user-id-bigint:tighten'],
        );
        const run = await dbops('change', 'abort', start.stdout.trim(), '--by', 'tester');
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stdout, /aborted during awaiting-code-deploy by tester; the table is as it was/);
        const late = await dbops('change', 'abort', start.stdout.trim());
        assert.equal(late.code, 1);
        assert.match(late.stderr, /is COMPLETED; nothing to abort/);
      } else {
        // Expand waits for the table lock; the backfill for the checkpoint table's; tighten, once the
        // backfill may go on, for the table lock again.
        let release = stage === 'expand' ? await holdTable() : await holdBackfill();
        handle = await env.client.workflow.start(expandContract, { taskQueue, workflowId, args });
        if (stage === 'tighten') {
          await untilStage(handle, 'backfill');
          const releaseBackfill = release;
          release = await holdTable();
          await releaseBackfill();
        }
        await untilStage(handle, stage);
        await handle.signal('abort', { by: 'tester' });
        await release?.();
      }
      const result = await handle.result();
      assert.equal(result.outcome, 'aborted');
      assert.equal(result.abortedIn, stage);
      assert.equal(result.abortedBy, 'tester');
      assert.deepEqual(await tableChecksums(client, 'conversations'), before);
      const { rows } = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = $1`,
        [VERSION_SCHEMA],
      );
      assert.equal(rows[0]!.n, 0, 'the new version schema is gone');
      assert.deepEqual(await phaseRows(), [], 'no phase of the change is left in the migrations table');
    });
  }
  it('a run terminated mid-change is aborted from the CLI: an abort-only run undoes it, checksums equal', async () => {
    const before = await resetTable();
    const workflowId = 'change-terminated';
    const releaseBackfill = await holdBackfill();
    const handle = await env.client.workflow.start(expandContract, {
      taskQueue,
      workflowId,
      args: [{ instanceId: INSTANCE, change: 'user-id-bigint', batchSize: 100 }],
    });
    await untilStage(handle, 'backfill');
    await handle.terminate('operator gave up');
    await releaseBackfill();
    assert.deepEqual(
      (await phaseRows()).map((row) => row.name),
      ['change:user-id-bigint:expand'],
    );

    const run = await dbops('change', 'abort', workflowId, '--by', 'tester');
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /change-terminated is TERMINATED at backfill: starting an abort-only run of it/);
    assert.match(
      run.stdout,
      /user-id-bigint on change-test: aborted after its run had closed \(undone: expand\) by tester; the table is as it was/,
    );
    assert.deepEqual(await tableChecksums(client, 'conversations'), before);
    assert.deepEqual(await phaseRows(), []);
    const again = await dbops('change', 'abort', workflowId);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /change-terminated is COMPLETED; nothing to abort \(it was aborted\)/);
  });
  it('the input of the migration-file version is refused, naming the declaration to use; nothing changes', async () => {
    const before = await tableChecksums(client, 'conversations');
    const handle = await env.client.workflow.start(expandContract, {
      taskQueue,
      workflowId: 'change-old-input',
      args: [
        {
          instanceId: INSTANCE,
          expandMigration: '0004_conversation_chunks_ivfflat_index',
        } as ExpandContractInput,
      ],
    });
    await assert.rejects(handle.result(), (error: Error) => {
      assert.ok(error instanceof WorkflowFailedError);
      assert.match(
        error.cause?.message ?? '',
        /^expandMigration: expandContract no longer runs migration files and a separate backfill; the change is declared .* the declaration user-id-bigint: start \{"instanceId": "...", "change": "user-id-bigint"\}/,
      );
      return true;
    });
    assert.deepEqual(await tableChecksums(client, 'conversations'), before);
  });
  it('cancelling the run before its contract undoes the change as an abort does', async () => {
    const before = await resetTable();
    const handle = await env.client.workflow.start(expandContract, {
      taskQueue,
      workflowId: 'change-cancelled',
      // No change named: the runbook's, user-id-bigint.
      args: [{ instanceId: INSTANCE }],
    });
    await untilStage(handle, 'awaiting-code-deploy');
    await handle.cancel();
    await assert.rejects(handle.result(), (error: Error) => {
      assert.ok(error instanceof WorkflowFailedError);
      assert.ok(error.cause instanceof CancelledFailure, String(error.cause));
      return true;
    });
    assert.deepEqual(await tableChecksums(client, 'conversations'), before);
  });
  it('a run that fails before its contract waits for the abort, the table valid for both versions meanwhile', async () => {
    const before = await resetTable();
    const handle = await env.client.workflow.start(expandContract, {
      taskQueue,
      workflowId: 'change-timed-out',
      args: [
        {
          instanceId: INSTANCE,
          change: 'user-id-bigint',
          codeDeployedTimeout: '2 seconds',
          reminderEvery: '1 second',
        },
      ],
    });
    await untilStage(handle, 'failed');
    const progress = await progressOf(handle);
    assert.equal(
      progress?.error,
      'awaiting-code-deploy: no codeDeployed signal within 2 seconds: the contract did not run',
    );
    // Both versions still write.
    await client.query(`INSERT INTO conversations (user_id, title) VALUES (5, 'old code')`);
    const newCode = await instance.connect();
    await newCode.query(`SET search_path TO ${VERSION_SCHEMA}, public`);
    await newCode.query(`INSERT INTO conversations (user_id, title) VALUES (6, 'new code')`);
    await client.query(`DELETE FROM conversations WHERE title IN ('old code', 'new code')`);

    const run = await dbops('change', 'abort', 'change-timed-out', '--by', 'tester');
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stdout,
      /aborted after it failed \(awaiting-code-deploy: no codeDeployed signal within 2 seconds: the contract did not run\) by tester; the table is as it was/,
    );
    const result = await handle.result();
    assert.equal(result.outcome, 'aborted');
    assert.deepEqual(await tableChecksums(client, 'conversations'), before);
  });
});
