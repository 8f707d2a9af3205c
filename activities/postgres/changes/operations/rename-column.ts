/**
 * Rename a column without breaking the old code: the new name is a new column of the same type,
 * synced both ways with the old one until contract drops the old one. Old code keeps the old
 * name, new code (through the change's schema) uses the new one.
 */
import type { Operation } from '../definition';

export interface RenameColumnOptions {
  from: string;
  to: string;
  /** The column's type, e.g. `text` (the new column is created with it). */
  type: string;
}

export function renameColumn({ from, to, type }: RenameColumnOptions): Operation {
  return {
    kind: 'rename-column',
    summary: `rename ${from} to ${to}`,
    pairs: [
      {
        old: from,
        final: to,
        type,
        up: (col) => col(from),
        down: (col) => col(to),
        renameAtContract: false,
      },
    ],
  };
}
