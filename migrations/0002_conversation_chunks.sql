-- Chunks of a conversation with their embedding (pgvector). The extension needs no preload.
-- Up Migration
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS conversation_chunks (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  conversation_id bigint NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  -- squawk-ignore prefer-bigint-over-int
  chunk_index integer NOT NULL,
  content text NOT NULL,
  embedding vector(1536),
  created_at timestamptz NOT NULL DEFAULT now()
);

-- squawk-ignore require-concurrent-index-creation
CREATE INDEX IF NOT EXISTS conversation_chunks_conversation_id_idx
  ON conversation_chunks (conversation_id);

-- Down Migration
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS conversation_chunks;
