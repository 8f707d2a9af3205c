-- Multi-phase change of conversations.user_id from integer to bigint, phase 1 (expand): add the
-- new column, nullable and without default, so old code keeps working and no row is rewritten.
-- Phase 2 is the `user-id-new` backfill; the expandContract workflow runs the phases in order.
-- Up Migration
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS user_id_new bigint;

-- Down Migration
-- squawk-ignore ban-drop-column
ALTER TABLE conversations DROP COLUMN IF EXISTS user_id_new;
