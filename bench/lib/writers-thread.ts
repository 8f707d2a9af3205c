/**
 * The two application versions of bench/expand-contract.ts, in a thread of their own: old-code
 * connections write `conversations.user_id` as always; new-code connections, once told the
 * change's schema exists, write it through that schema. Each statement is timed; the thread
 * answers with the p99 and the failures of each version when told to stop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';

import { Client, type ClientConfig } from 'pg';

export interface WritersSettings {
  endpoint: ClientConfig;
  /** Connections per version. */
  connections: number;
  /** Rows updated are drawn from 1..rows. */
  rows: number;
  /** The new version's schema: new-code writers put it first in their search_path. */
  versionSchema: string;
}

export interface VersionResult {
  statements: number;
  failed: number;
  p99Ms: number;
  firstError: string | undefined;
}

export interface WritersResult {
  old: VersionResult;
  new: VersionResult;
}

/** Messages to the thread: start the new code, or stop and report. */
export type WritersCommand = 'start-new' | 'stop';

class Version {
  readonly latencies: number[] = [];
  failed = 0;
  firstError: string | undefined;

  result(): VersionResult {
    const sorted = [...this.latencies].sort((a, b) => a - b);
    return {
      statements: sorted.length,
      failed: this.failed,
      p99Ms: sorted[Math.floor(0.99 * (sorted.length - 1))] ?? NaN,
      firstError: this.firstError,
    };
  }
}

async function writer(client: Client, version: Version, rows: number, running: () => boolean): Promise<void> {
  for (let n = 0; running(); n++) {
    const value = 1 + Math.floor(Math.random() * 1_000_000);
    const started = performance.now();
    try {
      if (n % 4 === 0) {
        await client.query(`INSERT INTO conversations (user_id, title) VALUES ($1, 'bench')`, [value]);
      } else {
        const id = 1 + Math.floor(Math.random() * rows);
        await client.query('UPDATE conversations SET user_id = $1 WHERE id = $2', [value, id]);
      }
      version.latencies.push(performance.now() - started);
    } catch (error) {
      version.failed++;
      version.firstError ??= (error as Error).message;
    }
    await sleep(5);
  }
}

async function main(port: NonNullable<typeof parentPort>, settings: WritersSettings): Promise<void> {
  const open = () =>
    Promise.all(
      Array.from({ length: settings.connections }, async () => {
        const client = new Client(settings.endpoint);
        client.on('error', () => undefined); // a dropped connection counts as failures, not a crash
        await client.connect();
        return client;
      }),
    );
  const [oldClients, newClients] = await Promise.all([open(), open()]);
  const versions = { old: new Version(), new: new Version() };
  let running = true;
  const loops: Promise<void>[] = oldClients.map((client) =>
    writer(client, versions.old, settings.rows, () => running),
  );
  port.on('message', (command: WritersCommand) => {
    if (command === 'stop') {
      running = false;
      return;
    }
    for (const client of newClients) {
      loops.push(
        client
          .query(`SET search_path TO "${settings.versionSchema}", public`)
          .then(() => writer(client, versions.new, settings.rows, () => running)),
      );
    }
  });
  port.postMessage('started');
  while (running) await sleep(50);
  await Promise.all(loops);
  await Promise.all([...oldClients, ...newClients].map((client) => client.end()));
  const result: WritersResult = { old: versions.old.result(), new: versions.new.result() };
  port.postMessage(result);
}

if (parentPort !== null) void main(parentPort, workerData as WritersSettings);
