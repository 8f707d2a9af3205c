import assert from 'node:assert/strict';

import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';

import path from 'node:path';

import { runPgBinary, startCluster, stopCluster } from '../../../activities/postgres/cluster';
import { createDatabaseConnector, withClient } from '../../../activities/postgres/connect';
import { runDrChecks, type DrChecksInput } from '../../../activities/postgres/dr-checks';
import { beginFingerprints, fingerprintTable } from '../../../activities/postgres/fingerprints';
import { seedDemoData } from '../../../workers/seed';
import { changeByte, firstTupleOffset, writeBytes } from '../../helpers/damage';
import { startThrowawayCluster, type ThrowawayCluster } from '../../helpers/postgres';

describe('DR checks on a restored copy (real PostgreSQL 15 + pgvector, seeded demo data)', function () {
  this.timeout(180_000);
  let cluster: ThrowawayCluster;
  let input: DrChecksInput;

  before(async () => {
    cluster = await startThrowawayCluster();
    await seedDemoData(cluster.database, { conversations: 300, chunksPerConversation: 2 });
    input = {
      endpoint: cluster.database,
      expectedRowCounts: { 'public.conversations': 300, 'postgres.public.conversation_chunks': 600 },
      sampleQueries: 20,
      minRecall: 0.9,
      efSearch: 100,
    };
  });
  after(async () => {
    await cluster?.stop();
  });

  const run = (overrides: Partial<DrChecksInput> = {}) =>
    runDrChecks(createDatabaseConnector({ primary: cluster.database }), { ...input, ...overrides });

  it('passes every check on a healthy copy, with the facts in the details', async () => {
    const seen: string[] = [];
    const result = await runDrChecks(createDatabaseConnector({ primary: cluster.database }), input, (check) =>
      seen.push(check),
    );
    assert.deepEqual(
      result.checks.map((c) => [c.name, c.status]),
      [
        ['connectivity', 'passed'],
        ['amcheck', 'passed'],
        ['conversations', 'passed'],
        ['row-counts', 'passed'],
        ['table-contents', 'passed'],
        ['pgvector', 'passed'],
        ['vector-index:conversations_embedding_idx', 'passed'],
        ['vector-index:conversations_embedding_ivfflat_idx', 'passed'],
        ['recall:conversations_embedding_idx', 'passed'],
      ],
    );
    assert.deepEqual(
      seen,
      result.checks.map((c) => c.name),
      'progress is reported after each check',
    );
    assert.equal(result.conversationCount, 300);
    assert.equal(result.pgvectorVersion, '0.8.0');
    assert.match(
      result.checks[1]!.detail,
      /^verify_heapam on \d+ tables \(TOAST and catalogs included\) and bt_index_check with heapallindexed on \d+ B-tree indexes of postgres: no corruption; amcheck created on this copy in postgres$/,
    );
    assert.equal(result.checks[3]!.detail, "2 tables match the snapshot's row counts");
    assert.match(
      result.checks[4]!.detail,
      /^\d+ tables, \d+ rows, read in full with TOAST detoasted; no content hashes were recorded with this snapshot to compare$/,
    );
    assert.match(
      result.checks[8]!.detail,
      /^recall@10 (0\.9\d\d|1\.000) over 20 queries \(hnsw\.ef_search 100\), minimum 0\.9$/,
    );
  });

  it('names every table whose row count differs, and one that is missing', async () => {
    const result = await run({
      expectedRowCounts: { 'public.conversations': 299, 'public.gone': 5, 'public.conversation_chunks': 600 },
    });
    const rowCounts = result.checks.find((c) => c.name === 'row-counts')!;
    assert.equal(rowCounts.status, 'failed');
    assert.equal(
      rowCounts.detail,
      '2 of 3 tables differ: public.conversations: 300 rows, expected 299; public.gone: missing (expected 5 rows)',
    );
  });

  it("compares every table's content hash with the snapshot's and names the table whose contents differ", async () => {
    const recorded = await withClient(cluster.database, async (client) => {
      await beginFingerprints(client);
      try {
        const tables = ['conversations', 'conversation_chunks'].map((name) => ({ schema: 'public', name }));
        const [conversations, chunks] = await Promise.all(tables.map((t) => fingerprintTable(client, t)));
        return {
          'public.conversations': conversations!.hash,
          'postgres.public.conversation_chunks': chunks!.hash,
        };
      } finally {
        await client.query('ROLLBACK');
      }
    });
    const same = await run({ expectedContentHashes: recorded });
    const contents = () => same.checks.find((c) => c.name === 'table-contents')!;
    assert.equal(contents().status, 'passed', contents().detail);
    assert.match(
      contents().detail,
      /^2 tables match the snapshot's content hashes \(\d+ tables, \d+ rows, read in full with TOAST detoasted\)$/,
    );

    const client = await cluster.connect();
    // One character of one title: same rows, same count.
    await client.query(
      `UPDATE conversations SET title = title || '!' WHERE id = (SELECT min(id) FROM conversations)`,
    );
    try {
      const changed = await run({ expectedContentHashes: recorded });
      assert.deepEqual(
        changed.checks
          .filter((c) => ['row-counts', 'table-contents'].includes(c.name))
          .map((c) => [c.name, c.status, c.detail]),
        [
          ['row-counts', 'passed', "2 tables match the snapshot's row counts"],
          [
            'table-contents',
            'failed',
            '1 differ: public.conversations: contents differ from the snapshot (300 rows, as many as recorded)',
          ],
        ],
      );
    } finally {
      await client.query(
        `UPDATE conversations SET title = left(title, -1) WHERE id = (SELECT min(id) FROM conversations)`,
      );
    }
  });

  it('skips the row counts when the snapshot recorded none (RDS)', async () => {
    const result = await run({ expectedRowCounts: null });
    assert.deepEqual(
      result.checks.find((c) => c.name === 'row-counts'),
      {
        name: 'row-counts',
        status: 'skipped',
        detail: 'no row counts were recorded with this snapshot',
      },
    );
  });

  it('as an activity: heartbeats on its timer while a check waits (a cold copy), and a cancellation cancels the waiting query', async () => {
    // amcheck of conversations waits on a lock, as a read would on a cold volume.
    const locker = await cluster.connect();
    const watcher = await cluster.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE conversations IN ACCESS EXCLUSIVE MODE');
    const env = new MockActivityEnvironment();
    const beats: unknown[] = [];
    let wanted = Infinity;
    let enough!: () => void;
    const reached = new Promise<void>((resolve) => (enough = resolve));
    env.on('heartbeat', (details: unknown) => {
      beats.push(details);
      if (beats.length >= wanted) enough();
    });
    const running = env.run(() => run());
    try {
      for (;;) {
        // amcheck, the first check to read conversations, waits.
        const { rows } = await watcher.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE wait_event_type = 'Lock' AND query LIKE '%verify_heapam(%'`,
        );
        if (rows[0]!.n === 1) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      // Two more heartbeats while the query still waits.
      wanted = beats.length + 2;
      if (beats.length >= wanted) enough();
      await reached;
      assert.deepEqual(beats.at(-1), { checksDone: ['connectivity'] });
      env.cancel();
      await assert.rejects(running, (error: Error) => error instanceof CancelledFailure);
      const { rows } = await watcher.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'`,
      );
      assert.equal(rows[0]!.n, 0, 'the waiting count was cancelled');
    } finally {
      await locker.query('ROLLBACK');
    }
  });

  it('fails recall when the bar is above what the index reaches, and leaves the indexes in place', async () => {
    const result = await run({ minRecall: 1, efSearch: 1, sampleQueries: 50 });
    const recall = result.checks.find((c) => c.name === 'recall:conversations_embedding_idx')!;
    assert.equal(recall.status, 'failed', recall.detail);
    assert.match(recall.detail, /^recall@10 0\.\d{3} over 50 queries \(hnsw\.ef_search 1\), minimum 1$/);
    const client = await cluster.connect();
    const { rows } = await client.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_indexes WHERE tablename = 'conversation_chunks' AND indexname LIKE 'conversations_embedding%'`,
    );
    assert.equal(Number(rows[0]!.n), 2, 'the DROP INDEX of the usability check was not rolled back');
  });

  it('fails an INVALID index and reports a missing HNSW index (index dropped before the snapshot)', async () => {
    const client = await cluster.connect();
    await client.query('DROP INDEX conversations_embedding_idx');
    await client.query(
      `UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'conversations_embedding_ivfflat_idx'::regclass`,
    );
    const result = await run();
    assert.deepEqual(
      result.checks
        .filter((c) => c.name.startsWith('vector-index') || c.name === 'recall')
        .map((c) => [c.name, c.status, c.detail]),
      [
        [
          'vector-index:conversations_embedding_ivfflat_idx',
          'failed',
          'ivfflat on conversation_chunks.embedding (vector_cosine_ops) is INVALID (pg_index.indisvalid = false)',
        ],
        ['recall', 'failed', 'no valid HNSW index to measure recall@10 on'],
      ],
    );
  });

  it('amcheck names a damaged tuple header on a page whose checksum holds, and a page whose checksum fails; neither table is read after', async () => {
    const admin = await cluster.connect();
    await admin.query('CREATE DATABASE damaged');
    const damaged = { ...cluster.database, database: 'damaged' };
    const files = await withClient(damaged, async (client) => {
      for (const table of ['header', 'page', 'intact']) {
        await client.query(
          `CREATE TABLE ${table} AS SELECT g AS id, repeat('x', 20) AS filler FROM generate_series(1, 50) g`,
        );
      }
      const { rows } = await client.query<{ header: string; page: string }>(
        `SELECT pg_relation_filepath('header') AS header, pg_relation_filepath('page') AS page`,
      );
      return rows[0]!;
    });
    await stopCluster(cluster.dataDir, 'fast');
    const header = path.join(cluster.dataDir, files.header);
    const page = path.join(cluster.dataDir, files.page);
    // The header's t_hoff says the data starts 8 bytes later; checksums recomputed over the damage.
    await runPgBinary('pg_checksums', ['--disable', '--pgdata', cluster.dataDir]);
    const { tuple } = await firstTupleOffset(header);
    await writeBytes(header, tuple + 22, [32]);
    await runPgBinary('pg_checksums', ['--enable', '--pgdata', cluster.dataDir]);
    // A byte of the page's first tuple's data, after its checksum was computed.
    await changeByte(page, (await firstTupleOffset(page)).dataStart);
    await startCluster(cluster.dataDir, path.join(path.dirname(cluster.dataDir), 'server.log'));

    const result = await run({ endpoint: damaged, expectedRowCounts: null });
    const amcheck = result.checks.find((c) => c.name === 'amcheck')!;
    assert.equal(amcheck.status, 'failed');
    assert.match(
      amcheck.detail,
      /^2 damaged: damaged\.public\.header: block 0, offset 1: tuple data should begin at byte 24, but actually begins at byte 32 \(2 attributes, no nulls\); damaged\.public\.page: ERROR: invalid page in block 0 of relation base\/\d+\/\d+ \(verify_heapam/,
    );
    assert.doesNotMatch(amcheck.detail, /intact/);
    const contents = result.checks.find((c) => c.name === 'table-contents')!;
    assert.equal(contents.status, 'failed');
    assert.equal(
      contents.detail,
      'damaged.public.header: could not be read (not read: amcheck found it damaged); ' +
        'damaged.public.page: could not be read (not read: amcheck found it damaged)',
    );
  });
});
