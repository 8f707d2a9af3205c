/**
 * The database role the worker connects as (`dbops`, the user the Terraform IAM policy lets
 * connect) and its set-up: one SQL file, `worker-role.sql`, which the docs show and a deployer
 * runs as the master user, and which the local provider runs on every instance it creates. One
 * file, so what is documented is what the tests run with.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import type { Client } from 'pg';

export const WORKER_ROLE = 'dbops';

export const WORKER_ROLE_SQL = path.join(__dirname, 'worker-role.sql');

/** Runs the role set-up on `client`, which must be connected as a superuser to the application database. */
export async function setUpWorkerRole(client: Client): Promise<void> {
  await client.query(await readFile(WORKER_ROLE_SQL, 'utf8'));
}
