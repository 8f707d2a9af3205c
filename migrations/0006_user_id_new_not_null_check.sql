-- Phase 3 (tighten), step 1: a NOT NULL check that new writes must pass at once, added NOT VALID
-- so existing rows are not scanned under the table lock. Validated in the next migration, in its
-- own transaction, as squawk's constraint-missing-not-valid rule asks.
-- dbops:only-in expandContract
-- Up Migration
ALTER TABLE conversations
  ADD CONSTRAINT conversations_user_id_new_not_null CHECK (user_id_new IS NOT NULL) NOT VALID;

-- Down Migration
ALTER TABLE conversations DROP CONSTRAINT IF EXISTS conversations_user_id_new_not_null;
