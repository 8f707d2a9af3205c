import assert from 'node:assert/strict';

import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { ActivityFailure, WorkflowFailedError } from '@temporalio/client';
import { Worker } from '@temporalio/worker';

import { createActivities } from '../../activities';
import { ping } from '../../workflows';
import { localActivityDeps } from '../helpers/activity-deps';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';
import { startThrowawayCluster, type ThrowawayCluster } from '../helpers/postgres';

describe('ping workflow', () => {
  let env: TestWorkflowEnvironment;
  let cluster: ThrowawayCluster;
  before(async () => {
    [env, cluster] = await Promise.all([createDevServerEnv(), startThrowawayCluster()]);
  });
  after(async () => {
    await Promise.all([env?.teardown(), cluster?.stop()]);
  });

  it('reaches the real database through the worker', async () => {
    const client = await cluster.connect();
    await client.query('CREATE EXTENSION vector');
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'ping-test',
      workflowBundle: await workflowBundle(),
      activities: createActivities(localActivityDeps(cluster.database)),
    });
    const result = await worker.runUntil(
      env.client.workflow.execute(ping, { taskQueue: 'ping-test', workflowId: 'ping-1' }),
    );
    assert.equal(result.database, 'postgres');
    assert.match(result.serverVersion, /^15\./);
    assert.equal(result.pgvectorVersion, '0.8.0');
  });

  it('fails with the connection error when the database is down', async () => {
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'ping-down',
      workflowBundle: await workflowBundle(),
      activities: createActivities(localActivityDeps({ ...cluster.database, port: 1 })),
    });
    await assert.rejects(
      worker.runUntil(env.client.workflow.execute(ping, { taskQueue: 'ping-down', workflowId: 'ping-down' })),
      (error: unknown) =>
        error instanceof WorkflowFailedError &&
        error.cause instanceof ActivityFailure &&
        /ECONNREFUSED/.test(error.cause.cause?.message ?? ''),
    );
  });
});
