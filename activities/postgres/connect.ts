import { Client } from 'pg';

import type { DatabaseConfig } from '../../workers/config';

/**
 * Runs `fn` on a fresh connection and always closes it. The password is never passed in: `pg`
 * reads PGPASSWORD or `~/.pgpass` itself, so no secret travels through workflow inputs.
 */
export async function withClient<T>(db: DatabaseConfig, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({
    host: db.host,
    port: db.port,
    database: db.database,
    user: db.user,
    application_name: 'dbops',
    connectionTimeoutMillis: 10_000,
  });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
