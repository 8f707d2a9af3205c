-- Fault matrix expand/contract, expand: the new column, nullable.
-- Up Migration
ALTER TABLE ec_rows ADD COLUMN IF NOT EXISTS v_new bigint;

-- Down Migration
-- squawk-ignore ban-drop-column
ALTER TABLE ec_rows DROP COLUMN IF EXISTS v_new;
