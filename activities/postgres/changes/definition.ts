/**
 * A declared change: one table, a list of typed operations, referenced by name from workflow input
 * (like the backfills beside it); no SQL ever arrives through the input. Each operation says what
 * it adds in each phase of an expand/contract change, and plan.ts assembles the phases' SQL:
 *
 * - expand: new columns, sync triggers both ways, the new version's schema of views, indexes;
 * - backfill: `new IS DISTINCT FROM f(old)` rows get `new = f(old)`;
 * - tighten: constraints added NOT VALID, then validated (the triggers make old-code writes pass);
 * - contract: triggers and old columns dropped, new columns renamed, in one short transaction;
 * - abort: everything expand and tighten added dropped; the table is as before.
 *
 * Expressions are code, reviewed with the declaration: functions that receive `col(name)`, which
 * returns the column as SQL for the context the generator needs (a trigger's NEW row, the
 * backfill's row, a constraint).
 */
import { InvalidInputError } from '../../../workflows/lib/errors';

/** A column reference for an expression: `col('user_id')` is that column, quoted and qualified. */
export type Col = (name: string) => string;
/** An SQL expression built from column references. */
export type Expression = (col: Col) => string;

/**
 * A column whose old and new version coexist until contract: a new physical column, filled from
 * the old one by `up` (old code's writes, the backfill) and back by `down` (new code's writes).
 */
export interface ColumnPair {
  /** The old version's column. */
  old: string;
  /** The column's name in the new version (after contract). */
  final: string;
  /** The new version's type, e.g. `bigint`. */
  type: string;
  /** The new value from the old version's row (columns by their old names). */
  up: Expression;
  /** The old value from the new version's row (columns by their new names). */
  down: Expression;
  /** Rename the new column to `final` at contract (false when `final` is free already). */
  renameAtContract: boolean;
}

/** A column only the new version has, computed for old-code writes. */
export interface AddedColumn {
  name: string;
  type: string;
  notNull: boolean;
  /** A constant default, when the column has one (no trigger or backfill needed then). */
  default: string | undefined;
  /** The value for rows the old code writes (old version's columns). Absent: the default. */
  up: Expression | undefined;
}

/** A column the new version no longer has; new-code inserts fill it with `down` until contract. */
export interface DroppedColumn {
  name: string;
  down: Expression | undefined;
}

export interface AddedConstraint {
  name: string;
  /** `CHECK (...)` or `FOREIGN KEY (...) REFERENCES ...`, columns by their physical names. */
  definition: Expression;
}

export interface AddedIndex {
  name: string;
  /** What follows `ON table`, e.g. `USING hnsw (embedding vector_cosine_ops) WITH (m = 16)`. */
  definition: Expression;
}

/** What one operation contributes; plan.ts merges the contributions of a change's operations. */
export interface Operation {
  kind: string;
  /** One line for `dbops plan`. */
  summary: string;
  pairs?: ColumnPair[];
  added?: AddedColumn[];
  dropped?: DroppedColumn[];
  constraints?: AddedConstraint[];
  indexes?: AddedIndex[];
}

export interface ChangeDeclaration {
  /** Lowercase words joined by `-`, e.g. `user-id-bigint`. */
  name: string;
  description: string;
  /** The table's schema; default `public`. */
  schema?: string;
  table: string;
  /** A unique, NOT NULL integer key: the backfill walks it. */
  key: string;
  operations: Operation[];
}

export interface Change extends Required<ChangeDeclaration> {
  /** `name` as an identifier part, e.g. `user_id_bigint`. */
  ident: string;
}

const NAME_RULE = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;
const IDENT_RULE = /^[a-z_][a-z0-9_]*$/;

/** Checks a declaration once, where it is written: a wrong one fails at start-up, not mid-change. */
export function defineChange(declaration: ChangeDeclaration): Change {
  const fail = (message: string): never => {
    throw new InvalidInputError(`change ${declaration.name}: ${message}`);
  };
  if (!NAME_RULE.test(declaration.name) || declaration.name.length > 40)
    fail('name: lowercase words joined by "-", at most 40 characters');
  const ident = declaration.name.replaceAll('-', '_');
  const schema = declaration.schema ?? 'public';
  for (const [what, value] of [
    ['schema', schema],
    ['table', declaration.table],
    ['key', declaration.key],
  ] as const) {
    if (!IDENT_RULE.test(value)) fail(`${what}: ${JSON.stringify(value)} is not a lowercase identifier`);
  }
  if (declaration.operations.length === 0) fail('operations: none declared');
  const names: string[] = [];
  for (const op of declaration.operations) {
    for (const pair of op.pairs ?? []) names.push(pair.old, pair.final);
    for (const column of op.added ?? []) names.push(column.name);
    for (const column of op.dropped ?? []) names.push(column.name);
    for (const item of [...(op.constraints ?? []), ...(op.indexes ?? [])]) names.push(item.name);
  }
  for (const name of names) {
    if (!IDENT_RULE.test(name) || name.length > 50)
      fail(`${JSON.stringify(name)} is not a lowercase identifier of at most 50 characters`);
  }
  const touched = declaration.operations.flatMap((op) => [
    ...(op.pairs ?? []).map((pair) => pair.old),
    ...(op.dropped ?? []).map((column) => column.name),
  ]);
  const twice = touched.find((name, i) => touched.indexOf(name) !== i);
  if (twice !== undefined) fail(`column ${twice} is changed by two operations`);
  if (touched.includes(declaration.key)) fail(`the key ${declaration.key} cannot be changed`);
  return { ...declaration, schema, ident };
}

/** `"name"`: identifiers are checked lowercase words, quoted anyway. */
export function quote(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
