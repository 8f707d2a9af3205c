/**
 * Table fingerprints: a table's exact row count and a hash of its contents, so a restored copy can
 * be compared with what its snapshot held, table by table. The local provider records them when it
 * takes a snapshot; the DR test computes them again on the restored copy.
 *
 * The hash reads every row in full (every column through its output function, so TOASTed values
 * are fetched and decompressed): it is also the DR test's proof that every table can be read. It
 * is the sum of every row's SHA-256 (as two 64-bit halves), so one streaming pass computes it,
 * without sorting the table or holding it in memory, and row order does not matter. The session
 * settings that change how values print are fixed, so the same rows hash the same on any server.
 * The sums are added up here, so a table read in pieces (FingerprintPace) hashes as one read whole.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import type { Client } from 'pg';

export interface TableFingerprint {
  rows: number;
  /** Hex SHA-256 over the row count and the sums of the rows' hashes. */
  hash: string;
}

export interface UserTable {
  schema: string;
  name: string;
}

/** Settings that decide how values print as text (time zones, dates, floats, bytea, money). */
const STABLE_OUTPUT: Record<string, string> = {
  TimeZone: 'UTC',
  DateStyle: 'ISO, YMD',
  IntervalStyle: 'postgres',
  extra_float_digits: '1',
  bytea_output: 'hex',
  lc_monetary: 'C',
};

/**
 * Opens the transaction fingerprints are read in: one snapshot for every table of the database,
 * read only, with the output settings fixed. The caller ends it (ROLLBACK).
 */
export async function beginFingerprints(client: Client): Promise<void> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  for (const [name, value] of Object.entries(STABLE_OUTPUT)) {
    await client.query('SELECT set_config($1, $2, true)', [name, value]);
  }
}

/** Every user table of the connected database (partitions count with their parent). */
export async function userTables(client: Client): Promise<UserTable[]> {
  const { rows } = await client.query<UserTable>(
    `SELECT n.nspname AS schema, c.relname AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence <> 't'
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
      ORDER BY 1, 2`,
  );
  return rows;
}

/**
 * Reading a table in pieces of `blocks` pages (a range of ctids each), with a pause after each one
 * as long as `pauseAfter` says; the sums add up to the same fingerprint as one read of the whole.
 */
export interface FingerprintPace {
  blocks: number;
  /**
   * How long to wait after a piece of `pages` pages that took `pieceMs`, in ms (0: go on at once).
   * Asked after every piece, the last one of a table too, so the next table waits its turn.
   */
  pauseAfter(pieceMs: number, pages: number): Promise<number>;
}

/**
 * Reads the whole table once: its row count and content hash. Paced, a table is read a range of
 * pages at a time (a partitioned table that range of every partition at a time).
 */
export async function fingerprintTable(
  client: Client,
  table: UserTable,
  pace?: FingerprintPace,
): Promise<TableFingerprint> {
  const name = qualified(client, table);
  const pages = pace === undefined ? 0 : await tablePages(client, table);
  const pieces: { where: string; pages: number }[] = [];
  for (let first = 0; first < pages; first += pace!.blocks) {
    pieces.push({
      where: `WHERE ctid >= '(${first},0)'::tid AND ctid < '(${first + pace!.blocks},0)'::tid`,
      pages: Math.min(pace!.blocks, pages - first),
    });
  }
  if (pieces.length === 0) pieces.push({ where: '', pages: 0 });
  const total = { rows: 0n, a: 0n, b: 0n };
  for (const piece of pieces) {
    const started = performance.now();
    const { rows } = await client.query<{ rows: string; a: string; b: string }>(
      `SELECT count(*) AS rows, coalesce(sum(a), 0) AS a, coalesce(sum(b), 0) AS b
         FROM (SELECT ('x' || encode(substring(h FROM 1 FOR 8), 'hex'))::bit(64)::bigint AS a,
                      ('x' || encode(substring(h FROM 9 FOR 8), 'hex'))::bit(64)::bigint AS b
                 FROM (SELECT sha256(convert_to(ROW(fingerprinted.*)::text, 'UTF8')) AS h
                         FROM ${name} AS fingerprinted ${piece.where}) hashed) halves`,
    );
    total.rows += BigInt(rows[0]!.rows);
    total.a += BigInt(rows[0]!.a);
    total.b += BigInt(rows[0]!.b);
    if (pace !== undefined) {
      const pause = await pace.pauseAfter(performance.now() - started, piece.pages);
      if (pause > 0) await sleep(pause);
    }
  }
  const hash = createHash('sha256').update(`${total.rows}:${total.a}:${total.b}`).digest('hex');
  return { rows: Number(total.rows), hash };
}

/**
 * The pages a paced read of the table walks: the table's own, or for a partitioned table its
 * largest partition's (a range of ctids reads that range of every partition).
 */
export async function tablePages(client: Client, table: UserTable): Promise<number> {
  const { rows } = await client.query<{ pages: string }>(
    `SELECT greatest(pg_relation_size($1::regclass),
                     (SELECT max(pg_relation_size(relid)) FROM pg_partition_tree($1::regclass) WHERE isleaf))
              / current_setting('block_size')::bigint AS pages`,
    [qualified(client, table)],
  );
  return Number(rows[0]!.pages);
}

function qualified(client: Client, table: UserTable): string {
  return `${client.escapeIdentifier(table.schema)}.${client.escapeIdentifier(table.name)}`;
}
