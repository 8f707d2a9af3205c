/**
 * Drop a column: the new version's schema no longer shows it; until contract, new-code inserts
 * fill it with `down` (needed when it is NOT NULL without a default), and contract drops it.
 */
import type { Expression, Operation } from '../definition';

export interface DropColumnOptions {
  name: string;
  /** Its value for rows the new code inserts (columns by their new names). */
  down?: Expression;
}

export function dropColumn({ name, down }: DropColumnOptions): Operation {
  return { kind: 'drop-column', summary: `drop ${name}`, dropped: [{ name, down }] };
}
