/**
 * Checksums of a table's schema (columns with types, NOT NULL and defaults; constraints; indexes;
 * triggers) and of its data (every row as text, in key order): equal checksums mean the table is
 * as it was, which is what an aborted change must leave.
 */
import type { Client } from 'pg';

export interface TableChecksums {
  schema: string;
  data: string;
  rows: number;
}

export async function tableChecksums(client: Client, table: string, key = 'id'): Promise<TableChecksums> {
  const { rows: schema } = await client.query<{ md5: string }>(
    `SELECT md5(string_agg(line, E'\\n' ORDER BY line)) AS md5 FROM (
       SELECT 'column ' || attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attnotnull || ' ' ||
              coalesce(pg_get_expr(d.adbin, d.adrelid), '-') AS line
         FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
       UNION ALL
       SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated
         FROM pg_constraint WHERE conrelid = $1::regclass
       UNION ALL
       SELECT 'index ' || pg_get_indexdef(indexrelid) || ' ' || indisvalid FROM pg_index WHERE indrelid = $1::regclass
       UNION ALL
       SELECT 'trigger ' || pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal
     ) lines`,
    [table],
  );
  const { rows: data } = await client.query<{ md5: string; rows: number }>(
    `SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t.${key}), '')) AS md5, count(*)::int AS rows FROM ${table} t`,
  );
  return { schema: schema[0]!.md5, data: data[0]!.md5, rows: data[0]!.rows };
}
