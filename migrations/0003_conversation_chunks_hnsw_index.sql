-- The runbook's HNSW index for similarity search, built without blocking writes.
-- dbops:no-transaction
-- Up Migration
-- A failed concurrent build leaves an INVALID index behind: drop it so a re-run starts clean.
DROP INDEX CONCURRENTLY IF EXISTS conversations_embedding_idx;

CREATE INDEX CONCURRENTLY IF NOT EXISTS conversations_embedding_idx
  ON conversation_chunks USING hnsw (embedding vector_cosine_ops)
  WITH (m = 16, ef_construction = 64);

-- Down Migration
DROP INDEX CONCURRENTLY IF EXISTS conversations_embedding_idx;
