/** A throwaway PostgreSQL 15 cluster with pgvector: temp dir, free port, removed afterwards. */
import { chmod, copyFile, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';

import {
  chownToPostgres,
  initCluster,
  makePostgresDir,
  startCluster,
  stopCluster,
} from '../../activities/postgres/cluster';
import type { DatabaseConfig } from '../../activities/config-types';
import { freePort } from '../../activities/ports';

export interface ThrowawayCluster {
  dataDir: string;
  database: DatabaseConfig;
  /** A connected client; closed by `stop()` if still open. */
  connect(): Promise<Client>;
  stop: () => Promise<void>;
}

/**
 * `tls`: a server certificate and key (e.g. from test/helpers/tls.ts) to accept TLS with; they are
 * copied into the cluster's directory, where only the postgres user may read them.
 */
export async function startThrowawayCluster(
  extraConf: Record<string, string> = {},
  tls?: { cert: string; key: string },
): Promise<ThrowawayCluster> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'dbops-pg-'));
  await makePostgresDir(root);
  const dataDir = path.join(root, 'data');
  const port = await freePort();
  const conf = { ...extraConf };
  if (tls !== undefined) {
    const cert = path.join(root, 'server.crt');
    const key = path.join(root, 'server.key');
    await copyFile(tls.cert, cert);
    await copyFile(tls.key, key);
    for (const file of [cert, key]) {
      await chmod(file, 0o600);
      await chownToPostgres(file);
    }
    Object.assign(conf, { ssl: "'on'", ssl_cert_file: `'${cert}'`, ssl_key_file: `'${key}'` });
  }
  await initCluster(dataDir, { port, socketDir: root, extraConf: conf });
  await startCluster(dataDir, path.join(root, 'server.log'));
  const clients: Client[] = [];
  return {
    dataDir,
    database: { host: '127.0.0.1', port, database: 'postgres', user: 'postgres' },
    async connect() {
      const client = new Client({ host: '127.0.0.1', port, database: 'postgres', user: 'postgres' });
      // A session the test terminates or a server it restarts fails this client's next query, not the test process.
      client.on('error', () => undefined);
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
