-- Phase 3 (tighten), step 3: SET NOT NULL, proven by the validated check so Postgres skips the
-- full scan; the check is then redundant.
-- dbops:only-in expandContract
-- Up Migration
-- No scan here: 0007 validated the equivalent check, which squawk cannot see across files.
-- squawk-ignore adding-not-nullable-field
ALTER TABLE conversations ALTER COLUMN user_id_new SET NOT NULL;

ALTER TABLE conversations DROP CONSTRAINT IF EXISTS conversations_user_id_new_not_null;

-- Down Migration
-- squawk-ignore ban-drop-not-null
ALTER TABLE conversations ALTER COLUMN user_id_new DROP NOT NULL;

ALTER TABLE conversations
  ADD CONSTRAINT conversations_user_id_new_not_null CHECK (user_id_new IS NOT NULL) NOT VALID;
