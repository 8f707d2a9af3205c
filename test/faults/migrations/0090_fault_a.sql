-- Fault matrix deploy, step 1: a table of its own.
-- Up Migration
CREATE TABLE IF NOT EXISTS fault_a (id bigint PRIMARY KEY);

-- Down Migration
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS fault_a;
