/**
 * Add a FOREIGN KEY: NOT VALID in tighten (only new writes are checked), then validated without
 * blocking writes on either table.
 */
import { InvalidInputError } from '../../../../workflows/lib/errors';
import { quote, type Operation } from '../definition';

export interface AddForeignKeyOptions {
  name: string;
  columns: string[];
  /** The referenced table, schema-qualified when not in the search path, e.g. `public.users`. */
  references: string;
  referencedColumns: string[];
  onDelete?: 'NO ACTION' | 'RESTRICT' | 'CASCADE' | 'SET NULL';
}

const TABLE_RULE = /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/;

export function addForeignKey(options: AddForeignKeyOptions): Operation {
  if (!TABLE_RULE.test(options.references)) {
    throw new InvalidInputError(
      `addForeignKey ${options.name}: references ${JSON.stringify(options.references)} is not a table name`,
    );
  }
  const list = (columns: string[]) => columns.map(quote).join(', ');
  const table = options.references.split('.').map(quote).join('.');
  return {
    kind: 'add-foreign-key',
    summary: `add FOREIGN KEY ${options.name} (${options.columns.join(', ')}) -> ${options.references}`,
    constraints: [
      {
        name: options.name,
        definition: (col) =>
          `FOREIGN KEY (${options.columns.map((c) => col(c)).join(', ')}) REFERENCES ${table} (${list(options.referencedColumns)}) ON DELETE ${options.onDelete ?? 'NO ACTION'}`,
      },
    ],
  };
}
