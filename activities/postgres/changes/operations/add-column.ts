/**
 * Add a NOT NULL column, either with a constant default (one instant ALTER, old code's inserts
 * get the default) or computed from other columns: nullable first, filled by the sync trigger on
 * old-code writes and by the backfill, then NOT NULL through a validated check.
 */
import type { Expression, Operation } from '../definition';

export type AddColumnOptions = {
  name: string;
  type: string;
} & ({ default: string; up?: never } | { up: Expression; default?: never });

export function addColumn(options: AddColumnOptions): Operation {
  const computed = options.up !== undefined;
  return {
    kind: 'add-column',
    summary: `add ${options.name} ${options.type} NOT NULL ${computed ? '(computed)' : `DEFAULT ${options.default}`}`,
    added: [
      {
        name: options.name,
        type: options.type,
        notNull: true,
        default: options.default,
        up: options.up,
      },
    ],
  };
}
