import assert from 'node:assert/strict';

import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';

import { sleepThirtyDays } from '../fixtures/sleep-workflow';
import { searchAttributeKeys } from '../../workflows/lib/search-attributes';
import { createDevServerEnv, createTimeSkippingEnv } from './temporal';

describe('Temporal dev server (installed binary)', () => {
  let env: TestWorkflowEnvironment;
  before(async () => {
    env = await createDevServerEnv();
  });
  after(async () => {
    await env?.teardown();
  });

  it('registers the project search attributes', async () => {
    const { customAttributes } = await env.connection.operatorService.listSearchAttributes({
      namespace: env.namespace ?? 'default',
    });
    for (const key of searchAttributeKeys) {
      assert.ok(customAttributes[key.name] !== undefined, `${key.name} is not registered`);
    }
  });
});

describe('Temporal time-skipping test server (Java)', () => {
  let env: TestWorkflowEnvironment;
  before(async () => {
    env = await createTimeSkippingEnv();
  });
  after(async () => {
    await env?.teardown();
  });

  it('completes a workflow that sleeps 30 days (within the test timeout)', async () => {
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: 'time-skipping',
      workflowsPath: require.resolve('../fixtures/sleep-workflow'),
    });
    const elapsedMs = await worker.runUntil(
      env.client.workflow.execute(sleepThirtyDays, {
        taskQueue: 'time-skipping',
        workflowId: 'sleep-30-days',
      }),
    );
    assert.ok(elapsedMs >= 30 * 24 * 3600 * 1000, `workflow time advanced only ${elapsedMs} ms`);
  });
});
