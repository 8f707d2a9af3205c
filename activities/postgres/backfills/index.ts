/**
 * Every backfill a workflow may run, by name, beside those of the declared changes (each change's
 * backfill phase, activities/postgres/changes). Add one: a file beside this one, then list it here.
 */
import type { AnyBackfill } from './definition';

export const BACKFILLS: Record<string, AnyBackfill> = {};
