/** Every declared change a workflow may run, by name. Add one: a file beside this one, then list it here. */
import { defineBackfill, paramsObject, type AnyBackfill } from '../backfills/definition';
import type { Change } from './definition';
import { backfillOf } from './plan';
import { userIdBigint } from './user-id-bigint';

export const CHANGES: Record<string, Change> = {
  [userIdBigint.name]: userIdBigint,
};

/** Each change's backfill phase as a backfill of the same name (the change's workflow runs it). */
export function changeBackfills(changes: Record<string, Change>): Record<string, AnyBackfill> {
  const backfills: Record<string, AnyBackfill> = {};
  for (const change of Object.values(changes)) {
    const sql = backfillOf(change);
    if (sql === undefined) continue;
    backfills[change.name] = defineBackfill<Record<string, never>>({
      name: change.name,
      description: `fill the new columns of change ${change.name} (${change.description})`,
      table: `"${change.schema}"."${change.table}"`,
      key: change.key,
      parseParams: (raw) => {
        paramsObject(change.name, raw, []);
        return {};
      },
      sql: () => ({ ...sql, values: [] }),
    });
  }
  return backfills;
}
