-- The runbook's application table: one row per conversation.
-- Up Migration
CREATE TABLE IF NOT EXISTS conversations (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- squawk-ignore prefer-bigint-over-int
  user_id integer NOT NULL, -- widened to bigint by the declared change user-id-bigint (expandContract)
  title text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS conversations;
