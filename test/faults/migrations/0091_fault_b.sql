-- Fault matrix deploy, step 2: fails while the table fault_switch exists, so a cell can make the
-- deploy revert step 1 (its down migration).
-- Up Migration
CREATE TABLE IF NOT EXISTS fault_b (id bigint PRIMARY KEY);
DO $$
BEGIN
  IF to_regclass('public.fault_switch') IS NOT NULL THEN
    RAISE EXCEPTION 'fault_b refused: fault_switch is set';
  END IF;
END
$$;

-- Down Migration
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS fault_b;
