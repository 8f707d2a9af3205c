-- Phase 4 (contract): drop the old column, only once the new code (which reads user_id_new) is
-- deployed. The runbook also renames user_id_new back to user_id here; we do not, because the
-- rename would break the code just deployed. Irreversible: no down migration, restore the
-- pre-migration snapshot instead.
-- dbops:only-in expandContract
-- Up Migration
-- squawk-ignore ban-drop-column
ALTER TABLE conversations DROP COLUMN IF EXISTS user_id;
