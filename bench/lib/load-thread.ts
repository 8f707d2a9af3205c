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
  const latencies: number[] = [];
  let failed = 0;
  let firstError: string | undefined;
  port.postMessage('started');
  await Promise.all(
    clients.map(async (client) => {
      while (running) {
        const id = 1 + Math.floor(Math.random() * settings.rows);
        const started = performance.now();
        try {
          await client.query('BEGIN');
          await client.query('SELECT title FROM conversations WHERE id = $1', [id]);
          await client.query('UPDATE conversations SET updated_at = now() WHERE id = $1', [id]);
          await client.query(`INSERT INTO conversations (user_id, title) VALUES ($1, 'load')`, [id % 1000]);
          await client.query('COMMIT');
          latencies.push(performance.now() - started);
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
  const sorted = latencies.sort((a, b) => a - b);
  const p99Ms = sorted[Math.floor(0.99 * (sorted.length - 1))] ?? NaN;
  const result: LoadResult = { transactions: sorted.length, failed, p99Ms, firstError };
  port.postMessage(result);
}

if (parentPort !== null) void main(parentPort, workerData as LoadSettings);
