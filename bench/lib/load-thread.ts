/**
 * The application's load for bench/backfill.ts, in a thread of its own: short read/write
 * transactions on random rows of `conversations` until told to stop. Apart from the worker's
 * event loop, as the application is in production, so only the database is shared.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';

import { Client, type ClientConfig } from 'pg';

export interface LoadSettings {
  endpoint: ClientConfig;
  connections: number;
  /** Row ids are drawn from 1..rows. */
  rows: number;
}

export interface LoadResult {
  transactions: number;
  failed: number;
  p99Ms: number;
  firstError: string | undefined;
  /** Each committed transaction: when it started (epoch ms) and how long it took (ms). */
  timeline: [number, number][];
}

/** The 99th percentile of some latencies (NaN for none). */
export function p99(latencies: number[]): number {
  const sorted = [...latencies].sort((a, b) => a - b);
  return sorted[Math.floor(0.99 * (sorted.length - 1))] ?? NaN;
}

async function main(port: NonNullable<typeof parentPort>, settings: LoadSettings): Promise<void> {
  const clients = await Promise.all(
    Array.from({ length: settings.connections }, async () => {
      const client = new Client(settings.endpoint);
      client.on('error', () => undefined); // a dropped connection counts as failed transactions, not a crash
      await client.connect();
      return client;
    }),
  );
  let running = true;
  port.once('message', () => {
    running = false;
  });
  const timeline: [number, number][] = [];
  let failed = 0;
  let firstError: string | undefined;
  port.postMessage('started');
  await Promise.all(
    clients.map(async (client) => {
      while (running) {
        const id = 1 + Math.floor(Math.random() * settings.rows);
        const startedAt = Date.now();
        const started = performance.now();
        try {
          await client.query('BEGIN');
          await client.query('SELECT title FROM conversations WHERE id = $1', [id]);
          await client.query('UPDATE conversations SET updated_at = now() WHERE id = $1', [id]);
          await client.query(`INSERT INTO conversations (user_id, title) VALUES ($1, 'load')`, [id % 1000]);
          await client.query('COMMIT');
          timeline.push([startedAt, performance.now() - started]);
        } catch (error) {
          failed++;
          firstError ??= (error as Error).message;
          await client.query('ROLLBACK').catch(() => undefined);
        }
        await sleep(5);
      }
    }),
  );
  await Promise.all(clients.map((client) => client.end()));
  const p99Ms = p99(timeline.map(([, ms]) => ms));
  const result: LoadResult = { transactions: timeline.length, failed, p99Ms, firstError, timeline };
  port.postMessage(result);
}

if (parentPort !== null) void main(parentPort, workerData as LoadSettings);
