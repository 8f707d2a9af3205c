import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';

import { startThrowawayCluster, type ThrowawayCluster } from './postgres';

describe('throwaway PostgreSQL 15 cluster with pgvector', () => {
  let cluster: ThrowawayCluster;
  before(async () => {
    cluster = await startThrowawayCluster();
  });
  after(async () => {
    await cluster?.stop();
  });

  it('runs PostgreSQL 15 with pgvector 0.8.0 installable', async () => {
    const client = await cluster.connect();
    const { rows } = await client.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`);
    assert.match(rows[0]!.v, /^15\d{4}$/);
    await client.query('CREATE EXTENSION vector');
    const ext = await client.query<{ extversion: string }>(
      `SELECT extversion FROM pg_extension WHERE extname = 'vector'`,
    );
    assert.equal(ext.rows[0]?.extversion, '0.8.0');
  });

  it('plans a kNN query on an HNSW index with vector_cosine_ops', async () => {
    const client = await cluster.connect();
    await client.query('CREATE EXTENSION IF NOT EXISTS vector');
    await client.query('CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(3))');
    await client.query(
      `INSERT INTO items (embedding)
       SELECT ARRAY[random(), random(), random()]::vector FROM generate_series(1, 2000)`,
    );
    await client.query('CREATE INDEX items_embedding_hnsw ON items USING hnsw (embedding vector_cosine_ops)');
    await client.query('ANALYZE items');
    const plan = await client.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN SELECT id FROM items ORDER BY embedding <=> '[0.1,0.2,0.3]' LIMIT 10`,
    );
    const text = plan.rows.map((row) => row['QUERY PLAN']).join('\n');
    assert.match(text, /Index Scan using items_embedding_hnsw/, text);
    const knn = await client.query(`SELECT id FROM items ORDER BY embedding <=> '[0.1,0.2,0.3]' LIMIT 10`);
    assert.equal(knn.rowCount, 10);
  });

  it('is removed afterwards', async () => {
    const other = await startThrowawayCluster();
    await other.stop();
    assert.equal(existsSync(other.dataDir), false);
  });
});
