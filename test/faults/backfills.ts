/**
 * Backfills the fault worker may run: the counting `counter` fixture (backfill cells) and
 * `ec-fill`, phase 2 of the matrix's own expand/contract change on `ec_rows` (v_new = v).
 */
import { defineBackfill, paramsObject } from '../../activities/postgres/backfills/definition';
import { counter } from '../fixtures/backfills/counter';

const ecFill = defineBackfill<Record<string, never>>({
  name: 'ec-fill',
  description: 'ec_rows.v_new = v where it is still NULL (the fault matrix expand/contract phase 2)',
  table: 'public.ec_rows',
  key: 'id',
  parseParams: (raw) => {
    paramsObject('ec-fill', raw, []);
    return {};
  },
  sql: () => ({ set: 'v_new = t.v', pending: 't.v_new IS NULL', values: [] }),
});

export const FAULT_BACKFILLS = { counter, 'ec-fill': ecFill };
