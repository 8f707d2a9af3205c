import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

import { Client } from 'pg';

import { pacedWhileBusy } from '../../../activities/control-plane/local-jobs';
import { withClient } from '../../../activities/postgres/connect';
import {
  beginFingerprints,
  fingerprintTable,
  type FingerprintPace,
  type TableFingerprint,
  type UserTable,
} from '../../../activities/postgres/fingerprints';
import { startThrowawayCluster, type ThrowawayCluster } from '../../helpers/postgres';

describe('table fingerprints read in pieces (real PostgreSQL 15)', function () {
  this.timeout(120_000);
  let cluster: ThrowawayCluster;
  const notes: UserTable = { schema: 'public', name: 'notes' };

  before(async () => {
    cluster = await startThrowawayCluster();
    await withClient(cluster.database, async (client) => {
      await client.query(
        `CREATE TABLE notes AS
           SELECT g AS id, repeat('x', g % 300) AS body, now() - g * interval '1 minute' AS at
             FROM generate_series(1, 20000) g`,
      );
      await client.query('CREATE TABLE empty_notes (id int)');
      await client.query('CREATE TABLE parted (id int, body text) PARTITION BY RANGE (id)');
      await client.query('CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (0) TO (1000)');
      await client.query('CREATE TABLE parted_high PARTITION OF parted FOR VALUES FROM (1000) TO (3000)');
      await client.query(`INSERT INTO parted SELECT g, 'row ' || g FROM generate_series(0, 2999) g`);
    });
  });
  after(async () => {
    await cluster?.stop();
  });

  const read = (table: UserTable, pace?: FingerprintPace): Promise<TableFingerprint> =>
    withClient(cluster.database, async (client: Client) => {
      await beginFingerprints(client);
      try {
        return await fingerprintTable(client, table, pace);
      } finally {
        await client.query('ROLLBACK');
      }
    });

  /** A pace of `blocks` pages that records every piece's duration and pages and asks for no pause. */
  const recording = (blocks: number) => {
    const pieces: { ms: number; pages: number }[] = [];
    const pace: FingerprintPace = {
      blocks,
      pauseAfter: (ms, pages) => {
        pieces.push({ ms, pages });
        return Promise.resolve(0);
      },
    };
    return { pace, pieces };
  };

  it('hashes a table read in pieces exactly as read whole, and as snapshots recorded before', async () => {
    const { rows } = await withClient(cluster.database, (client) =>
      client.query<{ pages: number }>(`SELECT pg_relation_size('notes') / 8192 AS pages`),
    );
    const pages = Number(rows[0]!.pages);
    assert.ok(pages > 50, `the table has ${pages} pages`);
    const whole = await read(notes);
    const { pace, pieces } = recording(10);
    assert.deepEqual(await read(notes, pace), whole);
    // A pause is asked after every piece, the last one too, with the pages each piece covered.
    assert.equal(pieces.length, Math.ceil(pages / 10));
    assert.equal(
      pieces.reduce((sum, piece) => sum + piece.pages, 0),
      pages,
    );
    assert.equal(whole.rows, 20000);
    // The hash as one statement computed it before the pieces (the formula of the snapshots
    // already on disk, which later restores are compared with).
    const before = await withClient(cluster.database, async (client) => {
      await beginFingerprints(client);
      const {
        rows: [row],
      } = await client.query<{ hash: string }>(
        `SELECT encode(sha256(convert_to(count(*) || ':' || coalesce(sum(a), 0) || ':' || coalesce(sum(b), 0), 'UTF8')), 'hex') AS hash
           FROM (SELECT ('x' || encode(substring(h FROM 1 FOR 8), 'hex'))::bit(64)::bigint AS a,
                        ('x' || encode(substring(h FROM 9 FOR 8), 'hex'))::bit(64)::bigint AS b
                   FROM (SELECT sha256(convert_to(ROW(t.*)::text, 'UTF8')) AS h FROM notes t) hashed) halves`,
      );
      await client.query('ROLLBACK');
      return row!.hash;
    });
    assert.equal(whole.hash, before);
  });

  it('still sees one changed row when read in pieces', async () => {
    const { pace } = recording(7);
    const unchanged = await read(notes, pace);
    await withClient(cluster.database, (client) =>
      client.query(`UPDATE notes SET body = body || '!' WHERE id = 12345`),
    );
    try {
      const changed = await read(notes, pace);
      assert.equal(changed.rows, unchanged.rows);
      assert.notEqual(changed.hash, unchanged.hash);
    } finally {
      await withClient(cluster.database, (client) =>
        client.query(`UPDATE notes SET body = left(body, length(body) - 1) WHERE id = 12345`),
      );
    }
    assert.deepEqual(await read(notes, pace), unchanged);
  });

  it('waits as long as the pace says after each piece', async () => {
    const pauses: number[] = [];
    const started = performance.now();
    const paced = await read(notes, {
      blocks: 100,
      pauseAfter: () => {
        pauses.push(200);
        return Promise.resolve(200);
      },
    });
    const tookMs = performance.now() - started;
    assert.ok(pauses.length >= 2, `${pauses.length} pauses`);
    assert.ok(tookMs >= 200 * pauses.length, `${pauses.length} pauses of 200 ms, and it took ${tookMs} ms`);
    assert.deepEqual(paced, await read(notes));
  });

  it('reads an empty table in one piece, and a partitioned one a range of every partition at a time', async () => {
    const empty = { schema: 'public', name: 'empty_notes' };
    const emptyPieces = recording(1);
    assert.deepEqual(await read(empty, emptyPieces.pace), await read(empty));
    assert.deepEqual(
      emptyPieces.pieces.map((piece) => piece.pages),
      [0],
    );

    const parted = { schema: 'public', name: 'parted' };
    const { rows } = await withClient(cluster.database, (client) =>
      client.query<{ low: number; high: number }>(
        `SELECT pg_relation_size('parted_low') / 8192 AS low, pg_relation_size('parted_high') / 8192 AS high`,
      ),
    );
    const { low, high } = { low: Number(rows[0]!.low), high: Number(rows[0]!.high) };
    assert.ok(high > low && low > 1, `partitions of ${low} and ${high} pages`);
    const { pace, pieces } = recording(2);
    assert.deepEqual(await read(parted, pace), await read(parted));
    // Pieces of two pages up to the larger partition's last page, each reading both partitions.
    assert.equal(pieces.length, Math.ceil(high / 2));
    assert.equal((await read(parted)).rows, 3000);
  });

  it("a snapshot's pace: twice a piece's time while the application is busy, none when quiet", async () => {
    const pace = pacedWhileBusy(cluster.database);
    const application = new Client({ ...cluster.database, application_name: 'app' });
    await application.connect();
    try {
      const statement = application.query('SELECT pg_sleep(1.5)');
      await sleep(200);
      assert.equal(await pace.pauseAfter(80, 512), 160);
      await statement;
    } finally {
      await application.end();
    }
    await sleep(1200); // its statement ended more than a second ago, and so did the last reading
    assert.equal(await pace.pauseAfter(80, 512), 0);
    // An instance that cannot be reached counts as busy.
    const unreachable = pacedWhileBusy({ ...cluster.database, port: 1 });
    assert.equal(await unreachable.pauseAfter(80, 512), 160);
  });
});
