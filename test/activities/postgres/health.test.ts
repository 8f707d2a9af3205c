import assert from 'node:assert/strict';

import { withClient } from '../../../activities/postgres/connect';
import { createHealthActivities } from '../../../activities/postgres/health';
import type { OnInstance } from '../../../activities/postgres/on-instance';
import { startThrowawayCluster, type ThrowawayCluster } from '../../helpers/postgres';

describe('health activity (real Postgres)', () => {
  let cluster: ThrowawayCluster;
  let activities: ReturnType<typeof createHealthActivities>;

  before(async () => {
    cluster = await startThrowawayCluster();
    const onInstance: OnInstance = (_instanceId, fn) => withClient(cluster.database, fn);
    activities = createHealthActivities(onInstance);
  });
  after(async () => {
    await cluster?.stop();
  });

  it('creates the pg_stat_statements extension when the library is preloaded but the extension is missing', async () => {
    const sql = await cluster.connect();
    assert.equal(
      (await sql.query(`SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'`)).rowCount,
      0,
    );
    const snapshot = await activities.measureHealth({});
    assert.equal(snapshot.statementsProblem, null);
    assert.equal(
      (await sql.query(`SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'`)).rowCount,
      1,
    );
  });

  it('never returns a statement that carries a password (utility statements keep their literals)', async () => {
    const sql = await cluster.connect();
    await sql.query('CREATE ROLE app LOGIN');
    for (let i = 0; i < 50; i++) await sql.query(`ALTER ROLE app PASSWORD 'hunter2-secret'`);
    const snapshot = await activities.measureHealth({});
    const frequent = snapshot.mostFrequent!.find((s) => s.calls === 50)!;
    assert.equal(frequent.query, '(statement mentioning a password, not shown)');
    assert.doesNotMatch(JSON.stringify(snapshot), /hunter2/);
  });

  it('measures a primary without replicas and reports the kNN table as absent', async () => {
    const snapshot = await activities.measureHealth({});
    assert.equal(snapshot.isReplica, false);
    assert.deepEqual(snapshot.replicas, []);
    assert.deepEqual(snapshot.knn, { status: 'no-table' });
    assert.ok(snapshot.cache.hits > 0);
  });
});
