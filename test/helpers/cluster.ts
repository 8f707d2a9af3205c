/**
 * The real Temporal server on a PostgreSQL of its own (workers/cluster.ts) for one suite, in a
 * temp dir on free ports (no Web UI), and workers as processes of their own
 * (test/fixtures/worker-process.ts) that a test can SIGKILL while they hold a run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { Client, Connection } from '@temporalio/client';

import { freePort } from '../../activities/ports';
import { startTemporalCluster, type TemporalCluster } from '../../workers/cluster';

export interface TestCluster {
  server: TemporalCluster;
  client: Client;
  /** The cluster's directory (database, configuration, logs). */
  dir: string;
  /** Stops the Web UI, server and database, and starts them again on the same directory and port. */
  startAgain(): Promise<void>;
  teardown(): Promise<void>;
}

export async function startTestCluster(): Promise<TestCluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'dbops-cluster-'));
  await chmod(dir, 0o755); // the postgres user must reach its cluster inside
  try {
    const options = { dir, port: await freePort(), namespace: 'default' };
    let server = await startTemporalCluster(options);
    const connection = await Connection.connect({ address: server.address });
    return {
      get server() {
        return server;
      },
      client: new Client({ connection }),
      dir,
      async startAgain() {
        await server.stop();
        server = await startTemporalCluster(options);
      },
      async teardown() {
        await connection.close();
        await server.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

export interface WorkerProcess {
  /** The identity the worker gives the server (the SDK's default: `<pid>@<host>`). */
  identity: string;
  /** Until the worker prints `line`; fails if it exits first. */
  printed(line: string): Promise<void>;
  /** SIGKILL: no shutdown, no goodbye to the server; resolves once the process is gone. */
  kill(): Promise<void>;
}

/**
 * A worker process on `taskQueue` of the server at `address`, with the local provider in
 * `stateDir` and the database at `endpoint`; `extra`: more environment (TEST_STOP_AT_BATCH).
 */
export function startWorkerProcess(options: {
  address: string;
  taskQueue: string;
  stateDir: string;
  endpoint: object;
  extra?: Record<string, string>;
}): WorkerProcess {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(__dirname, '..', 'fixtures', 'worker-process.ts')],
    {
      env: {
        ...process.env,
        TEST_STATE_DIR: options.stateDir,
        TEST_ENDPOINT: JSON.stringify(options.endpoint),
        TEST_TEMPORAL_ADDRESS: options.address,
        TEST_TASK_QUEUE: options.taskQueue,
        ...options.extra,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    identity: `${child.pid}@${os.hostname()}`,
    printed: (line) => printed(child, () => output, line),
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

function printed(child: ChildProcess, output: () => string, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!output().split('\n').includes(line)) return;
      child.stdout!.off('data', check);
      child.off('exit', onExit);
      resolve();
    };
    const onExit = (code: number | null) => reject(new Error(`worker exited ${code} before "${line}"`));
    child.stdout!.on('data', check);
    child.once('exit', onExit);
    check();
  });
}
