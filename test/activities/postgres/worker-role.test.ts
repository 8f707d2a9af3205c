import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { projectRoot } from '../../../activities/config-types';
import { withClient } from '../../../activities/postgres/connect';
import { setUpWorkerRole, WORKER_ROLE, WORKER_ROLE_SQL } from '../../../activities/postgres/worker-role';
import { startThrowawayCluster } from '../../helpers/postgres';

describe("the worker's database role set-up", () => {
  it('is shown in docs/deployment.md exactly as the local provider runs it', async () => {
    const sql = await readFile(WORKER_ROLE_SQL, 'utf8');
    const docs = await readFile(path.join(projectRoot, 'docs', 'deployment.md'), 'utf8');
    assert.ok(docs.includes('```sql\n' + sql + '```\n'), 'docs/deployment.md shows worker-role.sql as it is');
  });

  it('runs twice without error; the role is no superuser, and its tables go to public even once the dbops schema exists', async () => {
    const cluster = await startThrowawayCluster();
    try {
      await withClient(cluster.database, setUpWorkerRole);
      await withClient(cluster.database, setUpWorkerRole);
      const worker = { ...cluster.database, user: WORKER_ROLE };
      const placed = await withClient(worker, async (client) => {
        // The schema the backfill checkpoints live in, named like the role.
        await client.query('CREATE SCHEMA dbops');
        await client.query('CREATE TABLE placed (id int)');
        const { rows } = await client.query<{ schema: string; superuser: boolean }>(
          `SELECT relnamespace::regnamespace::text AS schema,
                  (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser
             FROM pg_class WHERE relname = 'placed'`,
        );
        return rows;
      });
      assert.deepEqual(placed, [{ schema: 'public', superuser: false }]);
    } finally {
      await cluster.stop();
    }
  });
});
