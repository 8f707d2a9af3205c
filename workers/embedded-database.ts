/**
 * The embedded default database for `npm start`: a real PostgreSQL 15 cluster with pgvector in the
 * state directory, created on first start and reused afterwards.
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

import {
  initCluster,
  isClusterRunning,
  makePostgresDir,
  startCluster,
  stopCluster,
} from '../activities/postgres/cluster';
import { withClient } from '../activities/postgres/connect';
import type { DatabaseConfig } from './config';
import { freePort } from './ports';

export interface EmbeddedDatabase {
  database: DatabaseConfig;
  stop: () => Promise<void>;
}

export async function startEmbeddedDatabase(stateDir: string, instanceId: string): Promise<EmbeddedDatabase> {
  const dir = path.join(stateDir, 'instances', instanceId);
  const dataDir = path.join(dir, 'data');
  const metaFile = path.join(dir, 'instance.json');
  await makePostgresDir(dir);

  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    const port = await freePort();
    await initCluster(dataDir, { port, socketDir: dir });
    await writeFile(metaFile, JSON.stringify({ instanceId, port }, null, 2));
  }
  const { port } = JSON.parse(await readFile(metaFile, 'utf8')) as { port: number };
  if (!(await isClusterRunning(dataDir))) await startCluster(dataDir, path.join(dir, 'server.log'));

  const admin: DatabaseConfig = { host: '127.0.0.1', port, database: 'postgres', user: 'postgres' };
  const database: DatabaseConfig = { ...admin, database: 'mcp_db' };
  await withClient(admin, async (client) => {
    const { rowCount } = await client.query(`SELECT 1 FROM pg_database WHERE datname = 'mcp_db'`);
    if (rowCount === 0) await client.query('CREATE DATABASE mcp_db');
  });
  await withClient(database, (client) => client.query('CREATE EXTENSION IF NOT EXISTS vector'));
  return { database, stop: () => stopCluster(dataDir) };
}
