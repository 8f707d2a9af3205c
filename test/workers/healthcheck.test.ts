import assert from 'node:assert/strict';
import os from 'node:os';

import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';

import { createActivities } from '../../activities';
import type { TemporalConfig } from '../../workers/config';
import { pollerOfHost, workflowPollers } from '../../workers/healthcheck';
import { localActivityDeps } from '../helpers/activity-deps';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';

describe('worker health check (the container HEALTHCHECK)', () => {
  let env: TestWorkflowEnvironment;
  before(async () => {
    env = await createDevServerEnv();
  });
  after(async () => {
    await env?.teardown();
  });

  const temporal: TemporalConfig = {
    address: 'unused',
    namespace: 'default',
    taskQueue: 'healthcheck-test',
    uiPort: 0,
    shutdownGraceTime: '5 minutes',
  };

  it('is unhealthy before a worker of this host polls the task queue, healthy while one does', async () => {
    const before = await workflowPollers(env.connection, temporal);
    assert.equal(pollerOfHost(before, os.hostname(), new Date()), undefined);

    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: temporal.taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities(
        localActivityDeps({ host: 'localhost', port: 1, database: 'x', user: 'x' }),
      ),
    });
    const seen = await worker.runUntil(async () => {
      // The server lists a poller once its first long poll has arrived.
      for (let attempt = 0; attempt < 100; attempt += 1) {
        const poller = pollerOfHost(
          await workflowPollers(env.connection, temporal),
          os.hostname(),
          new Date(),
        );
        if (poller) return poller;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return undefined;
    });
    assert.ok(seen, `no poller of ${os.hostname()} on ${temporal.taskQueue}`);
    assert.match(seen.identity, new RegExp(`^\\d+@${os.hostname()}$`));
  });

  it('a poller of another host, or one not seen for longer than the limit, does not count', () => {
    const now = new Date('2026-01-01T00:10:00Z');
    const pollers = [
      { identity: '7@other-host', lastAccessTime: new Date('2026-01-01T00:09:59Z') },
      { identity: '8@this-host', lastAccessTime: new Date('2026-01-01T00:05:00Z') },
    ];
    assert.equal(pollerOfHost(pollers, 'this-host', now), undefined);
    assert.equal(pollerOfHost(pollers, 'other-host', now)?.identity, '7@other-host');
  });
});
