/**
 * Change a column's type: a new column of the new type beside the old one, kept equal by the sync
 * triggers (old writes: `up`, new writes: `down`), backfilled, made NOT NULL when the old one is,
 * and renamed to the old name at contract when the old column is dropped.
 */
import type { Expression, Operation } from '../definition';

export interface AlterColumnTypeOptions {
  column: string;
  /** The new type, e.g. `bigint`. */
  type: string;
  /** The new value from the old row; default `old::type`. */
  up?: Expression;
  /** The old value from the new row (new code's writes); default a cast to the old column's type. */
  down: Expression;
}

export function alterColumnType(options: AlterColumnTypeOptions): Operation {
  const { column, type } = options;
  return {
    kind: 'alter-column-type',
    summary: `change the type of ${column} to ${type}`,
    pairs: [
      {
        old: column,
        final: column,
        type,
        up: options.up ?? ((col) => `${col(column)}::${type}`),
        down: options.down,
        renameAtContract: true,
      },
    ],
  };
}
