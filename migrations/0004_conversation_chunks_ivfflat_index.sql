-- The runbook's IVFFlat index (lower memory than HNSW), built without blocking writes, then the
-- statistics the planner needs to choose between them.
-- dbops:no-transaction
-- Up Migration
DROP INDEX CONCURRENTLY IF EXISTS conversations_embedding_ivfflat_idx;

CREATE INDEX CONCURRENTLY IF NOT EXISTS conversations_embedding_ivfflat_idx
  ON conversation_chunks USING ivfflat (embedding vector_cosine_ops)
  WITH (lists = 100);

ANALYZE conversation_chunks;

-- Down Migration
DROP INDEX CONCURRENTLY IF EXISTS conversations_embedding_ivfflat_idx;
