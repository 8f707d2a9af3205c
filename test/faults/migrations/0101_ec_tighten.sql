-- Fault matrix expand/contract, tighten: new rows must fill the new column.
-- dbops:only-in expandContract
-- Up Migration
ALTER TABLE ec_rows ADD CONSTRAINT ec_rows_v_new_not_null CHECK (v_new IS NOT NULL) NOT VALID;

-- Down Migration
ALTER TABLE ec_rows DROP CONSTRAINT IF EXISTS ec_rows_v_new_not_null;
