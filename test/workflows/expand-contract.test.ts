import assert from 'node:assert/strict';

import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { Client } from 'pg';

import { createActivities } from '../../activities';
import { deployMigration, expandContract } from '../../workflows';
import type { ExpandContractPhase } from '../../workflows/expand-contract';
import { startLocalInstance, type LocalInstance } from '../helpers/local-instance';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';

const ROWS = 5_000;

/** The columns of conversations and whether each is nullable, e.g. { user_id: 'NO' }. */
async function columns(client: Client): Promise<Record<string, string>> {
  const { rows } = await client.query<{ column_name: string; is_nullable: string }>(
    `SELECT column_name, is_nullable FROM information_schema.columns
      WHERE table_name = 'conversations' AND column_name IN ('user_id', 'user_id_new')`,
  );
  return Object.fromEntries(rows.map((row) => [row.column_name, row.is_nullable]));
}

async function untilPhase(
  handle: WorkflowHandle<typeof expandContract>,
  phase: ExpandContractPhase,
): Promise<void> {
  for (let i = 0; i < 1800; i++) {
    const now = await handle.query<ExpandContractPhase>('phase').catch(() => undefined);
    if (now === phase) return;
    const { status } = await handle.describe();
    if (status.name !== 'RUNNING') assert.fail(`expandContract ended ${status.name} before ${phase}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`expandContract never reached the ${phase} phase`);
}

describe('expandContract workflow (dev server, local instance)', () => {
  let env: TestWorkflowEnvironment;
  let instance: LocalInstance;
  let client: Client;
  let worker: Worker;
  let running: Promise<void>;
  const taskQueue = 'expand-contract';

  before(async () => {
    [env, instance] = await Promise.all([createDevServerEnv(), startLocalInstance('expand-test')]);
    client = await instance.connect();
    worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities(instance.deps),
    });
    running = worker.run();
    // The application's schema before the change, with rows the backfill must copy.
    const schema = await env.client.workflow.execute(deployMigration, {
      taskQueue,
      workflowId: 'expand-schema',
      args: [{ instanceId: instance.instanceId, target: '0004_conversation_chunks_ivfflat_index' }],
    });
    assert.equal(schema.status, 'migrated');
    await client.query(
      `INSERT INTO conversations (user_id, title) SELECT g % 1000, 'c' || g FROM generate_series(1, $1) g`,
      [ROWS],
    );
  });
  after(async () => {
    worker?.shutdown();
    await running?.catch(() => undefined);
    await Promise.all([env?.teardown(), instance?.stop()]);
  });

  it('without the codeDeployed signal it stops after tighten: the old column stays, the contract never runs', async () => {
    const handle = await env.client.workflow.start(expandContract, {
      taskQueue,
      workflowId: 'expand-no-signal',
      args: [
        {
          instanceId: instance.instanceId,
          batchSize: 700,
          codeDeployedTimeout: '3 seconds',
          reminderEvery: '1 second',
        },
      ],
    });
    await assert.rejects(handle.result(), (error: Error) => {
      assert.ok(error instanceof WorkflowFailedError);
      assert.match(
        error.cause?.message ?? '',
        /^no codeDeployed signal within 3 seconds: the contract phase did not run/,
      );
      return true;
    });
    // Tightened: every row copied, the new column NOT NULL; the old one still there for old code.
    assert.deepEqual(await columns(client), { user_id: 'NO', user_id_new: 'NO' });
    const { rows } = await client.query<{ n: number; differ: number }>(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE user_id_new IS DISTINCT FROM user_id)::int AS differ FROM conversations`,
    );
    assert.deepEqual(rows[0], { n: ROWS, differ: 0 });
    const contract = await env.client.workflow
      .getHandle('expand-no-signal-contract')
      .describe()
      .catch(() => undefined);
    assert.equal(contract, undefined, 'no contract child was started');
  });

  it('end to end: expand, backfill child, tighten, waits for codeDeployed, then contract', async () => {
    // A fresh change on the same table (the previous run stopped before the contract).
    await client.query(`ALTER TABLE conversations ALTER COLUMN user_id_new DROP NOT NULL`);
    await client.query(`UPDATE conversations SET user_id_new = NULL WHERE id % 2 = 0`);
    await client.query(`DELETE FROM pgmigrations WHERE name > '0005_user_id_new_expand'`);

    const handle = await env.client.workflow.start(expandContract, {
      taskQueue,
      workflowId: 'expand-e2e',
      args: [{ instanceId: instance.instanceId, batchSize: 700, reminderEvery: '1 second' }],
    });
    await untilPhase(handle, 'awaiting-code-deploy');
    // Waiting through several reminders: the old column is still there.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    assert.equal(await handle.query<ExpandContractPhase>('phase'), 'awaiting-code-deploy');
    assert.deepEqual(await columns(client), { user_id: 'NO', user_id_new: 'NO' });

    await handle.signal('codeDeployed', { by: 'ci-run-42' });
    const result = await handle.result();
    assert.equal(result.codeDeployedBy, 'ci-run-42');
    assert.equal(result.expand.status, 'nothing-to-apply');
    assert.equal(result.backfill.state, 'completed');
    assert.equal(result.backfill.rowsDone, ROWS / 2);
    assert.deepEqual(result.tighten.applied, [
      '0006_user_id_new_not_null_check',
      '0007_user_id_new_validate',
      '0008_user_id_new_set_not_null',
    ]);
    assert.deepEqual(result.contract.applied, ['0009_user_id_new_contract']);
    assert.match(result.contract.snapshotId ?? '', /^pre-migration-\d{8}-\d{6}$/);
    assert.equal(await handle.query<ExpandContractPhase>('phase'), 'done');
    assert.deepEqual(await columns(client), { user_id_new: 'NO' });
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM conversations WHERE user_id_new = (regexp_replace(title, '^c', '')::int % 1000)`,
    );
    assert.equal(rows[0]!.n, ROWS, 'every row kept its user id in the new column');
  });
});
