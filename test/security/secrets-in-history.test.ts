/**
 * No secret in history or logs: every registered workflow type runs end to end on the dev server
 * against a local instance that only accepts the postgres user with a password (scram-sha-256),
 * which the worker gets the way users give it, through PGPASSWORD. The worker and client encrypt
 * payloads as a deployment with codec keys does. Then the complete history of every run (children
 * included) is read as its users would read it: every payload of every event decoded through the
 * configured data converter (payload codec, then payload converter): inputs, results, heartbeat
 * details, signals, memo, search attributes and the encoded message and stack trace of failures
 * at every nesting level. That text, and everything the worker process wrote, is searched for the
 * password. Control runs carrying a marker in each of those places prove the search finds it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

import { Signer } from '@aws-sdk/rds-signer';
import { Client as TemporalClient, WorkflowFailedError } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { Client } from 'pg';

import { createActivities } from '../../activities';
import { ADMIN_USER } from '../../activities/control-plane/local-jobs';
import { createDatabaseConnector, iamAuthToken } from '../../activities/postgres/connect';
import * as workflows from '../../workflows';
import { codeDeployedSignal } from '../../workflows/expand-contract';
import { DbopsInstance } from '../../workflows/lib/search-attributes';
import { loadConfig } from '../../workers/config';
import { seedDemoData } from '../../workers/seed';
import { dataConverter } from '../../workers/temporal-connection';
import { localActivityDeps } from '../helpers/activity-deps';
import { decodeHistory } from '../helpers/decoded-history';
import { startLocalInstance, type LocalInstance } from '../helpers/local-instance';
import { startThrowawayCluster } from '../helpers/postgres';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';
import { makeTestPki } from '../helpers/tls';

const SOURCE = 'secrets-src';
const fast = { pollInterval: '1 second' };
/** A password no workflow could produce by chance: a random marker. */
const PASSWORD = `pw-marker-${randomBytes(12).toString('hex')}`;
/** What the control runs carry, where the password must not be: the search has to find it. */
const CONTROL = `control-marker-${randomBytes(12).toString('hex')}`;
/** Payload encryption as a deployment with codec keys has it (DBOPS_CODEC_KEY). */
const CODEC_ENV = { DBOPS_CODEC_KEY: randomBytes(32).toString('base64'), DBOPS_CODEC_KEY_ID: 'secrets-k1' };

/** The history as the server stores it (protobuf bytes): what anyone with access to Temporal reads. */
function storedBytes(history: temporal.api.history.v1.IHistory): Buffer {
  return Buffer.from(temporal.api.history.v1.History.encode(history).finish());
}

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
  /** The worker's and client's data converter: the codec the configuration above builds. */
  let converter: DataConverter;
  /** A client with that converter (the dbops CLI's). */
  let codecClient: TemporalClient;
  let worker: Worker;
  let running: Promise<void>;
  let output: ReturnType<typeof captureOutput>;
  const savedPassword = process.env.PGPASSWORD;
  const taskQueue = 'secrets-in-history';

  before(async () => {
    [env, instance] = await Promise.all([createDevServerEnv(), startLocalInstance(SOURCE)]);
    await seedDemoData(instance.endpoint, { conversations: 40, chunksPerConversation: 1 });
    // From here on the instance (and every copy restored from it) wants the password over TCP,
    // for the endpoint's user and for the superuser the provider works as.
    const admin = new Client({ ...instance.endpoint, user: ADMIN_USER });
    await admin.connect();
    for (const user of new Set([ADMIN_USER, instance.endpoint.user])) {
      await admin.query(`ALTER USER ${user} PASSWORD '${PASSWORD}'`);
    }
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
    await admin.end();
    process.env.PGPASSWORD = PASSWORD;
    converter = dataConverter(loadConfig(CODEC_ENV).temporal)!;
    codecClient = new TemporalClient({ connection: env.connection, dataConverter: converter });
    output = captureOutput();
    // Built like workers/worker.ts: the workflow code is bundled with the codec's failure converter.
    worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowsPath: require.resolve('../../workflows'),
      dataConverter: converter,
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
      await assert.rejects(
        client.connect(),
        new RegExp(`password authentication failed for user "${instance.endpoint.user}"`),
      );
    } finally {
      process.env.PGPASSWORD = saved;
    }
  });

  it('control: the decoded search finds a marker given to a run in its input, memo, a signal, a search attribute or a failure (nested), none of it readable in the stored bytes', async () => {
    const client = codecClient.workflow;
    // Nobody polls this queue: these runs wait with what they were given until terminated.
    const parked = (workflowId: string) => ({ taskQueue: 'secrets-no-worker', workflowId });
    const handles = [
      await client.start('ping', { ...parked('control-input'), args: [{ note: CONTROL }] }),
      await client.start('ping', { ...parked('control-memo'), memo: { note: CONTROL } }),
      await client.start('ping', parked('control-signal')),
      await client.start('ping', {
        ...parked('control-search-attribute'),
        typedSearchAttributes: [{ key: DbopsInstance, value: CONTROL }],
      }),
    ];
    await handles[2]!.signal('note', { note: CONTROL });
    for (const handle of handles) await handle.terminate('control run');
    // A real failure: the activity refuses the backfill name, quoting it; the worker encodes it.
    await assert.rejects(
      client.execute(workflows.backfill, {
        taskQueue,
        workflowId: 'control-failure',
        args: [{ instanceId: SOURCE, name: CONTROL }],
      }),
      (error: unknown) =>
        error instanceof WorkflowFailedError &&
        [error.cause, error.cause?.cause as Error | undefined].some((cause) =>
          cause?.message.includes(CONTROL),
        ),
      'a client with the codec reads the failure message',
    );

    // Where each control run must show the marker once decoded, and whether its stored bytes do
    // too: search attributes are the one payload the server must read (to index), so the codec
    // leaves them alone; the old search of the history as JSON missed them all the same.
    const expected: [string, RegExp, 'encrypted' | 'indexed'][] = [
      [
        'control-input',
        /^events\[0\]\.workflowExecutionStartedEventAttributes\.input\.payloads\[0\]$/,
        'encrypted',
      ],
      [
        'control-memo',
        /^events\[0\]\.workflowExecutionStartedEventAttributes\.memo\.fields\.note$/,
        'encrypted',
      ],
      ['control-signal', /\.workflowExecutionSignaledEventAttributes\.input\.payloads\[0\]$/, 'encrypted'],
      [
        'control-search-attribute',
        /^events\[0\]\.workflowExecutionStartedEventAttributes\.searchAttributes\.indexedFields\.DbopsInstance$/,
        'indexed',
      ],
      ['control-failure', /\.activityTaskFailedEventAttributes\.failure\.encodedAttributes$/, 'encrypted'],
      [
        'control-failure',
        /\.workflowExecutionFailedEventAttributes\.failure\.cause\.encodedAttributes$/,
        'encrypted',
      ],
    ];
    for (const [workflowId, place, stored] of expected) {
      const history = await env.client.workflow.getHandle(workflowId).fetchHistory();
      assert.ok(!JSON.stringify(history).includes(CONTROL), `${workflowId}: found by the search of the JSON`);
      assert.equal(
        storedBytes(history).includes(CONTROL),
        stored === 'indexed',
        `${workflowId}: the stored bytes show the marker`,
      );
      const found = (await decodeHistory(history, converter)).find(CONTROL);
      assert.ok(
        found.some((path) => place.test(path)),
        `${workflowId}: the marker not found at ${place.source} (found at: ${found.join(', ') || 'nowhere'})`,
      );
    }

    // Failure messages and stack traces are stored encrypted: the stored history has neither the
    // error text nor a stack frame, and decoded both are there.
    const history = await env.client.workflow.getHandle('control-failure').fetchHistory();
    const stored = storedBytes(history);
    const decoded = await decodeHistory(history, converter);
    for (const text of ['no backfill named', 'activities/postgres/backfill.ts']) {
      assert.ok(!stored.includes(text), `the stored history shows ${JSON.stringify(text)} in clear text`);
      assert.ok(
        decoded.find(text).some((path) => path.endsWith('failure.encodedAttributes')),
        `decoded, the failure shows ${JSON.stringify(text)}`,
      );
    }
  });

  it('runs every registered workflow type; no history (every payload decoded) and no log line contains the password', async () => {
    const run = <T>(workflowId: string, started: Promise<T>) => started.then((r) => [workflowId, r] as const);
    const client = codecClient.workflow;
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
    // expandContract runs the declared change (its backfill a child, listed below) up to its wait
    // for the new code, then on through the contract.
    const change = await client.start(workflows.expandContract, {
      taskQueue,
      workflowId: 's-expand',
      args: [{ instanceId: SOURCE, change: 'user-id-bigint', batchSize: 10, reminderEvery: '1 second' }],
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
    // The health check of every managed instance (the source: restored copies are not managed), as a child.
    results.push(
      await run(
        's-fleet',
        client.execute(workflows.fleet, {
          taskQueue,
          workflowId: 's-fleet',
          args: [{ operation: 'healthCheck' }],
        }),
      ),
    );

    // Retention over the source's snapshots (all younger than the policy's days: each one kept).
    results.push(
      await run(
        's-retention',
        client.execute(workflows.retention, {
          taskQueue,
          workflowId: 's-retention',
          args: [{ instanceId: SOURCE }],
        }),
      ),
    );

    // The seeded chunks' HNSW index rebuilt, then the recall of every vector index.
    results.push(
      await run(
        's-vector-index',
        client.execute(workflows.vectorIndex, {
          taskQueue,
          workflowId: 's-vector-index',
          args: [
            {
              instanceId: SOURCE,
              action: 'rebuild',
              table: 'conversation_chunks',
              column: 'embedding',
              method: 'hnsw',
              index: 'conversations_embedding_idx',
              m: 12,
              minRecall: 0,
            },
          ],
        }),
      ),
    );
    results.push(
      await run(
        's-vector-recall',
        client.execute(workflows.vectorRecall, {
          taskQueue,
          workflowId: 's-vector-recall',
          args: [{ instanceId: SOURCE, filterColumn: 'conversation_id', sampleSize: 5 }],
        }),
      ),
    );

    // Every execution on the server, children included, and every registered type among them.
    const types = new Set<string>();
    let scanned = 0;
    for await (const execution of client.list()) {
      types.add(execution.type);
      const history = await client.getHandle(execution.workflowId, execution.runId).fetchHistory();
      const decoded = await decodeHistory(history, converter);
      assert.ok(decoded.payloads > 0, `${execution.workflowId}: payloads decoded`);
      assert.deepEqual(
        decoded.find(PASSWORD),
        [],
        `the password appears in the history of ${execution.workflowId}`,
      );
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
        // That worker has no codec: its payloads decode with the SDK's default converter.
        const history = await decodeHistory(await env.client.workflow.getHandle(id).fetchHistory());
        assert.ok(history.payloads > 0, `${id}: payloads decoded`);
        for (const token of tokens) {
          assert.deepEqual(history.find(token), [], `an IAM token appears in the history of ${id}`);
          // The signature is the secret part; it must not leak on its own either.
          const signature = /X-Amz-Signature=([0-9a-f]+)/.exec(token)![1]!;
          assert.deepEqual(
            history.find(signature),
            [],
            `an IAM token signature appears in the history of ${id}`,
          );
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
