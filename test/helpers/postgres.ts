/** A throwaway PostgreSQL 15 cluster with pgvector: temp dir, free port, removed afterwards. */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';

import { initCluster, makePostgresDir, startCluster, stopCluster } from '../../activities/postgres/cluster';
import type { DatabaseConfig } from '../../workers/config';
import { freePort } from '../../workers/ports';

export interface ThrowawayCluster {
  dataDir: string;
  database: DatabaseConfig;
  /** A connected client; closed by `stop()` if still open. */
  connect(): Promise<Client>;
  stop: () => Promise<void>;
}

export async function startThrowawayCluster(
  extraConf: Record<string, string> = {},
): Promise<ThrowawayCluster> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'dbops-pg-'));
  await makePostgresDir(root);
  const dataDir = path.join(root, 'data');
  const port = await freePort();
  await initCluster(dataDir, { port, socketDir: root, extraConf });
  await startCluster(dataDir, path.join(root, 'server.log'));
  const clients: Client[] = [];
  return {
    dataDir,
    database: { host: '127.0.0.1', port, database: 'postgres', user: 'postgres' },
    async connect() {
      const client = new Client({ host: '127.0.0.1', port, database: 'postgres', user: 'postgres' });
      await client.connect();
      clients.push(client);
      return client;
    },
    async stop() {
      await Promise.allSettled(clients.map((client) => client.end()));
      await stopCluster(dataDir, 'immediate');
      await rm(root, { recursive: true, force: true });
    },
  };
}
