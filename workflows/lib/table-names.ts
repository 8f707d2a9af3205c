/**
 * Table names arriving in workflow input (`table` or `schema.table`). Only plain identifiers pass:
 * no quotes, semicolons, spaces or other SQL. Activities still quote them and check that the table
 * exists before touching it. Pure code: safe inside the workflow sandbox. Activities import it too,
 * so it must stay pure: no I/O, no Node built-ins, nothing from workers/, only types from
 * activities/.
 */

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

export const TABLE_NAME_RULE =
  '`table` or `schema.table`, each part a letter or underscore followed by letters, digits, _ or $, at most 63 characters';

export interface TableName {
  /** Undefined: any schema the table is in (it must then be unambiguous). */
  schema: string | undefined;
  table: string;
}

export function parseTableName(value: unknown): TableName | undefined {
  if (typeof value !== 'string') return undefined;
  const parts = value.split('.');
  if (parts.length > 2 || !parts.every((part) => IDENTIFIER.test(part))) return undefined;
  return parts.length === 2
    ? { schema: parts[0]!, table: parts[1]! }
    : { schema: undefined, table: parts[0]! };
}
