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
 */
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

/** Reads the whole table once: its row count and content hash. */
export async function fingerprintTable(client: Client, table: UserTable): Promise<TableFingerprint> {
  const qualified = `${client.escapeIdentifier(table.schema)}.${client.escapeIdentifier(table.name)}`;
  const { rows } = await client.query<{ rows: string; hash: string }>(
    `SELECT count(*) AS rows,
            encode(sha256(convert_to(count(*) || ':' || coalesce(sum(a), 0) || ':' || coalesce(sum(b), 0), 'UTF8')), 'hex') AS hash
       FROM (SELECT ('x' || encode(substring(h FROM 1 FOR 8), 'hex'))::bit(64)::bigint AS a,
                    ('x' || encode(substring(h FROM 9 FOR 8), 'hex'))::bit(64)::bigint AS b
               FROM (SELECT sha256(convert_to(ROW(fingerprinted.*)::text, 'UTF8')) AS h
                       FROM ${qualified} AS fingerprinted) hashed) halves`,
  );
  return { rows: Number(rows[0]!.rows), hash: rows[0]!.hash };
}
