/**
 * The runbook's change: conversations.user_id from integer to bigint, with old code (writing
 * `user_id` as an integer) and new code (the change's schema, `user_id` a bigint) both working
 * until the contract. New code may only write ids an integer holds until then: the old column
 * gets them back.
 */
import { defineChange } from './definition';
import { alterColumnType } from './operations/alter-column-type';

export const userIdBigint = defineChange({
  name: 'user-id-bigint',
  description: 'conversations.user_id integer -> bigint',
  table: 'conversations',
  key: 'id',
  operations: [
    alterColumnType({
      column: 'user_id',
      type: 'bigint',
      up: (col) => `${col('user_id')}::bigint`,
      down: (col) => `${col('user_id')}::integer`,
    }),
  ],
});
