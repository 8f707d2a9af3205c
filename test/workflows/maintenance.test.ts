import assert from 'node:assert/strict';

import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { Client as PgClient } from 'pg';

import { createActivities } from '../../activities';
import { maintenance, type MaintenanceInput } from '../../workflows/maintenance';
import { localActivityDeps } from '../helpers/activity-deps';
import { startThrowawayCluster, type ThrowawayCluster } from '../helpers/postgres';
import { createDevServerEnv, createTimeSkippingEnv, workflowBundle } from '../helpers/temporal';

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

/** An RDS-syntax window starting `offsetMinutes` from `from` (UTC) and lasting `length` minutes. */
function windowFromNow(offsetMinutes: number, length: number, from = Date.now()): string {
  const at = (minutes: number) => {
    const t = new Date(from + minutes * 60_000);
    const hh = String(t.getUTCHours()).padStart(2, '0');
    const mm = String(t.getUTCMinutes()).padStart(2, '0');
    return `${DAYS[t.getUTCDay()]}:${hh}:${mm}`;
  };
  return `${at(offsetMinutes)}-${at(offsetMinutes + length)}`;
}

describe('maintenance workflow (dev server, real Postgres)', () => {
  let env: TestWorkflowEnvironment;
  let cluster: ThrowawayCluster;
  let sql: PgClient;
  let runs = 0;

  before(async () => {
    [env, cluster] = await Promise.all([createDevServerEnv(), startThrowawayCluster()]);
    sql = await cluster.connect();
  });
  // Each test starts from tables no VACUUM has touched yet (new tables have no vacuum history).
  beforeEach(async () => {
    // autovacuum off on these tables, so only our VACUUM can clean them
    await sql.query(`
      DROP TABLE IF EXISTS bloated, tidy;
      CREATE TABLE bloated (id int PRIMARY KEY, pad text) WITH (autovacuum_enabled = false);
      INSERT INTO bloated SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;
      CREATE INDEX bloated_pad_idx ON bloated (pad);
      CREATE TABLE tidy (id int PRIMARY KEY, code text UNIQUE) WITH (autovacuum_enabled = false);
      INSERT INTO tidy SELECT g, 'c' || g FROM generate_series(1, 100) g;
      DELETE FROM bloated WHERE id % 10 <> 0;
    `);
    await sql.query('SELECT pg_stat_force_next_flush()'); // the DELETE's counters reach pg_stat_user_tables now
  });
  after(async () => {
    await Promise.all([env?.teardown(), cluster?.stop()]);
  });

  async function run(input: MaintenanceInput, maintenanceWindow = 'sun:04:00-sun:05:00') {
    const taskQueue = `maintenance-${++runs}`;
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities({ ...localActivityDeps(cluster.database), maintenanceWindow }),
    });
    return worker.runUntil(
      env.client.workflow.execute(maintenance, { taskQueue, workflowId: taskQueue, args: [input] }),
    );
  }

  async function lastVacuums(): Promise<Record<string, string | null>> {
    const { rows } = await sql.query<{ relname: string; last_vacuum: Date | null }>(
      'SELECT relname, last_vacuum FROM pg_stat_user_tables',
    );
    return Object.fromEntries(rows.map((r) => [r.relname, r.last_vacuum?.toISOString() ?? null]));
  }

  async function assertFails(input: MaintenanceInput, type: string, message: RegExp, window?: string) {
    const before = await lastVacuums();
    await assert.rejects(run(input, window), (error: unknown) => {
      assert.ok(error instanceof WorkflowFailedError, String(error));
      const cause = error.cause as (Error & { type?: string; cause?: Error & { type?: string } }) | undefined;
      // thrown by the workflow itself, or by an activity (then wrapped in an ActivityFailure)
      const failure = cause?.type === undefined ? cause?.cause : cause;
      assert.equal(failure?.type, type);
      assert.match(failure.message, message);
      return true;
    });
    assert.deepEqual(await lastVacuums(), before, 'a table was vacuumed although the run was refused');
  }

  it('refuses an unknown table by name and vacuums nothing', () =>
    assertFails(
      { tables: ['tidy', 'no_such_table'] },
      'InvalidInputError',
      /table "no_such_table" does not exist/,
    ));

  it('refuses table names with quotes or semicolons before touching the database', () =>
    assertFails(
      { tables: ['tidy; DROP TABLE bloated', 'a"b'] },
      'InvalidInputError',
      /"tidy; DROP TABLE bloated", "a\\"b" not allowed/,
    ));

  it('refuses VACUUM FULL outside the maintenance window, naming the window', () => {
    const window = windowFromNow(120, 60);
    return assertFails(
      { tables: ['tidy'], full: true },
      'InvalidStateError',
      new RegExp(`only allowed inside the maintenance window ${window} \\(UTC\\)`),
      window,
    );
  });

  it('reports the dead tuples and the unused index, then cleans the table', async () => {
    const result = await run({ tables: ['bloated'] });

    const before = result.before.tables.find((t) => t.table === 'bloated')!;
    assert.equal(before.deadTuples, 18000);
    assert.equal(before.deadTupleRatio, 0.9);
    assert.equal(before.lastVacuum, null);
    assert.deepEqual(
      result.before.unusedIndexes.map((i) => i.index),
      ['bloated_pad_idx'],
      'only the plain index is unused: primary keys and unique indexes back constraints',
    );

    assert.deepEqual(
      result.vacuumed.map((v) => `${v.schema}.${v.table}`),
      ['public.bloated'],
    );
    const after = result.after.tables.find((t) => t.table === 'bloated')!;
    assert.equal(after.deadTuples, 0);
    assert.equal(after.liveTuples, 2000);
    assert.notEqual(after.lastVacuum, null);
    assert.notEqual(after.lastAnalyze, null);
    const tidy = result.after.tables.find((t) => t.table === 'tidy')!;
    assert.equal(tidy.lastVacuum, null, 'a table that was not asked for was vacuumed');

    const naptime = result.after.autovacuum.find((s) => s.name === 'autovacuum_naptime')!;
    assert.deepEqual(naptime, {
      name: 'autovacuum_naptime',
      current: '60s',
      recommended: '30s',
      matches: false,
    });
  });

  it('runs VACUUM FULL inside the maintenance window', async () => {
    const filenode = async () =>
      (await sql.query<{ node: string }>(`SELECT pg_relation_filenode('tidy')::text AS node`)).rows[0]!.node;
    const before = await filenode();
    const result = await run({ tables: ['tidy'], full: true }, windowFromNow(-60, 120));
    assert.deepEqual(
      result.vacuumed.map((v) => [v.table, v.full]),
      [['tidy', true]],
    );
    assert.notEqual(await filenode(), before, 'VACUUM FULL rewrites the table into a new file');
  });

  it('works on a named instance through the ControlPlane: an unknown one fails, nothing vacuumed', () =>
    assertFails({ instanceId: 'no-such-db', tables: ['tidy'] }, 'NotFoundError', /no-such-db/));

  it('vacuums every user table when none is named', async () => {
    const result = await run({});
    assert.deepEqual(result.vacuumed.map((v) => v.table).sort(), ['bloated', 'tidy']);
  });

  describe('VACUUM FULL whose window closes between two tables (time-skipping server)', () => {
    let skipping: TestWorkflowEnvironment;
    before(async () => {
      skipping = await createTimeSkippingEnv();
    });
    after(async () => {
      await skipping?.teardown();
    });

    it('rewrites the first table, then stops and reports the table it skipped', async () => {
      const filenodes = async () => {
        const { rows } = await sql.query<{ tidy: string; bloated: string }>(
          `SELECT pg_relation_filenode('tidy')::text AS tidy, pg_relation_filenode('bloated')::text AS bloated`,
        );
        return rows[0]!;
      };
      const before = await filenodes();
      const vacuumsBefore = await lastVacuums();
      // The window closes at the next whole minute of the test server's clock, which is first
      // moved to 20 s before it; the first table's VACUUM FULL then takes 30 s of workflow time
      // (the clock is moved on when it has finished: less than its heartbeat timeout).
      const minute = Math.ceil((await skipping.currentTimeMs()) / 60_000 + 1) * 60_000;
      await skipping.sleep(minute - 20_000 - (await skipping.currentTimeMs()));
      const window = windowFromNow(-40, 40, minute);
      const activities = createActivities({
        ...localActivityDeps(cluster.database),
        maintenanceWindow: window,
      });
      const vacuumed: string[] = [];
      const worker = await Worker.create({
        connection: skipping.nativeConnection,
        taskQueue: 'maintenance-window-closes',
        workflowBundle: await workflowBundle(),
        activities: {
          ...activities,
          vacuumTable: async (input: Parameters<typeof activities.vacuumTable>[0]) => {
            const result = await activities.vacuumTable(input);
            vacuumed.push(input.table.table);
            await skipping.sleep('30 seconds');
            return result;
          },
        },
      });
      const result = await worker.runUntil(
        skipping.client.workflow.execute(maintenance, {
          taskQueue: 'maintenance-window-closes',
          workflowId: 'maintenance-window-closes',
          args: [{ tables: ['tidy', 'bloated'], full: true }],
        }),
      );
      assert.deepEqual(vacuumed, ['tidy']);
      assert.deepEqual(
        result.vacuumed.map((v) => [v.table, v.full]),
        [['tidy', true]],
      );
      assert.deepEqual(result.skipped, [{ schema: 'public', table: 'bloated' }]);
      assert.match(
        result.stopped ?? '',
        new RegExp(`^the maintenance window ${window} \\(UTC\\) closed before 1 of 2 tables; it is now `),
      );
      const after = await filenodes();
      assert.notEqual(after.tidy, before.tidy, 'tidy was rewritten');
      assert.equal(after.bloated, before.bloated, 'bloated was rewritten after the window closed');
      assert.equal((await lastVacuums()).bloated, vacuumsBefore.bloated);
    });
  });
});
