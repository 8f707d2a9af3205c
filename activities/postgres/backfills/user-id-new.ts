import { defineBackfill, paramsObject } from './definition';

/** Phase 2 of the runbook's user_id -> user_id_new change: copy the old column into the new one. */
export const userIdNew = defineBackfill<Record<string, never>>({
  name: 'user-id-new',
  description: 'conversations.user_id_new = user_id where it is still NULL (expand/contract phase 2)',
  table: 'public.conversations',
  key: 'id',
  parseParams: (raw) => {
    paramsObject('user-id-new', raw, []);
    return {};
  },
  sql: () => ({ set: 'user_id_new = user_id', pending: 'user_id_new IS NULL', values: [] }),
});
