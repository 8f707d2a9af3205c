/** Every backfill a workflow may run, by name. Add one: a file beside this one, then list it here. */
import type { AnyBackfill } from './definition';
import { userIdNew } from './user-id-new';

export const BACKFILLS: Record<string, AnyBackfill> = {
  [userIdNew.name]: userIdNew,
};
