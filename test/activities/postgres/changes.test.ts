/**
 * Declared changes on a real cluster, phase by phase without Temporal: every operation's SQL lints
 * clean, old-code and new-code writes stay consistent through every phase, contract leaves the
 * new shape, and abort after any phase leaves the table exactly as before (schema and data).
 */
import assert from 'node:assert/strict';
import path from 'node:path';

import type { Client } from 'pg';

import { projectRoot } from '../../../activities/config-types';
import { CHANGES } from '../../../activities/postgres/changes';
import { defineChange, type Change } from '../../../activities/postgres/changes/definition';
import { addCheck } from '../../../activities/postgres/changes/operations/add-check';
import { addColumn } from '../../../activities/postgres/changes/operations/add-column';
import { addForeignKey } from '../../../activities/postgres/changes/operations/add-foreign-key';
import { addIndex } from '../../../activities/postgres/changes/operations/add-index';
import { alterColumnType } from '../../../activities/postgres/changes/operations/alter-column-type';
import { dropColumn } from '../../../activities/postgres/changes/operations/drop-column';
import { renameColumn } from '../../../activities/postgres/changes/operations/rename-column';
import { formatPlan, type Phase } from '../../../activities/postgres/changes/plan';
import { DEFAULT_LOCK_SETTINGS, lintPlan, planFor, runPhase } from '../../../activities/postgres/changes/run';
import { ensureMigrationTables } from '../../../activities/postgres/migrations';
import { startThrowawayCluster, type ThrowawayCluster } from '../../helpers/postgres';
import { tableChecksums } from '../../helpers/table-checksums';

const squawkConfig = path.join(projectRoot, '.squawk.toml');

/** Every operation at once on `items`. */
const everything: Change = defineChange({
  name: 'items-everything',
  description: 'every operation on items',
  table: 'items',
  key: 'id',
  operations: [
    alterColumnType({ column: 'user_id', type: 'bigint', down: (col) => `${col('user_id')}::integer` }),
    renameColumn({ from: 'name', to: 'title', type: 'text' }),
    addColumn({ name: 'title_length', type: 'bigint', up: (col) => `length(${col('name')})` }),
    addColumn({ name: 'archived', type: 'boolean', default: 'false' }),
    addCheck({ name: 'items_score_positive', check: (col) => `${col('score')} >= 0` }),
    addForeignKey({
      name: 'items_owner_fk',
      columns: ['owner_id'],
      references: 'owners',
      referencedColumns: ['id'],
    }),
    dropColumn({ name: 'legacy', down: () => `'-'` }),
    addIndex({
      name: 'items_embedding_hnsw',
      columns: ['embedding'],
      method: 'hnsw',
      opclass: 'vector_l2_ops',
      with: { m: 8 },
    }),
    addIndex({ name: 'items_new_user_id_idx', columns: ['user_id'] }),
  ],
});

const owner = { workflowId: 'change-test', runId: 'run-1' };
const control = {
  settings: { ...DEFAULT_LOCK_SETTINGS, retryBaseMs: 20 },
  signal: new AbortController().signal,
  progress: () => undefined,
};

async function resetTables(client: Client): Promise<void> {
  await client.query(`DROP SCHEMA IF EXISTS change_items_everything CASCADE;
    DROP TABLE IF EXISTS items; DROP TABLE IF EXISTS owners; DROP TABLE IF EXISTS pgmigrations, dbops_migration_owners;
    CREATE EXTENSION IF NOT EXISTS vector;
    CREATE TABLE owners (id integer PRIMARY KEY);
    INSERT INTO owners SELECT g FROM generate_series(1, 10) g;
    CREATE TABLE items (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      user_id integer NOT NULL,
      name text NOT NULL DEFAULT '',
      score integer NOT NULL DEFAULT 0,
      owner_id integer,
      legacy text NOT NULL,
      embedding vector(3));
    INSERT INTO items (user_id, name, score, owner_id, legacy, embedding)
      SELECT g, 'n' || g, g % 5, 1 + g % 10, 'l', ARRAY[g, 1, 0]::vector FROM generate_series(1, 300) g;`);
}

async function phase(client: Client, change: Change, name: Phase): Promise<void> {
  const plan = await planFor(client, change, owner.workflowId, name);
  await runPhase(client, plan, name, owner, control);
}

/** The change's rows in the migrations table, with the workflow recorded as applying each. */
async function phaseRows(client: Client): Promise<string[]> {
  await ensureMigrationTables(client);
  const { rows } = await client.query<{ row: string }>(
    `SELECT m.name || ' by ' || o.workflow_id AS row
       FROM pgmigrations m JOIN dbops_migration_owners o USING (name) WHERE m.name LIKE 'change:%' ORDER BY m.id`,
  );
  return rows.map((r) => r.row);
}

/** The backfill's statement over the whole table (the workflow runs it in batches). */
async function backfill(client: Client, change: Change): Promise<number> {
  const plan = await planFor(client, change, owner.workflowId);
  const sql = plan.backfill!;
  const { rowCount } = await client.query(`UPDATE ${plan.table} AS t SET ${sql.set} WHERE ${sql.pending}`);
  return rowCount ?? 0;
}

describe('declared changes (throwaway cluster)', () => {
  let cluster: ThrowawayCluster;
  let client: Client;
  let newCode: Client;

  before(async () => {
    cluster = await startThrowawayCluster();
    client = await cluster.connect();
    newCode = await cluster.connect();
  });
  after(async () => cluster?.stop());

  it('the SQL of every phase of every declared change, and of every operation, lints clean with squawk', async () => {
    await resetTables(client);
    await client.query(
      `CREATE TABLE IF NOT EXISTS conversations (id bigint PRIMARY KEY, user_id integer NOT NULL, title text)`,
    );
    for (const change of [...Object.values(CHANGES), everything]) {
      const plan = await planFor(client, change, owner.workflowId);
      assert.deepEqual(await lintPlan(plan, squawkConfig), [], formatPlan(plan));
    }
  });

  it('expand, backfill, tighten, contract: old and new code write through every phase and agree', async () => {
    await resetTables(client);
    await newCode.query('SET search_path TO change_items_everything, public');
    const oldWrite = async (i: number) => {
      await client.query(
        `INSERT INTO items (user_id, name, score, owner_id, legacy) VALUES ($1, $2, 1, 2, 'o')`,
        [1000 + i, `old${i}`],
      );
      await client.query(`UPDATE items SET user_id = user_id + 1, name = name || 'x' WHERE id = $1`, [1 + i]);
    };
    // New code inserts from expand on; it updates rows once the backfill has filled them (before, it
    // reads NULL in the new columns). It maintains title_length itself; the trigger computes it for
    // the old code's writes.
    const newWrite = async (i: number, update = true) => {
      await newCode.query(
        `INSERT INTO items (user_id, title, title_length, score, owner_id) VALUES ($1, $2, length($2), 2, 3)`,
        [5000 + i, `new${i}`],
      );
      if (update)
        await newCode.query(
          `UPDATE items SET user_id = user_id + 7, title = title || 'y', title_length = length(title) + 1 WHERE id = $1`,
          [101 + i],
        );
    };

    await oldWrite(0);
    await phase(client, everything, 'expand');
    await oldWrite(1);
    await newWrite(1, false);
    assert.ok((await backfill(client, everything)) > 250);
    assert.equal(await backfill(client, everything), 0, 'a second pass finds nothing pending');
    await oldWrite(2);
    await newWrite(2);
    await phase(client, everything, 'tighten');
    await oldWrite(3);
    await newWrite(3);

    // Both versions agree on every row: the new columns hold f(old), the old ones g(new).
    const { rows: differ } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM items WHERE _new_user_id IS DISTINCT FROM user_id::bigint
          OR title IS DISTINCT FROM name OR title_length IS DISTINCT FROM length(name)`,
    );
    assert.equal(differ[0]!.n, 0);
    const { rows: fromNew } = await client.query(
      `SELECT user_id, name, legacy FROM items WHERE id IN (103, 104) ORDER BY id`,
    );
    assert.deepEqual(fromNew, [
      { user_id: 103 + 7, name: 'n103y', legacy: 'l' },
      { user_id: 104 + 7, name: 'n104y', legacy: 'l' },
    ]);
    const { rows: inserted } = await client.query(
      `SELECT user_id, name, legacy FROM items WHERE name LIKE 'new%' ORDER BY id`,
    );
    assert.deepEqual(
      inserted,
      [1, 2, 3].map((i) => ({ user_id: 5000 + i, name: `new${i}`, legacy: '-' })),
    );
    // Tightened: NOT NULL and the declared constraints are validated; old code still passes them.
    await assert.rejects(
      client.query(`INSERT INTO items (user_id, score, legacy) VALUES (1, -1, 'x')`),
      /items_score_positive/,
    );
    await assert.rejects(
      client.query(`INSERT INTO items (user_id, owner_id, legacy) VALUES (1, 99, 'x')`),
      /items_owner_fk/,
    );

    // The renamed column keeps the old one's default for new-code inserts that leave it out.
    await newCode.query(`INSERT INTO items (user_id, title_length, owner_id) VALUES (7, 0, 1)`);
    const { rows: defaulted } = await client.query(
      `SELECT name, title FROM items WHERE user_id = 7 AND title_length = 0`,
    );
    assert.deepEqual(defaulted, [{ name: '', title: '' }]);

    await phase(client, everything, 'contract');
    await newWrite(4);
    const { rows: shape } = await client.query<{ name: string; type: string; notnull: boolean }>(
      `SELECT attname AS name, format_type(atttypid, atttypmod) AS type, attnotnull AS notnull FROM pg_attribute
        WHERE attrelid = 'items'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attname`,
    );
    assert.deepEqual(shape, [
      { name: 'archived', type: 'boolean', notnull: true },
      { name: 'embedding', type: 'vector(3)', notnull: false },
      { name: 'id', type: 'bigint', notnull: true },
      { name: 'owner_id', type: 'integer', notnull: false },
      { name: 'score', type: 'integer', notnull: true },
      { name: 'title', type: 'text', notnull: true },
      { name: 'title_length', type: 'bigint', notnull: true },
      { name: 'user_id', type: 'bigint', notnull: true },
    ]);
    const { rows: valid } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_index WHERE indrelid = 'items'::regclass AND indisvalid`,
    );
    assert.equal(valid[0]!.n, 3);
    const { rows: triggers } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = 'items'::regclass AND NOT tgisinternal`,
    );
    assert.equal(triggers[0]!.n, 0);
  });

  it('contract waits for a held table lock with a short lock_timeout and retries, then applies in one transaction', async () => {
    await resetTables(client);
    await phase(client, everything, 'expand');
    await backfill(client, everything);
    await phase(client, everything, 'tighten');
    const holder = await cluster.connect();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE items IN ACCESS SHARE MODE');
    const retries: string[] = [];
    let released: Promise<unknown> | undefined;
    const plan = await planFor(client, everything, owner.workflowId);
    await runPhase(client, plan, 'contract', owner, {
      settings: { lockTimeoutMs: 100, attempts: 50, retryBaseMs: 10 },
      signal: new AbortController().signal,
      progress: (what) => {
        if (!what.includes('lock_timeout')) return;
        retries.push(what);
        // Seen waiting and retrying: the holder lets go.
        if (retries.length === 2) released = holder.query('COMMIT');
      },
    });
    await released;
    assert.ok(retries.length >= 2, retries.join('; '));
    assert.match(retries[0]!, /^contract step 1: lock_timeout on attempt 1; retrying in \d+ ms$/);
    assert.deepEqual(
      await phaseRows(client),
      ['expand', 'tighten', 'contract'].map((p) => `change:items-everything:${p} by change-test`),
    );
    // Done: no other run may start it again, and an abort is refused.
    await assert.rejects(
      planFor(client, everything, 'another-run'),
      /change items-everything was completed by change-test \(its contract applied at /,
    );
    await assert.rejects(
      planFor(client, everything, owner.workflowId, 'abort'),
      /was completed by change-test .*: too late to abort; to undo it, restore the snapshot taken before the contract/,
    );
  });

  it('a phase is recorded under the migration lock: it waits (lock_timeout, retries) while a deploy holds it', async () => {
    await resetTables(client);
    const { PG_MIGRATE_LOCK_ID } = await import('node-pg-migrate');
    const deploy = await cluster.connect();
    await deploy.query('SELECT pg_advisory_lock($1)', [PG_MIGRATE_LOCK_ID]);
    const retries: string[] = [];
    let released: Promise<unknown> | undefined;
    const plan = await planFor(client, everything, owner.workflowId);
    await runPhase(client, plan, 'expand', owner, {
      settings: { lockTimeoutMs: 100, attempts: 50, retryBaseMs: 10 },
      signal: new AbortController().signal,
      progress: (what) => {
        if (!what.includes('lock_timeout')) return;
        retries.push(what);
        if (retries.length === 2)
          released = deploy.query('SELECT pg_advisory_unlock($1)', [PG_MIGRATE_LOCK_ID]);
      },
    });
    await released;
    assert.ok(retries.length >= 2, retries.join('; '));
    assert.deepEqual(await phaseRows(client), ['change:items-everything:expand by change-test']);
    await phase(client, everything, 'abort');
    await deploy.end();
  });

  for (const last of [undefined, 'expand', 'backfill', 'tighten'] as const) {
    it(`abort ${last === undefined ? 'before expand' : `after ${last}`} leaves the table as before: schema and data checksums equal`, async () => {
      await resetTables(client);
      const before = await tableChecksums(client, 'items');
      if (last !== undefined) await phase(client, everything, 'expand');
      if (last === 'backfill' || last === 'tighten') await backfill(client, everything);
      if (last === 'tighten') await phase(client, everything, 'tighten');
      const applied = last === undefined ? [] : last === 'tighten' ? ['expand', 'tighten'] : ['expand'];
      assert.deepEqual(
        await phaseRows(client),
        applied.map((p) => `change:items-everything:${p} by change-test`),
      );
      await phase(client, everything, 'abort');
      assert.deepEqual(await tableChecksums(client, 'items'), before);
      assert.deepEqual(await phaseRows(client), [], 'the abort removed the rows of the phases it undid');
      const { rows } = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'change_items_everything'`,
      );
      assert.equal(rows[0]!.n, 0);
    });
  }

  it('refuses a change the table does not allow, naming what is in the way, and changes nothing', async () => {
    await resetTables(client);
    const before = await tableChecksums(client, 'items');
    await client.query('CREATE INDEX items_legacy_idx ON items (legacy)');
    await assert.rejects(planFor(client, everything, owner.workflowId), /legacy is used by items_legacy_idx/);
    await client.query('DROP INDEX items_legacy_idx; ALTER TABLE items ADD COLUMN title text');
    await assert.rejects(
      planFor(client, everything, owner.workflowId),
      /names the change adds exist already: title/,
    );
    await client.query('ALTER TABLE items DROP COLUMN title');
    assert.deepEqual(await tableChecksums(client, 'items'), before);
  });
  it('a phase run again by the same workflow (a retry after a lost reply) does nothing; another run is refused while one is in progress', async () => {
    await resetTables(client);
    const plan = await planFor(client, everything, owner.workflowId);
    assert.equal(await runPhase(client, plan, 'expand', owner, control), true);
    const after = await tableChecksums(client, 'items');
    assert.equal(await runPhase(client, plan, 'expand', owner, control), false);
    assert.deepEqual(await tableChecksums(client, 'items'), after);
    await assert.rejects(
      planFor(client, everything, 'another-run'),
      /change items-everything is in progress in change-test; abort it or let it finish/,
    );
  });

  it('a wrong declaration is refused where it is written, naming the rule', () => {
    const base = { description: 'd', table: 'items', key: 'id' };
    const retype = alterColumnType({ column: 'user_id', type: 'bigint', down: (col) => col('user_id') });
    assert.throws(
      () => defineChange({ ...base, name: 'User_Id', operations: [retype] }),
      /change User_Id: name: lowercase words joined by "-"/,
    );
    assert.throws(
      () =>
        defineChange({
          ...base,
          name: 'twice',
          operations: [retype, dropColumn({ name: 'user_id' })],
        }),
      /change twice: column user_id is changed by two operations/,
    );
    assert.throws(
      () => defineChange({ ...base, name: 'key', operations: [dropColumn({ name: 'id' })] }),
      /change key: the key id cannot be changed/,
    );
    assert.throws(
      () => addIndex({ name: 'i', columns: ['embedding'], method: 'hnsw; DROP TABLE items' }),
      /addIndex i: "hnsw; DROP TABLE items" is not a lowercase word/,
    );
    assert.throws(
      () => addForeignKey({ name: 'f', columns: ['a'], references: 'users; --', referencedColumns: ['id'] }),
      /addForeignKey f: references "users; --" is not a table name/,
    );
  });
});
