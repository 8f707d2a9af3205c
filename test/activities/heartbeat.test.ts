import assert from 'node:assert/strict';

import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { Client } from 'pg';

import { backendCanceller, heartbeatWhile } from '../../activities/heartbeat';
import { startThrowawayCluster, type ThrowawayCluster } from '../helpers/postgres';

/** Resolves once `env` has seen `count` heartbeats, with their details. */
function heartbeats(
  env: MockActivityEnvironment,
  count: number,
): { seen: unknown[]; reached: Promise<void> } {
  const seen: unknown[] = [];
  const reached = new Promise<void>((resolve) => {
    env.on('heartbeat', (details: unknown) => {
      seen.push(details);
      if (seen.length === count) resolve();
    });
  });
  return { seen, reached };
}

describe('heartbeatWhile (mock activity context)', () => {
  it('heartbeats at once and on its timer while the work runs, with the latest details, and stops when it settles', async () => {
    const env = new MockActivityEnvironment();
    const { seen, reached } = heartbeats(env, 4);
    let step = 0;
    const result = await env.run(() =>
      heartbeatWhile(
        async () => {
          await reached;
          return 'done';
        },
        { everyMs: 10, details: () => ({ step: step++ }) },
      ),
    );
    assert.equal(result, 'done');
    assert.deepEqual(seen.slice(0, 4), [{ step: 0 }, { step: 1 }, { step: 2 }, { step: 3 }]);
    const settled = seen.length;
    // Ten intervals later the timer has not beaten again.
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(seen.length, settled);
  });

  it('a cancellation reaches the work and onCancel, and ends as the activity CancelledFailure after onCancel finished', async () => {
    const env = new MockActivityEnvironment();
    const { reached } = heartbeats(env, 1);
    const events: string[] = [];
    const running = env.run(() =>
      heartbeatWhile(
        (signal) =>
          new Promise<never>((_, reject) => {
            signal.addEventListener('abort', () => {
              events.push('work saw the abort');
              reject(new Error('canceling statement due to user request'));
            });
          }),
        {
          everyMs: 10,
          onCancel: async () => {
            events.push('onCancel started');
            await new Promise((resolve) => setImmediate(resolve));
            events.push('onCancel finished');
          },
        },
      ),
    );
    await reached;
    env.cancel();
    await assert.rejects(running, (error: Error) => error instanceof CancelledFailure);
    assert.deepEqual(events.sort(), ['onCancel finished', 'onCancel started', 'work saw the abort']);
  });

  it('a failure without a cancellation stays the failure', async () => {
    const env = new MockActivityEnvironment();
    await assert.rejects(
      env.run(() => heartbeatWhile(() => Promise.reject(new Error('relation "x" does not exist')))),
      /relation "x" does not exist/,
    );
  });
});

describe('backendCanceller (real Postgres)', () => {
  let cluster: ThrowawayCluster;

  before(async () => {
    cluster = await startThrowawayCluster();
  });
  after(async () => {
    await cluster?.stop();
  });

  it('cancelling the activity cancels the running statement on its connection; the connection stays usable', async () => {
    const client = await cluster.connect();
    const connect = async (fn: (other: Client) => Promise<unknown>) => {
      const other = await cluster.connect();
      try {
        return await fn(other);
      } finally {
        await other.end();
      }
    };
    const watcher = await cluster.connect();
    const env = new MockActivityEnvironment();
    const started = Date.now();
    const running = env.run(async () =>
      heartbeatWhile(() => client.query(`SELECT pg_sleep(60) /* held */`), {
        everyMs: 10,
        onCancel: await backendCanceller(client, connect),
      }),
    );
    // Cancel once the statement is running on the server.
    for (;;) {
      const { rows } = await watcher.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND query LIKE '%/* held */'`,
      );
      if (rows[0]!.n === 1) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    env.cancel();
    await assert.rejects(running, (error: Error) => error instanceof CancelledFailure);
    assert.ok(Date.now() - started < 30_000, 'the sleep was cut short');
    const { rows } = await client.query<{ one: number }>('SELECT 1 AS one');
    assert.equal(rows[0]!.one, 1);
  });
});
