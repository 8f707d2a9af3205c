import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

import { Context } from '@temporalio/activity';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { temporal as proto } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';

import { projectRoot } from '../../activities/config-types';
import { freePort } from '../../activities/ports';
import { AesGcmPayloadCodec } from '../../workers/codec/aes-gcm-codec';
import { CodecKeyRing } from '../../workers/codec/keys';
import { codecServerFromConfig, toJson, type JsonPayload } from '../../workers/codec-server';
import { ConfigError, loadConfig, type TemporalConfig } from '../../workers/config';
import { connectClient, connectWorker, dataConverter } from '../../workers/temporal-connection';
import { requireTool } from '../../workers/tools';
import type { carryNote, failWithNote, NoteActivities } from '../fixtures/codec-workflow';
import { createDevServerEnv } from '../helpers/temporal';

const execFileAsync = promisify(execFile);

/** What must not be readable without the key. */
const MARKER = 'plaintext-marker-5c1d2e';
const UI_ORIGIN = 'http://localhost:8233';
const TOKEN = randomBytes(32).toString('hex');
const K1 = randomBytes(32).toString('base64');
const K2 = randomBytes(32).toString('base64');

const activities: NoteActivities = {
  echoNote(note: string) {
    Context.current().heartbeat(note);
    return Promise.resolve(note);
  },
};

/** The whole history as the server stores it (protobuf) and as JSON (bytes in base64): where a plaintext would show. */
async function storedHistory(client: Client, workflowId: string) {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const History = proto.api.history.v1.History;
  return {
    history,
    bytes: Buffer.from(History.encode(history).finish()),
    json: JSON.stringify(History.toObject(History.fromObject(history), { bytes: String, longs: String })),
  };
}

function startedInput(history: proto.api.history.v1.IHistory): Payload[] {
  return history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads ?? [];
}

const text = (bytes: Uint8Array | null | undefined) => Buffer.from(bytes ?? new Uint8Array()).toString();

describe('payload encryption on the dev server, and dbops codec-server', () => {
  let env: TestWorkflowEnvironment;
  let dir: string;
  let bundle: WorkflowBundleWithSourceMap;
  /** Configurations as a deployment would have them before and after rotating to k2. */
  let underK1: TemporalConfig;
  let rotated: TemporalConfig;
  let onlyK2: TemporalConfig;
  const closers: (() => Promise<void>)[] = [];

  /** The task queue names the key file too. */
  const configFor = (extra: Record<string, string>, taskQueue: string) =>
    loadConfig({
      TEMPORAL_ADDRESS: env.address,
      DBOPS_TASK_QUEUE: taskQueue,
      DBOPS_CODEC_KEYS_FILE: path.join(dir, `${taskQueue}.json`),
      DBOPS_CODEC_SERVER_TOKEN: TOKEN,
      ...extra,
    });

  /** Runs a worker of the fixture workflows with the configuration's connection and codec until the suite ends. */
  async function startWorker(temporal: TemporalConfig): Promise<void> {
    const connection = await connectWorker(temporal);
    const converter = dataConverter(temporal);
    const worker = await Worker.create({
      connection,
      namespace: temporal.namespace,
      taskQueue: temporal.taskQueue,
      workflowBundle: bundle,
      activities,
      ...(converter === undefined ? {} : { dataConverter: converter }),
    });
    const running = worker.run();
    closers.push(async () => {
      worker.shutdown();
      await running;
      await connection.close();
    });
  }

  async function clientOf(temporal: TemporalConfig): Promise<Client> {
    const { client, connection } = await connectClient(temporal);
    closers.push(() => connection.close());
    return client;
  }

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'dbops-codec-'));
    const writeKeys = (name: string, keys: object) =>
      writeFile(path.join(dir, `${name}.json`), JSON.stringify(keys));
    await writeKeys('codec-k1', { current: 'k1', keys: { k1: K1 } });
    await writeKeys('codec-k2', { current: 'k2', keys: { k1: K1, k2: K2 } });
    await writeKeys('codec-only-k2', { current: 'k2', keys: { k2: K2 } });
    [env, bundle] = await Promise.all([
      createDevServerEnv(),
      // One bundle for both workers; it carries the failure converter the codec's data converter names.
      bundleWorkflowCode({
        workflowsPath: require.resolve('../fixtures/codec-workflow'),
        failureConverterPath: require.resolve('../../workers/codec/failure-converter'),
        logger: {
          log: () => undefined,
          trace: () => undefined,
          debug: () => undefined,
          info: () => undefined,
          warn: () => undefined,
          error: (m: string) => console.error(m),
        },
      }),
    ]);
    underK1 = configFor({}, 'codec-k1').temporal;
    rotated = configFor({}, 'codec-k2').temporal;
    onlyK2 = configFor({}, 'codec-only-k2').temporal;
    await startWorker(underK1);
  });
  after(async () => {
    for (const close of closers.reverse()) await close();
    await env?.teardown();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  let server: http.Server;
  let endpoint: string;
  before(async () => {
    // The codec server as `dbops codec-server` builds it, with the rotated key set.
    server = codecServerFromConfig(configFor({ DBOPS_CODEC_SERVER_ORIGINS: UI_ORIGIN }, 'codec-k2'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

  const post = (route: string, body: unknown, headers: Record<string, string>) =>
    fetch(`${endpoint}${route}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  const authorised = { authorization: `Bearer ${TOKEN}`, origin: UI_ORIGIN, 'x-namespace': 'default' };

  let k1Run: { workflowId: string; input: JsonPayload[] };

  it('with the codec on, nothing of the run is readable in its history without the key (control: the same scan finds an unencrypted run)', async () => {
    const client = await clientOf(underK1);
    const workflowId = `carry-note-${Date.now()}`;
    const result = await client.workflow.execute<typeof carryNote>('carryNote', {
      taskQueue: underK1.taskQueue,
      workflowId,
      args: [{ note: MARKER }],
      memo: { note: MARKER },
    });
    assert.deepEqual(result, { note: MARKER }, 'the worker and the client decrypt each other');

    const failedId = `fail-with-note-${Date.now()}`;
    await assert.rejects(
      client.workflow.execute<typeof failWithNote>('failWithNote', {
        taskQueue: underK1.taskQueue,
        workflowId: failedId,
        args: [{ note: MARKER }],
      }),
      (error: unknown) =>
        error instanceof WorkflowFailedError && error.cause?.message === `refused because of ${MARKER}`,
    );

    // Read back as anyone with access to the Temporal server would: a client without the codec.
    for (const id of [workflowId, failedId]) {
      const { history, bytes, json } = await storedHistory(env.client, id);
      assert.ok(history.events!.length >= 8, `${id}: a complete run (${history.events!.length} events)`);
      assert.ok(!bytes.includes(MARKER), `${id}: the marker is nowhere in the stored history`);
      assert.ok(
        !json.includes(MARKER) && !json.includes(Buffer.from(MARKER).toString('base64').slice(0, 16)),
      );
      const [input] = startedInput(history);
      assert.equal(text(input!.metadata!.encoding), 'binary/encrypted');
      assert.equal(text(input!.metadata!['encryption-key-id']), 'k1');
    }
    const failed = (await storedHistory(env.client, failedId)).history.events!.at(-1)!;
    assert.equal(failed.workflowExecutionFailedEventAttributes?.failure?.message, 'Encoded failure');

    // The control: the same scan on a run started without the codec finds the marker.
    const plainId = `plain-note-${Date.now()}`;
    const plain = await env.client.workflow.start<typeof carryNote>('carryNote', {
      taskQueue: 'no-worker-here',
      workflowId: plainId,
      args: [{ note: MARKER }],
    });
    assert.ok(
      (await storedHistory(env.client, plainId)).bytes.includes(MARKER),
      'the scan can find a plaintext',
    );
    await plain.terminate('control run');

    k1Run = {
      workflowId,
      input: startedInput((await storedHistory(env.client, workflowId)).history).map(toJson),
    };
  });

  it('the codec server decodes the encrypted history payloads for an authorised request from the Web UI origin', async () => {
    const response = await post('/decode', { payloads: k1Run.input }, authorised);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('access-control-allow-origin'), UI_ORIGIN);
    assert.equal(response.headers.get('access-control-allow-credentials'), 'true');
    const { payloads } = (await response.json()) as { payloads: JsonPayload[] };
    assert.equal(Buffer.from(payloads[0]!.metadata!.encoding!, 'base64').toString(), 'json/plain');
    assert.deepEqual(JSON.parse(Buffer.from(payloads[0]!.data!, 'base64').toString()), { note: MARKER });

    // The path may carry the namespace (the CLI's {namespace} template): only the last segment counts.
    const prefixed = await post('/default/decode', { payloads: k1Run.input }, authorised);
    assert.equal(prefixed.status, 200);
  });

  it('the Temporal CLI shows the decoded history through the codec server with the token, and ciphertext without it', async () => {
    const show = (...extra: string[]) =>
      execFileAsync(requireTool('temporal'), [
        'workflow',
        'show',
        '--address',
        env.address,
        '--workflow-id',
        k1Run.workflowId,
        '--output',
        'json',
        ...extra,
      ]);
    /** The started event's input as the CLI prints it (proto JSON: base64). */
    const input = (stdout: string) => {
      const { events } = JSON.parse(stdout) as {
        events: { workflowExecutionStartedEventAttributes: { input: { payloads: JsonPayload[] } } }[];
      };
      const payload = events[0]!.workflowExecutionStartedEventAttributes.input.payloads[0]!;
      return {
        encoding: Buffer.from(payload.metadata!.encoding!, 'base64').toString(),
        data: Buffer.from(payload.data!, 'base64').toString(),
      };
    };
    const decoded = await show('--codec-endpoint', endpoint, '--codec-auth', `Bearer ${TOKEN}`);
    assert.deepEqual(input(decoded.stdout), {
      encoding: 'json/plain',
      data: JSON.stringify({ note: MARKER }),
    });
    const raw = input((await show()).stdout);
    assert.equal(raw.encoding, 'binary/encrypted');
    assert.ok(!raw.data.includes(MARKER));
  });

  it('answers the browser preflight from the Web UI origin: POST with Authorization and X-Namespace, credentials allowed', async () => {
    const response = await fetch(`${endpoint}/decode`, {
      method: 'OPTIONS',
      headers: {
        origin: UI_ORIGIN,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type,x-namespace',
      },
    });
    assert.equal(response.status, 204);
    assert.equal(response.headers.get('access-control-allow-origin'), UI_ORIGIN);
    assert.equal(response.headers.get('access-control-allow-credentials'), 'true');
    assert.match(response.headers.get('access-control-allow-methods') ?? '', /\bPOST\b/);
    for (const header of ['Authorization', 'Content-Type', 'X-Namespace']) {
      assert.match(response.headers.get('access-control-allow-headers') ?? '', new RegExp(header));
    }
  });

  const refusals: [string, () => Promise<Response>, number, RegExp][] = [
    [
      'no token',
      () => post('/decode', { payloads: k1Run.input }, { origin: UI_ORIGIN }),
      401,
      /Authorization: Bearer <token> header is required/,
    ],
    [
      'a wrong token',
      () =>
        post(
          '/decode',
          { payloads: k1Run.input },
          { ...authorised, authorization: `Bearer ${randomBytes(32).toString('hex')}` },
        ),
      403,
      /bearer token is not valid/,
    ],
    [
      'a truncated token',
      () =>
        post(
          '/decode',
          { payloads: k1Run.input },
          { ...authorised, authorization: `Bearer ${TOKEN.slice(0, -1)}` },
        ),
      403,
      /bearer token is not valid/,
    ],
    [
      'the token as Basic credentials',
      () => post('/decode', { payloads: k1Run.input }, { ...authorised, authorization: `Basic ${TOKEN}` }),
      401,
      /Bearer/,
    ],
    [
      'another origin, even with the token',
      () => post('/decode', { payloads: k1Run.input }, { ...authorised, origin: 'https://evil.example' }),
      403,
      /origin https:\/\/evil\.example is not allowed/,
    ],
    [
      'another namespace',
      () => post('/decode', { payloads: k1Run.input }, { ...authorised, 'x-namespace': 'payments' }),
      403,
      /serves namespace default only/,
    ],
    ['a GET', () => fetch(`${endpoint}/decode`, { headers: authorised }), 405, /decode takes POST/],
    ['an unknown route', () => post('/download', { payloads: k1Run.input }, authorised), 404, /not found/],
    ['a body that is not JSON', () => post('/decode', '{"payloads": [', authorised), 400, /not JSON/],
    [
      'a body without payloads',
      () => post('/decode', { events: [] }, authorised),
      400,
      /no "payloads" array/,
    ],
    [
      'data that is not base64',
      () => post('/decode', { payloads: [{ metadata: {}, data: 'not base64!' }] }, authorised),
      400,
      /payloads\[0\]\.data is not a base64 string/,
    ],
  ];
  for (const [what, request, status, message] of refusals) {
    it(`refuses ${what} with ${status}, a reason and no payload data`, async () => {
      const response = await request();
      assert.equal(response.status, status);
      const body = await response.text();
      assert.match((JSON.parse(body) as { error: string }).error, message);
      assert.ok(!body.includes(MARKER), 'no plaintext');
      assert.ok(!body.includes(k1Run.input[0]!.data!.slice(0, 24)), 'no ciphertext either');
      if (what.startsWith('another origin'))
        assert.equal(response.headers.get('access-control-allow-origin'), null);
    });
  }

  it('refuses a preflight from another origin', async () => {
    const response = await fetch(`${endpoint}/decode`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    assert.equal(response.status, 403);
    assert.equal(response.headers.get('access-control-allow-origin'), null);
  });

  it('encodes for the UI and the CLI (e.g. a signal typed in the UI) under the current key', async () => {
    const plain = toJson(defaultPayloadConverter.toPayload({ note: MARKER }));
    const response = await post('/encode', { payloads: [plain] }, authorised);
    assert.equal(response.status, 200);
    const { payloads } = (await response.json()) as { payloads: JsonPayload[] };
    assert.equal(Buffer.from(payloads[0]!.metadata!['encryption-key-id']!, 'base64').toString(), 'k2');
    assert.ok(!Buffer.from(payloads[0]!.data!, 'base64').includes(MARKER));
    const codec = new AesGcmPayloadCodec(new CodecKeyRing('k2', { k2: K2 }));
    const [decoded] = await codec.decode([
      {
        metadata: Object.fromEntries(
          Object.entries(payloads[0]!.metadata!).map(([k, v]) => [k, Buffer.from(v, 'base64')]),
        ),
        data: Buffer.from(payloads[0]!.data!, 'base64'),
      },
    ]);
    assert.deepEqual(defaultPayloadConverter.fromPayload(decoded!), { note: MARKER });
  });

  it('rotation: after k2 becomes current, new runs are written under k2 and the k1 run stays readable; without k1 it is a clear error', async () => {
    await startWorker(rotated);
    const client = await clientOf(rotated);
    const workflowId = `carry-note-k2-${Date.now()}`;
    assert.deepEqual(
      await client.workflow.execute<typeof carryNote>('carryNote', {
        taskQueue: rotated.taskQueue,
        workflowId,
        args: [{ note: MARKER }],
      }),
      { note: MARKER },
    );
    const { history, bytes } = await storedHistory(env.client, workflowId);
    assert.equal(text(startedInput(history)[0]!.metadata!['encryption-key-id']), 'k2');
    assert.ok(!bytes.includes(MARKER));

    assert.deepEqual(
      await client.workflow.getHandle(k1Run.workflowId).result(),
      { note: MARKER },
      'the k1 run, read with the rotated keys',
    );
    const decoded = await post('/decode', { payloads: k1Run.input }, authorised);
    assert.equal(decoded.status, 200, 'the codec server (rotated keys) still decodes the k1 run');

    const withoutK1 = await clientOf(onlyK2);
    await assert.rejects(
      withoutK1.workflow.getHandle(k1Run.workflowId).result(),
      /payload is encrypted with key id "k1", which is not among the configured keys \(k2\)/,
    );
  });

  /** `bin/dbops codec-server` as a user runs it, with the k1 -> k2 key file. */
  function startDbopsCodecServer(env: Record<string, string>) {
    const child = spawn(path.join(projectRoot, 'bin', 'dbops'), ['codec-server'], {
      env: { ...process.env, DBOPS_CODEC_KEYS_FILE: path.join(dir, 'codec-k2.json'), ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    return { child, exited, output: () => ({ stdout, stderr }) };
  }

  it('dbops codec-server serves the keys of the configuration until stopped', async () => {
    const port = await freePort();
    const run = startDbopsCodecServer({
      DBOPS_CODEC_SERVER_TOKEN: TOKEN,
      DBOPS_CODEC_SERVER_PORT: String(port),
    });
    try {
      while (!run.output().stdout.includes('codec server on')) {
        const early = await Promise.race([run.exited, sleep(100).then(() => 'running' as const)]);
        if (early !== 'running') assert.fail(`dbops codec-server exited ${early}: ${run.output().stderr}`);
      }
      assert.match(
        run.output().stdout,
        new RegExp(
          `^codec server on http://127\\.0\\.0\\.1:${port} for namespace default \\(browser origins: http://localhost:8233\\)\\n$`,
        ),
      );
      const response = await fetch(`http://127.0.0.1:${port}/decode`, {
        method: 'POST',
        headers: { ...authorised, 'content-type': 'application/json' },
        body: JSON.stringify({ payloads: k1Run.input }),
      });
      assert.equal(response.status, 200);
      const { payloads } = (await response.json()) as { payloads: JsonPayload[] };
      assert.deepEqual(JSON.parse(Buffer.from(payloads[0]!.data!, 'base64').toString()), { note: MARKER });
    } finally {
      run.child.kill('SIGTERM');
    }
    assert.equal(await run.exited, 0);
    assert.ok(!(run.output().stdout + run.output().stderr).includes(TOKEN), 'the token is never printed');
  });

  it('dbops codec-server without a token exits 1 naming DBOPS_CODEC_SERVER_TOKEN', async () => {
    const run = startDbopsCodecServer({ DBOPS_CODEC_SERVER_TOKEN: '' });
    assert.equal(await run.exited, 1);
    assert.match(
      run.output().stderr,
      /dbops codec-server failed: ConfigError: DBOPS_CODEC_SERVER_TOKEN: is not set/,
    );
  });

  it('refuses to start without codec keys or without a token, naming the variable', () => {
    assert.throws(
      () => codecServerFromConfig(loadConfig({ DBOPS_CODEC_SERVER_TOKEN: TOKEN })),
      (error: unknown) => error instanceof ConfigError && error.variable === 'DBOPS_CODEC_KEYS_FILE',
    );
    assert.throws(
      () => codecServerFromConfig(loadConfig({ DBOPS_CODEC_KEY: K1, DBOPS_CODEC_KEY_ID: 'k1' })),
      (error: unknown) =>
        error instanceof ConfigError && /^DBOPS_CODEC_SERVER_TOKEN: is not set/.test(error.message),
    );
  });
});
