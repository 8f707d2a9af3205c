/**
 * Rehearsed deploys on a real local instance tagged Environment=production (dev server): the
 * planned migrations run first on a copy restored from the pre-migration snapshot, measured; the
 * approval request shows what they did; a migration that fails on production's data stops the
 * deploy before production is touched; a cancel during the rehearsal cancels the migration on the
 * copy. The copy is gone afterwards in every case.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';

import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { Client } from 'pg';

import { createActivities } from '../../activities';
import type { InstanceDescription } from '../../activities/control-plane/control-plane';
import { adminEndpoint } from '../../activities/control-plane/local-jobs';
import { HEARTBEAT_THROTTLE } from '../../activities/heartbeat';
import { DEFAULT_MIGRATE_SETTINGS, runMigrations } from '../../activities/postgres/migrations';
import { LOCK_MODES } from '../../activities/postgres/rehearsal';
import { setUpWorkerRole } from '../../activities/postgres/worker-role';
import { deployMigration } from '../../workflows';
import type { DeployFailure, DeployProgress, RehearsalReport } from '../../workflows/deploy-migration';
import { OWNER_TAGS, REHEARSAL_PURPOSE } from '../../workflows/lib/owner-tags';
import { migrationsDir, startLocalInstance, type LocalInstance } from '../helpers/local-instance';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';

const SCHEMA = '0004_conversation_chunks_ivfflat_index';
const ROWS = 5_000;
/** Updates 100 rows, rewrites the table, and holds its ACCESS EXCLUSIVE lock two seconds more. */
const LOCKING = `-- Up Migration
-- squawk-ignore prefer-bigint-over-int
ALTER TABLE conversations ADD COLUMN priority integer;
UPDATE conversations SET priority = 1 WHERE id <= 100;
-- squawk-ignore changing-column-type
ALTER TABLE conversations ALTER COLUMN priority TYPE bigint;
SELECT pg_sleep(2);
-- Down Migration
-- squawk-ignore ban-drop-column
ALTER TABLE conversations DROP COLUMN priority;
`;
const INDEX = `-- dbops:no-transaction
-- Up Migration
CREATE INDEX CONCURRENTLY IF NOT EXISTS conversations_created_at_idx ON conversations (created_at);
-- Down Migration
DROP INDEX CONCURRENTLY IF EXISTS conversations_created_at_idx;
`;
const ADD_MOOD = `-- Up Migration
ALTER TABLE conversations ADD COLUMN mood text;
-- Down Migration
-- squawk-ignore ban-drop-column
ALTER TABLE conversations DROP COLUMN mood;
`;
/** Fails on every existing row: their mood is NULL. */
const MOOD_REQUIRED = `-- Up Migration
-- squawk-ignore adding-not-nullable-field
ALTER TABLE conversations ALTER COLUMN mood SET NOT NULL;
-- Down Migration
-- squawk-ignore ban-drop-not-null
ALTER TABLE conversations ALTER COLUMN mood DROP NOT NULL;
`;
const SLOW_SQL = 'pg_sleep(600)';
const SLOW = `-- Up Migration\nSELECT ${SLOW_SQL};\n-- Down Migration\nSELECT 1;\n`;

describe('deployMigration rehearsal (dev server, local instance tagged production)', () => {
  let env: TestWorkflowEnvironment;
  let instance: LocalInstance;
  let sql: Client;
  let queue = 0;

  before(async () => {
    [env, instance] = await Promise.all([
      createDevServerEnv(),
      startLocalInstance('rehearsal-test', { Environment: 'production' }),
    ]);
    sql = await instance.connect();
  });
  // Each test starts from the schema and its rows, whatever ran before it.
  beforeEach(async () => {
    const admin = new Client(adminEndpoint(instance.endpoint.port, instance.endpoint.database));
    admin.on('error', () => undefined);
    await admin.connect();
    try {
      await admin.query('DROP SCHEMA public CASCADE; CREATE SCHEMA public');
      await setUpWorkerRole(admin);
    } finally {
      await admin.end();
    }
    const schema = await migrationsDir(SCHEMA);
    const names = (await readdir(schema))
      .filter((f) => f.endsWith('.sql'))
      .map((f) => path.basename(f, '.sql'));
    await runMigrations(sql, schema, 'up', names.sort(), DEFAULT_MIGRATE_SETTINGS);
    await sql.query(
      `INSERT INTO conversations (user_id, title) SELECT g % 100, 'seed ' || g FROM generate_series(1, $1) g`,
      [ROWS],
    );
  });
  after(async () => {
    await Promise.all([env?.teardown(), instance?.stop()]);
  });

  /** Runs `fn` with a worker whose migrations are the schema plus `files`. */
  async function withWorker<T>(
    files: Record<string, string>,
    fn: (start: (id: string) => Promise<WorkflowHandle<typeof deployMigration>>) => Promise<T>,
  ): Promise<T> {
    const taskQueue = `rehearsal-${++queue}`;
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities({ ...instance.deps, migrationsDir: await migrationsDir(SCHEMA, files) }),
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    });
    const start = (workflowId: string) =>
      env.client.workflow.start(deployMigration, {
        taskQueue,
        workflowId,
        args: [{ instanceId: instance.instanceId, lockTimeoutMs: 1000 }],
      });
    return worker.runUntil(fn(start));
  }

  /** The rehearsal copies that exist now (by their owner tags, whatever their name). */
  async function rehearsalCopies(): Promise<InstanceDescription[]> {
    return (await instance.plane.listInstances()).filter(
      (i) => i.tags[OWNER_TAGS.purpose] === REHEARSAL_PURPOSE,
    );
  }

  async function exists(instanceId: string): Promise<boolean> {
    return (await instance.plane.listInstances()).some((i) => i.instanceId === instanceId);
  }

  /** Of `names`, those production's migrations table lists; and whether conversations has `column`. */
  async function production(names: string[], column: string) {
    const { rows } = await sql.query<{ name: string }>(
      'SELECT name FROM pgmigrations WHERE name = ANY($1) ORDER BY id',
      [names],
    );
    const { rowCount } = await sql.query(
      `SELECT 1 FROM information_schema.columns WHERE table_name = 'conversations' AND column_name = $1`,
      [column],
    );
    return { applied: rows.map((row) => row.name), hasColumn: rowCount === 1 };
  }

  it('rehearses on a copy before asking: the approval request shows each migration’s duration, ACCESS EXCLUSIVE lock, rewrite, index build and WAL; the copy is gone, production untouched', async () => {
    const names = ['0100_priority', '0101_index_created_at'];
    const { waiting, details, ended } = await withWorker(
      { '0100_priority.sql': LOCKING, '0101_index_created_at.sql': INDEX },
      async (start) => {
        const handle = await start('deploy-rehearsed');
        const progress = await waitForStage(handle, 'awaiting-approval');
        // Asked, production untouched, the copy already gone.
        assert.deepEqual(await production(names, 'priority'), { applied: [], hasColumn: false });
        assert.deepEqual(await rehearsalCopies(), []);
        const metadata = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
        // The approver says no (approving is the deploy tests' business): nothing more happens.
        await handle.cancel();
        const outcome = await handle.result().then(
          () => 'completed',
          (error: Error) => (error.cause as Error | undefined)?.name,
        );
        return { waiting: progress, details: metadata.currentDetails ?? '', ended: outcome };
      },
    );
    const rehearsal = waiting.rehearsal!;
    assert.equal(rehearsal.ok, true, rehearsal.error ?? '');
    assert.equal(rehearsal.copyDeleted, true);
    assert.deepEqual(
      rehearsal.migrations.map((m) => [m.name, m.status]),
      names.map((name) => [name, 'applied']),
    );
    const [locking, index] = rehearsal.migrations as [
      RehearsalReport['migrations'][0],
      RehearsalReport['migrations'][0],
    ];
    assert.ok(locking.durationMs >= 2000, `took ${locking.durationMs} ms`);
    assert.equal(locking.locks[0]?.mode, 'AccessExclusiveLock');
    assert.equal(locking.locks[0]?.relation, 'conversations');
    assert.ok(locking.locks[0].heldMs >= 1500, `held ${locking.locks[0].heldMs} ms`);
    assert.deepEqual(
      locking.rewrites.map((r) => [r.table, r.rows]),
      [['conversations', ROWS]],
    );
    assert.deepEqual(locking.rowChanges, [{ table: 'conversations', inserted: 0, updated: 100, deleted: 0 }]);
    assert.ok(locking.walBytes > 0);
    assert.deepEqual(
      index.indexBuilds.map((b) => [b.index, b.table]),
      [['conversations_created_at_idx', 'conversations']],
    );
    // CREATE INDEX CONCURRENTLY lets writes through: SHARE UPDATE EXCLUSIVE at most (a build this
    // short may end between two samples).
    assert.deepEqual(
      index.locks.filter(
        (l) => LOCK_MODES.indexOf(l.mode as never) > LOCK_MODES.indexOf('ShareUpdateExclusiveLock'),
      ),
      [],
    );
    assert.deepEqual(index.rewrites, []);
    assert.match(details, /Rehearsal on rehearsal-test-rehearsal-[0-9a-f]{8} .*: passed; copy deleted/);
    assert.match(
      details,
      /0100_priority: applied in \d+\.\d s; strongest lock AccessExclusiveLock on conversations held/,
    );
    assert.match(details, new RegExp(`rewrote conversations \\(${ROWS} rows`));
    assert.equal(ended, 'CancelledFailure');
    assert.deepEqual(await production(names, 'priority'), { applied: [], hasColumn: false });
    assert.equal(await exists(rehearsal.copyInstanceId), false);
  });

  it('a migration that fails on production’s data (NOT NULL over NULLs) fails the rehearsal: the deploy stops naming it, production and its migrations table unchanged, the copy gone', async () => {
    const names = ['0102_add_mood', '0103_mood_required'];
    const failure = await withWorker(
      { '0102_add_mood.sql': ADD_MOOD, '0103_mood_required.sql': MOOD_REQUIRED },
      async (start) => deployFailure((await start('deploy-rehearsal-fails')).result()),
    );
    assert.equal(failure.details.stage, 'rehearsal');
    assert.match(
      failure.message,
      /^deploy to rehearsal-test stopped by its rehearsal: rehearsal of 0103_mood_required failed: .*column "mood" of relation "conversations" contains null values.*; production was not touched$/,
    );
    const rehearsal = failure.details.rehearsal!;
    assert.deepEqual(
      rehearsal.migrations.map((m) => [m.name, m.status]),
      [
        ['0102_add_mood', 'applied'],
        ['0103_mood_required', 'failed'],
      ],
    );
    assert.equal(rehearsal.failed?.name, '0103_mood_required');
    assert.equal(rehearsal.copyDeleted, true);
    assert.deepEqual(failure.details.applied, []);
    assert.deepEqual(await production(names, 'mood'), { applied: [], hasColumn: false });
    assert.deepEqual(await rehearsalCopies(), []);
  });

  it('cancelled during the rehearsal: the migration’s statement on the copy is cancelled, the copy deleted, production untouched', async () => {
    const names = ['0102_slow'];
    const failure = await withWorker({ '0102_slow.sql': SLOW }, async (start) => {
      const handle = await start('deploy-rehearsal-cancelled');
      const copy = await runningOnCopy(SLOW_SQL);
      await handle.cancel();
      const ended = await deployFailure(handle.result());
      return { ...ended, copy };
    });
    assert.equal(failure.details.stage, 'rehearsal');
    assert.match(failure.message, /cancelled during the rehearsal; production was not touched/);
    assert.equal(failure.details.rehearsal?.copyDeleted, true);
    assert.equal(await exists(failure.copy), false);
    assert.deepEqual(await rehearsalCopies(), []);
    assert.deepEqual(await production(names, 'slow'), { applied: [], hasColumn: false });
  });

  /** Waits until a rehearsal copy runs a statement containing `text` (observed on the copy); its id. */
  async function runningOnCopy(text: string): Promise<string> {
    for (let i = 0; i < 1200; i++) {
      const copy = (await rehearsalCopies()).find((c) => c.status === 'available' && c.endpoint);
      if (copy?.endpoint !== undefined) {
        const client = new Client({ ...copy.endpoint });
        client.on('error', () => undefined);
        try {
          await client.connect();
          const { rowCount } = await client.query(
            `SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()`,
            [text],
          );
          if (rowCount === 1) return copy.instanceId;
        } catch {
          // Still starting up: look again.
        } finally {
          await client.end().catch(() => undefined);
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.fail(`no rehearsal copy ran ${text}`);
  }
});

async function waitForStage(
  handle: WorkflowHandle<typeof deployMigration>,
  stage: DeployProgress['stage'],
): Promise<DeployProgress> {
  for (let i = 0; i < 1200; i++) {
    const progress = await handle.query<DeployProgress>('progress').catch(() => undefined);
    if (progress?.stage === stage) return progress;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`the deploy never reached stage ${stage}`);
}

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
