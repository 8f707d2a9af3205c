-- Fault matrix expand/contract, contract: the old column goes. Irreversible.
-- dbops:only-in expandContract
-- Up Migration
-- squawk-ignore ban-drop-column
ALTER TABLE ec_rows DROP COLUMN IF EXISTS v;
