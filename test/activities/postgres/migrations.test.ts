import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import type { Client } from 'pg';

import { backendCanceller } from '../../../activities/heartbeat';
import {
  appliedBy,
  appliedMigrations,
  DEFAULT_MIGRATE_SETTINGS,
  lintMigrations,
  planMigrations,
  readMigrations,
  runMigrations,
  splitStatements,
  verifyMigrations,
} from '../../../activities/postgres/migrations';
import { projectRoot } from '../../../activities/config-types';
import { startThrowawayCluster, type ThrowawayCluster } from '../../helpers/postgres';

const repoMigrations = path.join(projectRoot, 'migrations');
const squawkConfig = path.join(projectRoot, '.squawk.toml');
const addNote = {
  '0100_add_note.sql': `-- Up Migration\nALTER TABLE conversations ADD COLUMN note text;\n-- Down Migration\nALTER TABLE conversations DROP COLUMN note;\n`,
};
const addTag = {
  '0101_add_tag.sql': `-- Up Migration\nALTER TABLE conversations ADD COLUMN tag text;\n-- Down Migration\nALTER TABLE conversations DROP COLUMN tag;\n`,
};
/** Runs until cancelled: long enough that only a cancel ends it within the test's timeout. */
const slow = {
  '0101_slow.sql': `-- Up Migration\nSELECT pg_sleep(600);\n-- Down Migration\nSELECT 1;\n`,
};
const fast = { ...DEFAULT_MIGRATE_SETTINGS, lockWaitMs: 60_000, lockRetryBaseMs: 50 };
const runA = { workflowId: 'deploy-a', runId: 'run-a' };
const runB = { workflowId: 'deploy-b', runId: 'run-b' };

/** Waits until a session runs a statement containing `text` (observed, not timed), returning its pid. */
async function runningStatement(observer: Client, text: string): Promise<number> {
  for (let i = 0; i < 600; i++) {
    const { rows } = await observer.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()`,
      [text],
    );
    if (rows[0] !== undefined) return rows[0].pid;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`no session ran ${text}`);
}

/** What a user checks after a stopped run: sessions still running `text`, and advisory locks held. */
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

/** The repository's schema migrations plus `extra` files, in a temp `migrations/` dir. */
async function migrationsWith(extra: Record<string, string>): Promise<string> {
  const dir = path.join(await mkdtemp(path.join(os.tmpdir(), 'dbops-migrations-')), 'migrations');
  await cp(repoMigrations, dir, { recursive: true });
  for (const [name, sql] of Object.entries(extra)) await writeFile(path.join(dir, name), sql);
  return dir;
}

describe('migrations (node-pg-migrate + squawk on a real Postgres)', () => {
  let cluster: ThrowawayCluster;
  before(async () => {
    cluster = await startThrowawayCluster();
  });
  after(async () => {
    await cluster?.stop();
  });

  it('the repository migrations pass squawk', async () => {
    assert.deepEqual(await lintMigrations(await readMigrations(repoMigrations), squawkConfig), []);
  });

  it('an unsafe migration is reported with its file, line and rule', async () => {
    const dir = await migrationsWith({
      '0100_unsafe.sql': `-- Up Migration\n\nALTER TABLE conversations ADD COLUMN score bigint NOT NULL;\n`,
    });
    const violations = await lintMigrations(await readMigrations(dir), squawkConfig);
    assert.deepEqual(
      violations.map(({ file, line, rule }) => ({ file, line, rule })),
      [{ file: 'migrations/0100_unsafe.sql', line: 3, rule: 'adding-required-field' }],
    );
    await rm(path.dirname(dir), { recursive: true });
  });

  it('splits non-transactional sections into statements, dropping comment-only parts', () => {
    assert.deepEqual(
      splitStatements(
        '-- why\nDROP INDEX CONCURRENTLY a;\n\nCREATE INDEX CONCURRENTLY a\n  ON t (x);\n-- end\n',
      ),
      ['-- why\nDROP INDEX CONCURRENTLY a', 'CREATE INDEX CONCURRENTLY a\n  ON t (x)'],
    );
  });

  it('a plain deploy applies the schema', async () => {
    const client = await cluster.connect();
    const files = await readMigrations(repoMigrations);
    const plan = planMigrations(files, await appliedMigrations(client), {});
    assert.deepEqual(plan.toApply, [
      '0001_conversations',
      '0002_conversation_chunks',
      '0003_conversation_chunks_hnsw_index',
      '0004_conversation_chunks_ivfflat_index',
    ]);
    assert.deepEqual(plan.heldBack, []);

    const applied = await runMigrations(client, repoMigrations, 'up', plan.toApply, fast);
    assert.deepEqual(applied, plan.toApply);
    const verify = await verifyMigrations(
      client,
      plan.toApply,
      files.filter((file) => plan.toApply.includes(file.name)),
    );
    assert.deepEqual(verify.invalidIndexes, []);
    assert.deepEqual(verify.analyzedTables, ['conversation_chunks', 'conversations']);

    const { rows } = await client.query<{ indexname: string; indexdef: string }>(
      `SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'conversation_chunks' ORDER BY 1`,
    );
    const defs = Object.fromEntries(rows.map((row) => [row.indexname, row.indexdef]));
    assert.match(
      defs.conversations_embedding_idx ?? '',
      /USING hnsw \(embedding vector_cosine_ops\) WITH \(m='16', ef_construction='64'\)/,
    );
    assert.match(
      defs.conversations_embedding_ivfflat_idx ?? '',
      /USING ivfflat \(embedding vector_cosine_ops\) WITH \(lists='100'\)/,
    );
  });

  it('a target already applied applies nothing and holds back what follows it', async () => {
    const files = await readMigrations(repoMigrations);
    const applied = files.map((file) => file.name).filter((name) => name <= '0002_conversation_chunks');
    const plan = planMigrations(files, applied, { target: '0002_conversation_chunks' });
    assert.deepEqual(plan.toApply, []);
    assert.equal(plan.heldBack.length, 2);
    const later = planMigrations(files, applied, { target: '0003_conversation_chunks_hnsw_index' });
    assert.deepEqual(later.toApply, ['0003_conversation_chunks_hnsw_index']);
    assert.deepEqual(later.heldBack, ['0004_conversation_chunks_ivfflat_index']);
    assert.deepEqual(later.whyHeldBack, [
      {
        name: '0004_conversation_chunks_ivfflat_index',
        reason: 'after the target 0003_conversation_chunks_hnsw_index',
      },
    ]);
  });

  it('reverts exactly the named migrations, refusing when later ones were applied', async () => {
    const client = await cluster.connect();
    await assert.rejects(
      runMigrations(client, repoMigrations, 'down', ['0003_conversation_chunks_hnsw_index'], fast),
      /cannot revert 0003_conversation_chunks_hnsw_index: the last applied migrations are 0004_conversation_chunks_ivfflat_index/,
    );
    const reverted = await runMigrations(
      client,
      repoMigrations,
      'down',
      ['0003_conversation_chunks_hnsw_index', '0004_conversation_chunks_ivfflat_index'],
      fast,
    );
    assert.deepEqual(reverted, [
      '0004_conversation_chunks_ivfflat_index',
      '0003_conversation_chunks_hnsw_index',
    ]);
    const { rows } = await client.query(
      `SELECT 1 FROM pg_indexes
        WHERE indexname IN ('conversations_embedding_ivfflat_idx', 'conversations_embedding_idx')`,
    );
    assert.equal(rows.length, 0);
    await runMigrations(
      client,
      repoMigrations,
      'up',
      ['0003_conversation_chunks_hnsw_index', '0004_conversation_chunks_ivfflat_index'],
      fast,
    );
  });

  it("a declared change's phase rows in the migrations table: deploys plan and apply around them, a revert behind one is refused", async () => {
    const dir = await migrationsWith(addNote);
    const client = await cluster.connect();
    const note = Object.keys(addNote)[0]!.replace(/\.sql$/, '');
    try {
      await client.query(
        `INSERT INTO pgmigrations (name, run_on) VALUES ('change:user-id-bigint:expand', now())`,
      );
      const applied = await appliedMigrations(client);
      assert.ok(!applied.includes('change:user-id-bigint:expand'), 'a phase is no migration file');
      const plan = planMigrations(await readMigrations(dir), applied, {});
      assert.deepEqual(plan.toApply, [note]);
      assert.deepEqual(await runMigrations(client, dir, 'up', plan.toApply, fast), [note]);
      await client.query(
        `INSERT INTO pgmigrations (name, run_on) VALUES ('change:user-id-bigint:tighten', now())`,
      );
      await assert.rejects(
        runMigrations(client, dir, 'down', [note], fast),
        new RegExp(
          `cannot revert ${note}: change:user-id-bigint:tighten, a phase of a declared change, was applied after it; finish or abort that change first`,
        ),
      );
      await client.query(`DELETE FROM pgmigrations WHERE name LIKE 'change:%'`);
      assert.deepEqual(await runMigrations(client, dir, 'down', [note], fast), [note]);
    } finally {
      await client.query(`DELETE FROM pgmigrations WHERE name LIKE 'change:%'`);
      await rm(path.dirname(dir), { recursive: true, force: true });
    }
  });

  it('fails at once, naming the holder, when another session holds the migration lock (whenLocked: fail)', async () => {
    const holder = await cluster.connect();
    const { PG_MIGRATE_LOCK_ID } = await import('node-pg-migrate');
    await holder.query(`SET application_name = 'other-deploy'`);
    await holder.query('SELECT pg_advisory_lock($1)', [PG_MIGRATE_LOCK_ID]);
    const dir = await migrationsWith(addNote);
    const client = await cluster.connect();
    await assert.rejects(
      runMigrations(client, dir, 'up', ['0100_add_note'], { ...fast, whenLocked: 'fail' }),
      /another deploy is migrating this database: the migration lock is held by session pid \d+ \(other-deploy/,
    );
    assert.equal((await appliedMigrations(client)).includes('0100_add_note'), false);

    // whenLocked: wait — it waits, reports why, and goes on once the holder releases the lock.
    const waits: string[] = [];
    const applied = await runMigrations(client, dir, 'up', ['0100_add_note'], fast, {
      progress: (what) => {
        waits.push(what);
        if (waits.length === 1) void holder.query('SELECT pg_advisory_unlock_all()');
      },
    });
    assert.deepEqual(applied, ['0100_add_note']);
    assert.match(waits[0] ?? '', /waiting for the migration lock held by session pid \d+ \(other-deploy/);
    await runMigrations(client, dir, 'down', ['0100_add_note'], fast);
  });

  it('retries a statement that hits lock_timeout, with backoff, until the lock is free', async () => {
    const blocker = await cluster.connect();
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE conversations IN ACCESS SHARE MODE');
    const dir = await migrationsWith(addNote);
    const client = await cluster.connect();
    const retries: string[] = [];
    const applied = await runMigrations(
      client,
      dir,
      'up',
      ['0100_add_note'],
      { ...fast, lockTimeoutMs: 100 },
      {
        progress: (what) => {
          if (!what.startsWith('lock_timeout')) return;
          retries.push(what);
          if (retries.length === 2) void blocker.query('COMMIT');
        },
      },
    );
    assert.deepEqual(applied, ['0100_add_note']);
    assert.match(retries[0] ?? '', /^lock_timeout on attempt 1; retrying in \d+ ms$/);
    assert.equal(retries.length, 2);
    await runMigrations(client, dir, 'down', ['0100_add_note'], fast);
  });

  it('gives up after the configured attempts and leaves the migration unapplied', async () => {
    const blocker = await cluster.connect();
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE conversations IN ACCESS SHARE MODE');
    const dir = await migrationsWith(addNote);
    const client = await cluster.connect();
    await assert.rejects(
      runMigrations(client, dir, 'up', ['0100_add_note'], {
        ...fast,
        lockTimeoutMs: 50,
        lockTimeoutAttempts: 3,
      }),
      /canceling statement due to lock timeout \(SQLSTATE 55P03\)/,
    );
    await blocker.query('COMMIT');
    assert.equal((await appliedMigrations(client)).includes('0100_add_note'), false);
  });

  it('a concurrent index build runs with maintenance_work_mem at shared_buffers and no parallel workers; the session has its own settings back after it', async () => {
    // The index expression reports, while the build evaluates it, the settings the build runs with.
    const dir = await migrationsWith({
      '0100_settings_index.sql': `-- dbops:no-transaction
-- Up Migration
CREATE FUNCTION build_settings(x bigint) RETURNS bigint IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'build: % %', current_setting('maintenance_work_mem'), current_setting('max_parallel_maintenance_workers'); RETURN x; END $$;
CREATE INDEX CONCURRENTLY conversations_settings_idx ON conversations (build_settings(id));
-- Down Migration
DROP INDEX CONCURRENTLY conversations_settings_idx;
DROP FUNCTION build_settings(bigint);
`,
    });
    const client = await cluster.connect();
    const notices: string[] = [];
    client.on('notice', (notice) => notices.push(notice.message ?? ''));
    const settings = async () =>
      (
        await client.query<{ memory: string; workers: string; buffers: string }>(
          `SELECT current_setting('maintenance_work_mem') AS memory,
                  current_setting('max_parallel_maintenance_workers') AS workers,
                  current_setting('shared_buffers') AS buffers`,
        )
      ).rows[0]!;
    try {
      await client.query(`INSERT INTO conversations (user_id, title) VALUES (1, 'a'), (2, 'b')`);
      const before = await settings();
      assert.notEqual(before.memory, before.buffers, 'the server default is not already shared_buffers');
      assert.deepEqual(await runMigrations(client, dir, 'up', ['0100_settings_index'], fast), [
        '0100_settings_index',
      ]);
      const builds = notices.filter((message) => message.startsWith('build: '));
      assert.ok(builds.length >= 2, `the build evaluated the expression (${notices.join('; ')})`);
      assert.deepEqual([...new Set(builds)], [`build: ${before.buffers} 0`]);
      assert.deepEqual(await settings(), before);
    } finally {
      if ((await appliedMigrations(client)).includes('0100_settings_index'))
        await runMigrations(client, dir, 'down', ['0100_settings_index'], fast);
      await client.query('DELETE FROM conversations');
      await rm(path.dirname(dir), { recursive: true, force: true });
    }
  });

  it('verification reports an index left INVALID by a failed concurrent build', async () => {
    const client = await cluster.connect();
    await client.query(`INSERT INTO conversations (user_id, title) VALUES (1, 'a'), (1, 'a')`);
    await assert.rejects(
      client.query(`CREATE UNIQUE INDEX CONCURRENTLY conversations_title_key ON conversations (title)`),
    );
    const expected = await appliedMigrations(client);
    const verify = await verifyMigrations(client, expected, []);
    assert.deepEqual(verify.invalidIndexes, ['conversations_title_key']);
    await client.query('DROP INDEX conversations_title_key');
    await assert.rejects(
      verifyMigrations(client, [...expected, '0100_missing'], []),
      /applied migrations are \[.*0004_conversation_chunks_ivfflat_index\], expected \[.*0004_conversation_chunks_ivfflat_index, 0100_missing\]/,
    );
  });

  it('records which run applied each migration: a retry applies only what is missing, and each run sees only its own', async () => {
    const dir = await migrationsWith({ ...addNote, ...addTag });
    const client = await cluster.connect();
    const both = ['0100_add_note', '0101_add_tag'];
    assert.deepEqual(await runMigrations(client, dir, 'up', ['0100_add_note'], fast, { owner: runA }), [
      '0100_add_note',
    ]);
    // Run A again for both (a retry after its worker died between the two): only the missing one.
    assert.deepEqual(await runMigrations(client, dir, 'up', both, fast, { owner: runA }), ['0101_add_tag']);
    const { rows } = await client.query<{ name: string; n: number }>(
      `SELECT name, count(*)::int AS n FROM pgmigrations WHERE name = ANY($1) GROUP BY name ORDER BY name`,
      [both],
    );
    assert.deepEqual(rows, [
      { name: '0100_add_note', n: 1 },
      { name: '0101_add_tag', n: 1 },
    ]);
    assert.deepEqual(await appliedBy(client, both, runA), both);
    assert.deepEqual(await appliedBy(client, both, runB), [], 'run B applied none of them');
    assert.deepEqual(await appliedBy(client, both, { ...runA, runId: 'run-a-2' }), [], 'another run of A');

    // Reverted: no longer anyone's. Applied again by B: B's.
    await runMigrations(client, dir, 'down', both, fast, { owner: runA });
    assert.deepEqual(await appliedBy(client, both, runA), []);
    await runMigrations(client, dir, 'up', ['0100_add_note'], fast, { owner: runB });
    assert.deepEqual(await appliedBy(client, both, runB), ['0100_add_note']);
    // Applied without an owner (e.g. the demo seed): nobody's.
    await runMigrations(client, dir, 'down', ['0100_add_note'], fast, { owner: runB });
    await runMigrations(client, dir, 'up', ['0100_add_note'], fast);
    assert.deepEqual(await appliedBy(client, both, runB), []);
    await runMigrations(client, dir, 'down', ['0100_add_note'], fast);
  });

  it('cancelled while a migration runs: its statement is cancelled, the lock released, and the table says what was applied', async () => {
    const dir = await migrationsWith({ ...addNote, ...slow });
    const client = await cluster.connect();
    const observer = await cluster.connect();
    const abort = new AbortController();
    const steps: string[] = [];
    const run = runMigrations(client, dir, 'up', ['0100_add_note', '0101_slow'], fast, {
      owner: runA,
      progress: (what) => steps.push(what),
      signal: abort.signal,
      cancelRunning: await backendCanceller(client, (fn) => fn(observer)),
    });
    await runningStatement(observer, 'pg_sleep(600)');
    abort.abort(new Error('the deploy was cancelled'));
    await assert.rejects(run, /the deploy was cancelled/);
    assert.deepEqual(await leftovers(observer, 'pg_sleep(600)'), { running: 0, advisoryLocks: 0 });
    assert.deepEqual(steps, ['applying 0100_add_note', 'applying 0101_slow']);
    const applied = await appliedMigrations(client);
    assert.equal(applied.at(-1), '0100_add_note', 'the cancelled migration is not recorded');
    assert.deepEqual(await appliedBy(client, ['0100_add_note', '0101_slow'], runA), ['0100_add_note']);
    // The session is usable again (no transaction left open).
    assert.deepEqual(await runMigrations(client, dir, 'down', ['0100_add_note'], fast), ['0100_add_note']);
  });

  it('cancelled while waiting for the migration lock: stops waiting at once and applies nothing', async () => {
    const holder = await cluster.connect();
    const { PG_MIGRATE_LOCK_ID } = await import('node-pg-migrate');
    await holder.query('SELECT pg_advisory_lock($1)', [PG_MIGRATE_LOCK_ID]);
    const dir = await migrationsWith(addNote);
    const client = await cluster.connect();
    const abort = new AbortController();
    const run = runMigrations(client, dir, 'up', ['0100_add_note'], fast, {
      signal: abort.signal,
      progress: (what) => {
        if (what.startsWith('waiting for the migration lock'))
          abort.abort(new Error('cancelled while waiting'));
      },
    });
    await assert.rejects(run, /cancelled while waiting/);
    assert.equal((await appliedMigrations(client)).includes('0100_add_note'), false);
    await holder.query('SELECT pg_advisory_unlock_all()');
  });

  it('a session whose client vanished (a killed worker) stops its SQL and frees the migration lock', async () => {
    const dir = await migrationsWith(slow);
    const client = await cluster.connect();
    const observer = await cluster.connect();
    const run = runMigrations(client, dir, 'up', ['0101_slow'], fast, { owner: runA });
    const pid = await runningStatement(observer, 'pg_sleep(600)');
    // What SIGKILL does to the worker's connection: the socket closes with no goodbye.
    client.connection.stream.destroy();
    await assert.rejects(run);
    for (let i = 0; i < 300; i++) {
      const { rowCount } = await observer.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
      if (rowCount === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.deepEqual(await leftovers(observer, 'pg_sleep(600)'), { running: 0, advisoryLocks: 0 });
    assert.equal((await appliedMigrations(observer)).includes('0101_slow'), false);
  });
});
