import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import type { Endpoint } from '../../activities/control-plane/control-plane';
import { LocalControlPlane } from '../../activities/control-plane/local';
import { createDatabaseConnector, withClient } from '../../activities/postgres/connect';
import { HEARTBEAT_APPLICATION_NAME, newestHeartbeat } from '../../activities/postgres/rpo-heartbeat';
import { startRpoHeartbeat, type RpoHeartbeatWriter } from '../../workers/rpo-heartbeat';

const SOURCE = 'hb-src';

/** Polls until `check` returns a value (bounded: a hang fails the test). */
async function until<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 300; i++) {
    const value = await check();
    if (value !== undefined) return value;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('RPO heartbeat writer (a real local instance)', function () {
  this.timeout(120_000);
  let stateDir: string;
  let plane: LocalControlPlane;
  let endpoint: Endpoint;
  let writer: RpoHeartbeatWriter | undefined;
  const lines: string[] = [];

  const newest = () => withClient(endpoint, newestHeartbeat);
  /** The first heartbeat written after `after`. */
  const heartbeatAfter = (after: string) =>
    until(`a heartbeat after ${after}`, async () => {
      const written = await newest().catch(() => null);
      return written !== null && written > after ? written : undefined;
    });
  const serverNow = () =>
    withClient(endpoint, async (c) =>
      (await c.query<{ now: Date }>('SELECT now()')).rows[0]!.now.toISOString(),
    );

  before(async () => {
    stateDir = await mkdtemp(path.join(os.tmpdir(), 'dbops-rpo-heartbeat-'));
    await chmod(stateDir, 0o755); // the postgres user must reach the clusters inside
    plane = new LocalControlPlane({ stateDir });
    endpoint = await plane.ensureRunning(SOURCE);
    writer = startRpoHeartbeat({
      controlPlane: plane,
      connector: createDatabaseConnector({ primary: endpoint }),
      intervalSeconds: 1,
      logger: { info: (line) => lines.push(`info ${line}`), warn: (line) => lines.push(`warn ${line}`) },
    });
  });
  after(async () => {
    await writer?.stop();
    await plane?.deleteInstance(SOURCE, { skipFinalSnapshot: true }).catch(() => undefined);
    await rm(stateDir, { recursive: true, force: true });
  });

  it("writes the server's time into dbops.rpo_heartbeat, a table the worker's role created", async () => {
    const first = await heartbeatAfter('1970-01-01T00:00:00.000Z');
    const next = await heartbeatAfter(first);
    assert.ok(next > first);
    const owner = await withClient(endpoint, async (c) => {
      const { rows } = await c.query<{ owner: string; rows: number }>(
        `SELECT tableowner AS owner, (SELECT count(*)::int FROM dbops.rpo_heartbeat) AS rows
           FROM pg_tables WHERE schemaname = 'dbops' AND tablename = 'rpo_heartbeat'`,
      );
      return rows[0];
    });
    assert.deepEqual(owner, { owner: 'dbops', rows: 1 }, 'one row, owned by the role dbops');
  });

  it('survives its session being terminated: logs it and writes again', async () => {
    const before = await newest();
    const terminated = await withClient(endpoint, async (c) => {
      const { rows } = await c.query<{ pid: number }>(
        `WITH writer AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE application_name = $1)
         SELECT pid FROM writer WHERE pg_terminate_backend(pid)`,
        [HEARTBEAT_APPLICATION_NAME],
      );
      return rows.length;
    });
    assert.equal(terminated, 1, "the writer's one session was terminated");
    const at = await serverNow();
    await until('the loss logged', () =>
      Promise.resolve(
        lines.find(
          (line) => line.startsWith(`warn RPO heartbeat: instance ${SOURCE}:`) && /terminated/.test(line),
        ),
      ),
    );
    assert.ok((await heartbeatAfter(at)) > before!);
    assert.ok(lines.includes(`info RPO heartbeat: writing into instance ${SOURCE} again`), lines.join('\n'));
  });

  it('skips an instance that is stopped and writes again once it runs; stop() closes every session', async () => {
    lines.length = 0;
    await plane.stopInstance(SOURCE);
    const stoppedAt = new Date().toISOString();
    await plane.startInstance(SOURCE);
    await heartbeatAfter(stoppedAt);
    await writer!.stop();
    writer = undefined;
    const sessions = await withClient(endpoint, async (c) => {
      const { rows } = await c.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
        [HEARTBEAT_APPLICATION_NAME],
      );
      return rows[0]!.n;
    });
    assert.equal(sessions, 0, 'no heartbeat session is left open');
  });
});
