/**
 * Add a CHECK constraint: added NOT VALID in tighten (new writes are checked at once, existing
 * rows are not scanned under the table lock), then validated (a scan that lets writes go on).
 */
import type { Expression, Operation } from '../definition';

export interface AddCheckOptions {
  name: string;
  /** The condition, columns by their physical names. */
  check: Expression;
}

export function addCheck({ name, check }: AddCheckOptions): Operation {
  return {
    kind: 'add-check',
    summary: `add CHECK constraint ${name}`,
    constraints: [{ name, definition: (col) => `CHECK (${check(col)})` }],
  };
}
