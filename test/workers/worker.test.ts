import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { temporal as proto } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';

import { createActivities } from '../../activities';
import { ping } from '../../workflows';
import { loadConfig } from '../../workers/config';
import { connectClient } from '../../workers/temporal-connection';
import { activityDepsFromConfig, createWorker } from '../../workers/worker';
import { startThrowawayCluster, type ThrowawayCluster } from '../helpers/postgres';
import { createDevServerEnv } from '../helpers/temporal';

/** The database's name comes back in the ping result: it must not be readable in the history. */
const DATABASE = 'marker_db_9e4b27';

describe('the dbops worker and client with payload encryption configured (dev server, real PostgreSQL)', () => {
  let env: TestWorkflowEnvironment;
  let cluster: ThrowawayCluster;
  let dir: string;

  before(async () => {
    [env, cluster, dir] = await Promise.all([
      createDevServerEnv(),
      startThrowawayCluster(),
      mkdtemp(path.join(os.tmpdir(), 'dbops-worker-')),
    ]);
    const admin = await cluster.connect();
    await admin.query(`CREATE DATABASE ${DATABASE}`);
    await writeFile(
      path.join(dir, 'keys.json'),
      JSON.stringify({ current: 'k1', keys: { k1: randomBytes(32).toString('base64') } }),
    );
  });
  after(async () => {
    await Promise.all([env?.teardown(), cluster?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('runs a workflow through createWorker and connectClient; the stored history holds only ciphertext', async () => {
    const config = loadConfig({
      TEMPORAL_ADDRESS: env.address,
      DBOPS_TASK_QUEUE: 'worker-codec',
      DBOPS_CODEC_KEYS_FILE: path.join(dir, 'keys.json'),
      DBOPS_STATE_DIR: dir,
      PGHOST: '127.0.0.1',
      PGPORT: String(cluster.database.port),
      PGDATABASE: DATABASE,
      PGUSER: 'postgres',
    });
    const { worker, close } = await createWorker(config.temporal, activityDepsFromConfig(config));
    const { connection, client } = await connectClient(config.temporal);
    const workflowId = `ping-encrypted-${Date.now()}`;
    try {
      const result = await worker.runUntil(
        client.workflow.execute(ping, { taskQueue: config.temporal.taskQueue, workflowId }),
      );
      assert.equal(result.database, DATABASE, 'the client decrypts what the worker wrote');
    } finally {
      await connection.close();
      await close();
    }
    const history = await env.client.workflow.getHandle(workflowId).fetchHistory();
    const stored = Buffer.from(proto.api.history.v1.History.encode(history).finish());
    assert.ok(!stored.includes(DATABASE), 'the result is not readable in the stored history');
    const completed = history.events!.find((event) => event.workflowExecutionCompletedEventAttributes);
    const payload = completed!.workflowExecutionCompletedEventAttributes!.result!.payloads![0]!;
    assert.equal(Buffer.from(payload.metadata!.encoding!).toString(), 'binary/encrypted');
    assert.equal(Buffer.from(payload.metadata!['encryption-key-id']!).toString(), 'k1');
  });
});

describe("the worker's activities with rollout hooks configured (DBOPS_ROLLOUT_HOOKS)", () => {
  it("a deploy's named hook runs the configured command with the instance and the applied migrations", async () => {
    const config = loadConfig({
      DBOPS_ROLLOUT_HOOKS: JSON.stringify({
        announce: {
          command: [
            process.execPath,
            '-e',
            'console.log(`rolled out ${process.env.DBOPS_INSTANCE_ID}: ${process.env.DBOPS_APPLIED_MIGRATIONS}`)',
          ],
        },
      }),
    });
    const activities = createActivities(activityDepsFromConfig(config));
    assert.deepEqual(
      await activities.runRolloutHook({
        hook: 'announce',
        instanceId: 'mcp-demo-prod',
        applied: ['0100_add_note', '0101_index_note'],
      }),
      { hook: 'announce', output: 'rolled out mcp-demo-prod: 0100_add_note,0101_index_note\n' },
    );
    await assert.rejects(
      activities.runRolloutHook({ hook: 'web', instanceId: 'mcp-demo-prod', applied: [] }),
      /rolloutHook: no hook named "web" on this worker \(configured: announce\)/,
    );
  });
});
