import assert from 'node:assert/strict';

import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { Client as PgClient } from 'pg';

import { withClient } from '../../../activities/postgres/connect';
import { createMaintenanceActivities, type VacuumResult } from '../../../activities/postgres/maintenance';
import type { OnInstance } from '../../../activities/postgres/on-instance';
import { InvalidInputError } from '../../../workflows/lib/errors';
import { startThrowawayCluster, type ThrowawayCluster } from '../../helpers/postgres';

// The activities alone (MockActivityEnvironment: a stand-in for the worker's activity context,
// which only a running worker provides) on a real Postgres with pgvector.
type VacuumInput = Parameters<ReturnType<typeof createMaintenanceActivities>['vacuumTable']>[0];

describe('maintenance activities (real Postgres, mock activity context)', () => {
  let cluster: ThrowawayCluster;
  let sql: PgClient;
  let activities: ReturnType<typeof createMaintenanceActivities>;

  before(async () => {
    cluster = await startThrowawayCluster();
    sql = await cluster.connect();
    await sql.query(`
      CREATE EXTENSION vector;
      CREATE SCHEMA archive;
      CREATE TABLE public.events (id int PRIMARY KEY, kind text);
      CREATE TABLE archive.events (id int PRIMARY KEY);
      CREATE TABLE conversation_chunks (id bigserial PRIMARY KEY, embedding vector(3));
      INSERT INTO conversation_chunks (embedding) SELECT ARRAY[g, 1, 1]::vector FROM generate_series(1, 50) g;
      CREATE INDEX chunks_hnsw ON conversation_chunks USING hnsw (embedding vector_cosine_ops);
      CREATE INDEX chunks_ivfflat ON conversation_chunks USING ivfflat (embedding vector_l2_ops) WITH (lists = 1);
    `);
    const onInstance: OnInstance = (_instanceId, fn) => withClient(cluster.database, fn);
    activities = createMaintenanceActivities(onInstance, 'sun:04:00-sun:05:00');
  });
  after(async () => {
    await cluster?.stop();
  });

  it('resolves named tables, schema-qualified where the name is ambiguous', async () => {
    assert.deepEqual(
      await activities.resolveMaintenanceTables({ tables: ['archive.events', 'conversation_chunks'] }),
      [
        { schema: 'archive', table: 'events' },
        { schema: 'public', table: 'conversation_chunks' },
      ],
    );
  });

  it('names every unknown or ambiguous table in one InvalidInputError', async () => {
    await assert.rejects(
      activities.resolveMaintenanceTables({ tables: ['events', 'missing', 'public.gone'] }),
      (error: unknown) =>
        error instanceof InvalidInputError &&
        error.message ===
          'tables: table "events" is in several schemas: name it as schema.table; ' +
            'table "missing" does not exist; table "public.gone" does not exist',
    );
  });

  it('vacuums one table, heartbeating which table it is on', async () => {
    const env = new MockActivityEnvironment();
    const heartbeats: unknown[] = [];
    env.on('heartbeat', (details: unknown) => heartbeats.push(details));
    const result = await env.run<[VacuumInput], VacuumResult, (input: VacuumInput) => Promise<VacuumResult>>(
      (input) => activities.vacuumTable(input),
      {
        table: { schema: 'archive', table: 'events' },
        full: false,
      },
    );
    assert.deepEqual([result.schema, result.table, result.full], ['archive', 'events', false]);
    assert.deepEqual(heartbeats[0], { schema: 'archive', table: 'events' });
    const { rows } = await sql.query<{ vacuumed: boolean }>(
      `SELECT last_vacuum IS NOT NULL AS vacuumed FROM pg_stat_user_tables WHERE schemaname = 'archive'`,
    );
    assert.deepEqual(rows, [{ vacuumed: true }]);
  });

  it('a VACUUM that waits heartbeats on its timer, and cancelling the activity cancels it', async () => {
    const locker = await cluster.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE public.events IN ACCESS EXCLUSIVE MODE');
    const env = new MockActivityEnvironment();
    let beats = 0;
    let wanted = Infinity;
    let enough!: () => void;
    const reached = new Promise<void>((resolve) => (enough = resolve));
    env.on('heartbeat', () => {
      beats += 1;
      if (beats >= wanted) enough();
    });
    const running = env.run((input: VacuumInput) => activities.vacuumTable(input), {
      table: { schema: 'public', table: 'events' },
      full: false,
    });
    try {
      for (;;) {
        const { rows } = await sql.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'VACUUM%'`,
        );
        if (rows[0]!.n === 1) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      // Two more heartbeats while the VACUUM still waits.
      wanted = beats + 2;
      await reached;
      env.cancel();
      await assert.rejects(running, (error: Error) => error instanceof CancelledFailure);
      const { rows } = await sql.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'VACUUM%' AND state = 'active'`,
      );
      assert.equal(rows[0]!.n, 0, 'the VACUUM was cancelled');
    } finally {
      await locker.query('ROLLBACK');
    }
  });

  it('refuses to vacuum a table that does not exist (checked again at the activity)', async () => {
    const env = new MockActivityEnvironment();
    await assert.rejects(
      env.run((input: VacuumInput) => activities.vacuumTable(input), {
        table: { schema: 'public', table: 'gone"; DROP TABLE events; --' },
        full: false,
      }),
      (error: unknown) => error instanceof InvalidInputError && /does not exist/.test(error.message),
    );
    const { rows } = await sql.query<{ ok: boolean }>(
      `SELECT to_regclass('public.events') IS NOT NULL AS ok`,
    );
    assert.deepEqual(rows, [{ ok: true }]);
  });

  it('reports HNSW and IVFFlat indexes with their size and the runbook autovacuum comparison', async () => {
    const report = await activities.maintenanceReport({});
    assert.deepEqual(
      report.vectorIndexes.map((i) => [i.index, i.method, i.table, i.sizeBytes > 0]),
      [
        ['chunks_hnsw', 'hnsw', 'conversation_chunks', true],
        ['chunks_ivfflat', 'ivfflat', 'conversation_chunks', true],
      ],
    );
    assert.deepEqual(
      report.autovacuum.map((s) => [s.name, s.current, s.recommended, s.matches]),
      [
        ['autovacuum', 'on', 'on', true],
        ['autovacuum_analyze_threshold', '50', '500', false],
        ['autovacuum_naptime', '60s', '30s', false],
        ['autovacuum_vacuum_threshold', '50', '1000', false],
      ],
    );
  });
});
