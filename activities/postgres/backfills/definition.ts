/**
 * A backfill is code-reviewed SQL in this directory, one definition per file, referenced by name
 * from workflow input together with its parameters; no SQL ever arrives through the input.
 */
import { InvalidInputError } from '../../../workflows/lib/errors';

export interface BackfillSql {
  /** The SET list of the UPDATE, e.g. `title = trim(title)`. Its parameters are $1..$n. */
  set: string;
  /** True for rows that still need the change: a re-run batch touches nothing twice. */
  pending: string;
  /** Values of $1..$n. */
  values: unknown[];
}

export interface BackfillDefinition<P> {
  name: string;
  description: string;
  /** The table, schema-qualified, as written in SQL. */
  table: string;
  /** A unique, NOT NULL integer key (the primary key): batches walk it in order (keyset pagination). */
  key: string;
  /** Checks workflow input; throws InvalidInputError naming the field and the rule. */
  parseParams(raw: unknown): P;
  sql(params: P): BackfillSql;
}

/** Type-erased for the registry: `parseParams` and `sql` always travel together. */
export interface AnyBackfill {
  name: string;
  description: string;
  table: string;
  key: string;
  prepare(raw: unknown): BackfillSql;
}

export function defineBackfill<P>(definition: BackfillDefinition<P>): AnyBackfill {
  return {
    name: definition.name,
    description: definition.description,
    table: definition.table,
    key: definition.key,
    prepare: (raw) => definition.sql(definition.parseParams(raw)),
  };
}

/** Parameters as an object with only the listed keys (absent or `{}` when there are none). */
export function paramsObject(name: string, raw: unknown, allowed: string[]): Record<string, unknown> {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new InvalidInputError(`params of backfill ${name}: expected an object, got ${JSON.stringify(raw)}`);
  }
  const unknown = Object.keys(raw).filter((key) => !allowed.includes(key));
  if (unknown.length > 0) {
    const expected = allowed.length > 0 ? `expected only ${allowed.join(', ')}` : 'it takes none';
    throw new InvalidInputError(`params of backfill ${name}: unknown ${unknown.join(', ')}; ${expected}`);
  }
  return raw as Record<string, unknown>;
}

export function integerParam(name: string, field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidInputError(
      `params.${field} of backfill ${name}: ${JSON.stringify(value)} is not an integer from ${min} to ${max}`,
    );
  }
  return value;
}
