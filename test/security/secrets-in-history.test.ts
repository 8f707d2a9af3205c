/**
 * No secret in history or logs: every registered workflow type runs end to end on the dev server
 * against a local instance that only accepts the postgres user with a password (scram-sha-256),
 * which the worker gets the way users give it, through PGPASSWORD. Then the complete history of
 * every run (children included) and everything the worker process wrote are searched for it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Signer } from '@aws-sdk/rds-signer';
import { Worker } from '@temporalio/worker';
import { Client } from 'pg';

import { createActivities } from '../../activities';
import { createDatabaseConnector, iamAuthToken } from '../../activities/postgres/connect';
import * as workflows from '../../workflows';
import { codeDeployedSignal } from '../../workflows/expand-contract';
import { seedDemoData } from '../../workers/seed';
import { localActivityDeps } from '../helpers/activity-deps';
import { startLocalInstance, type LocalInstance } from '../helpers/local-instance';
import { startThrowawayCluster } from '../helpers/postgres';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';
import { makeTestPki } from '../helpers/tls';

const SOURCE = 'secrets-src';
const fast = { pollInterval: '1 second' };
/** A password no workflow could produce by chance: a random marker. */
const PASSWORD = `pw-marker-${randomBytes(12).toString('hex')}`;

/** Tees everything the process writes to stdout/stderr (the worker's and the SDK runtime's logs). */
function captureOutput(): { text(): string; restore(): void } {
  const chunks: string[] = [];
  const streams = [process.stdout, process.stderr];
  const originals = streams.map((stream) => stream.write.bind(stream));
  streams.forEach((stream, i) => {
    stream.write = (chunk: string | Uint8Array, ...rest: never[]) => {
      chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
      return originals[i]!(chunk, ...rest);
    };
  });
  return {
    text: () => chunks.join(''),
    restore() {
      streams.forEach((stream, i) => (stream.write = originals[i]!));
    },
  };
}

describe('no secret in workflow history or worker logs (dev server, password-only local instance)', function () {
  this.timeout(600_000);
  let env: TestWorkflowEnvironment;
  let instance: LocalInstance;
  let worker: Worker;
  let running: Promise<void>;
  let output: ReturnType<typeof captureOutput>;
  const savedPassword = process.env.PGPASSWORD;
  const taskQueue = 'secrets-in-history';

  before(async () => {
    [env, instance] = await Promise.all([createDevServerEnv(), startLocalInstance(SOURCE)]);
    await seedDemoData(instance.endpoint, { conversations: 40, chunksPerConversation: 1 });
    // From here on the instance (and every copy restored from it) wants the password over TCP.
    const admin = await instance.connect();
    await admin.query(`ALTER USER postgres PASSWORD '${PASSWORD}'`);
    const { rows } = await admin.query<{ setting: string }>(
      `SELECT setting FROM pg_settings WHERE name = 'data_directory'`,
    );
    await writeFile(
      path.join(rows[0]!.setting, 'pg_hba.conf'),
      [
        'local all all trust',
        'host all all 127.0.0.1/32 scram-sha-256',
        'host replication all 127.0.0.1/32 scram-sha-256',
        '',
      ].join('\n'),
    );
    await admin.query('SELECT pg_reload_conf()');
    process.env.PGPASSWORD = PASSWORD;
    output = captureOutput();
    worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities: createActivities(instance.deps),
    });
    running = worker.run();
  });
  after(async () => {
    output?.restore();
    worker?.shutdown();
    await running?.catch(() => undefined);
    for (const other of (await instance?.plane.listInstances().catch(() => [])) ?? []) {
      if (other.instanceId !== SOURCE) {
        await instance.plane
          .deleteInstance(other.instanceId, { skipFinalSnapshot: true })
          .catch(() => undefined);
      }
    }
    await Promise.all([env?.teardown(), instance?.stop()]);
    if (savedPassword === undefined) delete process.env.PGPASSWORD;
    else process.env.PGPASSWORD = savedPassword;
  });

  it('the instance refuses a connection without the password (so the runs below used it)', async () => {
    const saved = process.env.PGPASSWORD;
    delete process.env.PGPASSWORD;
    try {
      const client = new Client({ ...instance.endpoint, password: 'wrong' });
      await assert.rejects(client.connect(), /password authentication failed for user "postgres"/);
    } finally {
      process.env.PGPASSWORD = saved;
    }
  });

  it('runs every registered workflow type; no history and no log line contains the password', async () => {
    const run = <T>(workflowId: string, started: Promise<T>) => started.then((r) => [workflowId, r] as const);
    const client = env.client.workflow;
    const results = [];
    results.push(await run('s-ping', client.execute(workflows.ping, { taskQueue, workflowId: 's-ping' })));
    results.push(
      await run(
        's-health',
        client.execute(workflows.healthCheck, {
          taskQueue,
          workflowId: 's-health',
          args: [{ instanceId: SOURCE }],
        }),
      ),
    );
    results.push(
      await run(
        's-maintenance',
        client.execute(workflows.maintenance, {
          taskQueue,
          workflowId: 's-maintenance',
          args: [{ instanceId: SOURCE, tables: ['conversations'] }],
        }),
      ),
    );
    results.push(
      await run(
        's-deploy',
        client.execute(workflows.deployMigration, {
          taskQueue,
          workflowId: 's-deploy',
          args: [{ instanceId: SOURCE }],
        }),
      ),
    );
    results.push(
      await run(
        's-plan-change',
        client.execute(workflows.planChange, {
          taskQueue,
          workflowId: 's-plan-change',
          args: [{ instanceId: SOURCE, change: 'user-id-bigint' }],
        }),
      ),
    );
    // The declared change up to its wait for the new code, then aborted: the table is as before.
    const declared = await client.start(workflows.declaredChange, {
      taskQueue,
      workflowId: 's-declared',
      args: [{ instanceId: SOURCE, change: 'user-id-bigint', batchSize: 10 }],
    });
    for (let i = 0; i < 1200; i++) {
      const stage = await declared
        .query<{ stage: string }>('progress')
        .then((p) => p.stage)
        .catch(() => undefined);
      if (stage === 'awaiting-code-deploy') break;
      if ((await declared.describe()).status.name !== 'RUNNING') await declared.result(); // throws its failure
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await declared.signal('abort', { by: 'ci' });
    results.push(['s-declared', await declared.result()] as const);
    // expandContract runs deployMigration and backfill as children: their histories are listed below.
    const change = await client.start(workflows.expandContract, {
      taskQueue,
      workflowId: 's-expand',
      args: [{ instanceId: SOURCE, batchSize: 10, reminderEvery: '1 second' }],
    });
    for (let i = 0; i < 1200; i++) {
      if ((await change.query<string>('phase').catch(() => undefined)) === 'awaiting-code-deploy') break;
      if ((await change.describe()).status.name !== 'RUNNING') await change.result(); // throws its failure
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await change.signal(codeDeployedSignal, { by: 'ci' });
    results.push(['s-expand', await change.result()] as const);
    const backup = await client.execute(workflows.backup, {
      taskQueue,
      workflowId: 's-backup',
      args: [{ instanceId: SOURCE, timeouts: fast }],
    });
    results.push(['s-backup', backup] as const);
    results.push(
      await run(
        's-pitr',
        client.execute(workflows.pitrRestore, {
          taskQueue,
          workflowId: 's-pitr',
          args: [
            { instanceId: SOURCE, restoreTime: 'latest', targetInstanceId: 'secrets-pitr', timeouts: fast },
          ],
        }),
      ),
    );
    results.push(
      await run(
        's-snapshot',
        client.execute(workflows.snapshotRestore, {
          taskQueue,
          workflowId: 's-snapshot',
          args: [{ snapshotId: backup.snapshotId, targetInstanceId: 'secrets-snap', timeouts: fast }],
        }),
      ),
    );
    const report = await client.execute(workflows.drTest, {
      taskQueue,
      workflowId: 's-dr',
      args: [{ instanceId: SOURCE, timeouts: fast }],
    });
    assert.equal(report.ok, true, JSON.stringify(report));
    results.push(['s-dr', report] as const);
    results.push(
      await run(
        's-sweep',
        client.execute(workflows.sweepOrphans, {
          taskQueue,
          workflowId: 's-sweep',
          args: [{ timeouts: fast }],
        }),
      ),
    );

    // Every execution on the server, children included, and every registered type among them.
    const types = new Set<string>();
    let scanned = 0;
    for await (const execution of client.list()) {
      types.add(execution.type);
      const history = await client.getHandle(execution.workflowId, execution.runId).fetchHistory();
      const json = JSON.stringify(history);
      assert.ok(json.length > 500, `${execution.workflowId}: history fetched`);
      assert.ok(!json.includes(PASSWORD), `the password appears in the history of ${execution.workflowId}`);
      scanned++;
    }
    assert.deepEqual([...types].sort(), Object.keys(workflows).sort());
    assert.ok(scanned >= results.length);
    const logs = output.text();
    assert.ok(logs.length > 0, 'the worker wrote log lines');
    assert.ok(!logs.includes(PASSWORD), 'the password appears in the worker output');
  });

  it("IAM auth over TLS: no token generated during ping, healthCheck and maintenance runs appears in their histories or the worker output (PostgreSQL stands in for RDS: one real token is the role's password)", async () => {
    const pki = await makeTestPki();
    const cluster = await startThrowawayCluster({}, pki.server);
    const tokens: string[] = [];
    const generate = Object.getOwnPropertyDescriptor(Signer.prototype, 'getAuthToken')!.value as (
      this: Signer,
    ) => Promise<string>;
    const iamWorkerQueue = 'secrets-iam';
    try {
      const admin = await cluster.connect();
      await admin.query(`CREATE ROLE dbops_iam LOGIN SUPERUSER PASSWORD 'not-a-token'`);
      await writeFile(
        path.join(cluster.dataDir, 'pg_hba.conf'),
        [
          'local all all trust',
          'hostssl all dbops_iam 127.0.0.1/32 password',
          'host all dbops_iam 127.0.0.1/32 reject',
          'host all all 127.0.0.1/32 trust',
          '',
        ].join('\n'),
      );
      await admin.query('SELECT pg_reload_conf()');
      const primary = { ...cluster.database, user: 'dbops_iam' };
      const iam = {
        region: 'us-east-1',
        credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret' },
      };
      // PostgreSQL can only check a password it knows (RDS checks the signature instead): one real
      // token, made before the run, is the role's password, and the signer hands out that one. The
      // tokens the connector's signer makes during the run are recorded and searched for as well.
      const accepted = await iamAuthToken(primary, iam);
      tokens.push(accepted);
      await admin.query(`ALTER ROLE dbops_iam PASSWORD '${accepted.replace(/'/g, "''")}'`);
      Signer.prototype.getAuthToken = async function (this: Signer) {
        tokens.push(await generate.call(this));
        return accepted;
      };
      const iamWorker = await Worker.create({
        connection: env.nativeConnection,
        taskQueue: iamWorkerQueue,
        workflowBundle: await workflowBundle(),
        activities: createActivities({
          ...localActivityDeps(primary),
          connector: createDatabaseConnector({
            primary,
            caBundlePath: pki.ca,
            iam,
            requireTls: true,
          }),
        }),
      });
      const ids = ['iam-ping', 'iam-health', 'iam-maintenance'];
      await iamWorker.runUntil(async () => {
        const client = env.client.workflow;
        const ping = await client.execute(workflows.ping, { taskQueue: iamWorkerQueue, workflowId: ids[0]! });
        assert.equal(ping.database, 'postgres', JSON.stringify(ping));
        await client.execute(workflows.healthCheck, {
          taskQueue: iamWorkerQueue,
          workflowId: ids[1]!,
          args: [{}],
        });
        await client.execute(workflows.maintenance, {
          taskQueue: iamWorkerQueue,
          workflowId: ids[2]!,
          args: [{}],
        });
      });
      assert.ok(tokens.length >= 4, `tokens generated during the run: ${tokens.length - 1}`);
      const logs = output.text();
      for (const id of ids) {
        const history = JSON.stringify(await env.client.workflow.getHandle(id).fetchHistory());
        for (const token of tokens) {
          assert.ok(!history.includes(token), `an IAM token appears in the history of ${id}`);
          // The signature is the secret part; it must not leak on its own either.
          const signature = /X-Amz-Signature=([0-9a-f]+)/.exec(token)![1]!;
          assert.ok(!history.includes(signature), `an IAM token signature appears in the history of ${id}`);
          assert.ok(!logs.includes(signature), 'an IAM token signature appears in the worker output');
        }
      }
    } finally {
      Signer.prototype.getAuthToken = generate;
      await cluster.stop();
      await pki.remove();
    }
  });
});
