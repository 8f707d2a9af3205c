/**
 * Demo data for the embedded stack and the recovery tests: applies the application's migrations
 * (the plain-deploy plan, as deployMigration would) and, when `conversations` is empty, inserts
 * conversations and chunks with embeddings. The embeddings are random but shaped like real ones
 * (a few hidden directions plus noise), so nearest-neighbour search behaves as it would on real
 * data; the generator is seeded, so the same options give the same rows.
 */
import path from 'node:path';

import { projectRoot, type DatabaseConfig } from '../activities/config-types';
import { withClient } from '../activities/postgres/connect';
import {
  appliedMigrations,
  DEFAULT_MIGRATE_SETTINGS,
  planMigrations,
  readMigrations,
  runMigrations,
} from '../activities/postgres/migrations';

export interface SeedOptions {
  conversations: number;
  chunksPerConversation: number;
  /** Same seed, same rows. */
  seed?: number;
}

export interface SeedResult {
  migrationsApplied: string[];
  /** 0 when the table already had rows (nothing inserted). */
  conversationsInserted: number;
  chunksInserted: number;
}

export const MIGRATIONS_DIR = path.join(projectRoot, 'migrations');

/** Directions the embeddings are combinations of: low intrinsic dimension, as real embeddings have. */
const HIDDEN_DIRECTIONS = 12;
const BATCH_ROWS = 250;

export async function seedDemoData(database: DatabaseConfig, options: SeedOptions): Promise<SeedResult> {
  return withClient(database, async (client) => {
    const applied = await appliedMigrations(client);
    const plan = planMigrations(await readMigrations(MIGRATIONS_DIR), applied, {});
    const migrationsApplied = await runMigrations(
      client,
      MIGRATIONS_DIR,
      'up',
      plan.toApply,
      DEFAULT_MIGRATE_SETTINGS,
    );
    const { rows: existing } = await client.query<{ any: boolean }>(
      'SELECT EXISTS (SELECT 1 FROM conversations) AS any',
    );
    if (existing[0]!.any) return { migrationsApplied, conversationsInserted: 0, chunksInserted: 0 };

    const { rows: typmod } = await client.query<{ dims: number }>(
      `SELECT atttypmod AS dims FROM pg_attribute
        WHERE attrelid = 'conversation_chunks'::regclass AND attname = 'embedding'`,
    );
    const dims = typmod[0]!.dims;
    const random = mulberry32(options.seed ?? 42);
    const directions = Array.from({ length: HIDDEN_DIRECTIONS }, () =>
      Array.from({ length: dims }, () => random() * 2 - 1),
    );
    const embedding = (): string => {
      const weights = directions.map(() => random() * 2 - 1);
      const values = new Array<string>(dims);
      for (let d = 0; d < dims; d++) {
        let value = (random() - 0.5) * 0.05;
        for (let k = 0; k < HIDDEN_DIRECTIONS; k++) value += weights[k]! * directions[k]![d]!;
        values[d] = value.toFixed(4);
      }
      return `[${values.join(',')}]`;
    };

    await client.query('BEGIN');
    try {
      // Spread over the last days, oldest first, so max(created_at) is the newest conversation.
      const { rows: ids } = await client.query<{ id: string; created_at: Date }>(
        `INSERT INTO conversations (user_id, title, created_at)
         SELECT 1 + i % 97, 'Demo conversation ' || i, now() - ($1 - i) * interval '1 minute'
           FROM generate_series(1, $1) AS i
         RETURNING id, created_at`,
        [options.conversations],
      );
      const chunks: { conversation: string; index: number; createdAt: Date }[] = [];
      for (const row of ids) {
        for (let index = 0; index < options.chunksPerConversation; index++) {
          chunks.push({ conversation: row.id, index, createdAt: row.created_at });
        }
      }
      for (let start = 0; start < chunks.length; start += BATCH_ROWS) {
        const batch = chunks.slice(start, start + BATCH_ROWS);
        await client.query(
          `INSERT INTO conversation_chunks (conversation_id, chunk_index, content, embedding, created_at)
           SELECT c, i, 'Chunk ' || i || ' of conversation ' || c, e::vector, t
             FROM unnest($1::bigint[], $2::int[], $3::text[], $4::timestamptz[]) AS u(c, i, e, t)`,
          [
            batch.map((chunk) => chunk.conversation),
            batch.map((chunk) => chunk.index),
            batch.map(() => embedding()),
            batch.map((chunk) => chunk.createdAt),
          ],
        );
      }
      await client.query('COMMIT');
      await client.query('ANALYZE conversations, conversation_chunks');
      return { migrationsApplied, conversationsInserted: ids.length, chunksInserted: chunks.length };
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    }
  });
}

/** A small seeded PRNG: the same seed gives the same sequence in [0, 1). */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
