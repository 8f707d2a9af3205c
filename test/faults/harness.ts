/**
 * Fault injection for any workflow at any named activity (and its n-th call): the reply lost after
 * the side effect, the worker SIGKILLed and replaced, the Temporal dev server restarted on the same
 * database file and port, the instance's PostgreSQL restarted, the run cancelled or terminated.
 * The worker is a process of its own (worker.ts) whose activities stop at a hook the parent arms
 * over Node IPC; the parent applies the fault while the activity waits there, then releases it.
 * Placement is that hook, never a delay.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { bundleWorkflowCode } from '@temporalio/worker';

import type { Endpoint } from '../../activities/control-plane/control-plane';
import type { LocalControlPlane } from '../../activities/control-plane/local';
import { StateLayout } from '../../activities/control-plane/local-state';
import { runPgBinary } from '../../activities/postgres/cluster';
import { freePort } from '../../activities/ports';
import { startDevServer, type DevServer } from '../../workers/dev-server';

/** The faults of the durability contract, (a) to (f). */
export const FAULTS = [
  'lost-reply',
  'kill-worker',
  'restart-server',
  'restart-postgres',
  'cancel',
  'terminate',
] as const;
export type Fault = (typeof FAULTS)[number];

/**
 * Where the armed activity call stops: before or after its real implementation, or once it has
 * connected to its database (the fault then meets an open session, as a failover would).
 */
export type Placement = 'before' | 'after' | 'connected';

export interface FaultPlan {
  /** The run's workflow id; child runs (`<id>-expand`, ...) count too. */
  workflowId: string;
  activity: string;
  /** 1 for the first call of that activity in that run (retries are calls). */
  call: number;
  placement: Placement;
  /** `throw`: a retryable failure after the implementation succeeded; `pause`: wait for the parent. */
  action: 'pause' | 'throw';
}

export interface Hit {
  activity: string;
  call: number;
  placement: Placement;
  /** The database port the activity is connected to (`connected` placement). */
  port: number | undefined;
  /** The workflow whose activity call it is (a child's, in expandContract). */
  workflowId: string;
}

export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'armed' }
  | ({ type: 'hit' } & Hit)
  | { type: 'finished'; activity: string; outcome: string };

export type ParentMessage = { type: 'arm'; plan: FaultPlan } | { type: 'disarm' } | { type: 'go' };

/** Where each fault stops the activity: after its side effect, or in its database session. */
export function placementFor(fault: Fault, usesDatabase: boolean): Placement {
  if (fault === 'lost-reply' || fault === 'kill-worker' || fault === 'restart-server') return 'after';
  if (fault === 'restart-postgres') return usesDatabase ? 'connected' : 'before';
  return usesDatabase ? 'connected' : 'after';
}

/** A Temporal dev server this session can stop and start again on the same database file and port. */
export class TemporalServer {
  private server: DevServer | undefined;
  private constructor(
    private readonly dir: string,
    readonly port: number,
    private readonly uiPort: number,
  ) {}

  static async start(dir: string): Promise<TemporalServer> {
    const server = new TemporalServer(dir, await freePort(), await freePort());
    await server.up();
    return server;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  private async up(): Promise<void> {
    this.server = await startDevServer({
      port: this.port,
      uiPort: this.uiPort,
      namespace: 'default',
      dir: this.dir,
    });
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.up();
  }

  async stop(): Promise<void> {
    await this.server?.stop();
    this.server = undefined;
  }
}

/** The workflow code, bundled once per session for every worker process. */
export async function writeWorkflowBundle(dir: string): Promise<string> {
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../../workflows'),
    logger: {
      log: () => undefined,
      trace: () => undefined,
      debug: () => undefined,
      info: () => undefined,
      warn: () => undefined,
      error: (message) => console.error(message),
    },
  });
  const file = path.join(dir, 'workflows.js');
  await writeFile(file, code);
  return file;
}

export interface WorkerOptions {
  taskQueue: string;
  temporalAddress: string;
  stateDir: string;
  /** The worker's configured database (activities without an instance id). */
  endpoint: Endpoint;
  migrationsDir: string;
  workflowBundle: string;
  /** The worker's stdout and stderr go here. */
  logFile: string;
}

/** One worker process on a task queue; replaced by a new one after a kill. */
export class FaultWorker {
  private child: ChildProcess | undefined;
  private hits: Hit[] = [];
  private finishedCalls: string[] = [];
  private waiters: (() => void)[] = [];
  private armed = false;
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;

  constructor(readonly options: WorkerOptions) {}

  async start(): Promise<void> {
    const log = openSync(this.options.logFile, 'a');
    const child = fork(path.join(__dirname, 'worker.ts'), [], {
      execArgv: ['--require', 'tsx/cjs'],
      env: {
        ...process.env,
        FAULTS_TASK_QUEUE: this.options.taskQueue,
        FAULTS_TEMPORAL_ADDRESS: this.options.temporalAddress,
        FAULTS_STATE_DIR: this.options.stateDir,
        FAULTS_ENDPOINT: JSON.stringify(this.options.endpoint),
        FAULTS_MIGRATIONS_DIR: this.options.migrationsDir,
        FAULTS_WORKFLOW_BUNDLE: this.options.workflowBundle,
      },
      stdio: ['ignore', log, log, 'ipc'],
    });
    closeSync(log);
    this.child = child;
    this.exitCode = null;
    this.exitSignal = null;
    const ready = new Promise<void>((resolve, reject) => {
      child.on('message', (message: WorkerMessage) => {
        if (message.type === 'ready') resolve();
        else if (message.type === 'armed') this.armed = true;
        else if (message.type === 'hit') this.hits.push(message);
        else this.finishedCalls.push(`${message.activity}: ${message.outcome}`);
        this.wake();
      });
      child.once('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        reject(
          new Error(
            `the fault worker exited before it was ready (${code ?? signal}); see ${this.options.logFile}`,
          ),
        );
        this.wake();
      });
    });
    await ready;
  }

  get alive(): boolean {
    return this.child !== undefined && this.exitCode === null && this.exitSignal === null;
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  private async until<T>(what: string, found: () => T | undefined, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = found();
      if (value !== undefined) return value;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${what} within ${Math.round(timeoutMs / 1000)} s`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** A worker that has died gets nothing: the cell finds it dead and replaces it. */
  private send(message: ParentMessage): void {
    if (this.child?.connected === true) this.child.send(message);
  }

  /** Arms the plan; resolves once the worker has it (before the run is started). */
  async arm(plan: FaultPlan): Promise<void> {
    this.hits = [];
    this.finishedCalls = [];
    this.armed = false;
    this.send({ type: 'arm', plan });
    await this.until('the worker did not take the fault plan', () => (this.armed ? true : undefined), 30_000);
  }

  disarm(): void {
    this.send({ type: 'disarm' });
  }

  /** The armed call has reached its stop (or the run ended first: `ended` resolves). */
  waitForHit(ended: Promise<unknown>, timeoutMs: number): Promise<Hit | 'ended'> {
    let over = false;
    const mark = () => {
      over = true;
      this.wake();
    };
    void ended.then(mark, mark);
    return this.until(
      'the armed activity call was not reached',
      () => this.hits.shift() ?? (over ? 'ended' : undefined),
      timeoutMs,
    );
  }

  go(): void {
    this.send({ type: 'go' });
  }

  /** The armed call has returned or thrown (after `go`). */
  waitForFinished(timeoutMs: number): Promise<string> {
    return this.until(
      'the armed activity call did not finish',
      () => this.finishedCalls.shift() ?? (this.alive ? undefined : 'worker exited'),
      timeoutMs,
    );
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined || !this.alive) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined || !this.alive) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Restarts an instance's PostgreSQL (pg_ctl restart, fast mode: sessions are terminated). */
export async function restartPostgres(stateDir: string, instanceId: string): Promise<void> {
  const layout = new StateLayout(stateDir);
  await runPgBinary(
    'pg_ctl',
    [
      'restart',
      '--pgdata',
      layout.dataDir(instanceId),
      '--mode',
      'fast',
      '--log',
      layout.serverLog(instanceId),
      '--wait',
      '--timeout',
      '60',
    ],
    { timeoutMs: 90_000 },
  );
}

/** The instance listening on `port` (the session a `connected` stop holds). */
export async function instanceOnPort(plane: LocalControlPlane, port: number): Promise<string> {
  const found = (await plane.listInstances()).find((instance) => instance.endpoint?.port === port);
  if (found === undefined) throw new Error(`no local instance listens on port ${port}`);
  return found.instanceId;
}

export interface FaultContext {
  server: TemporalServer;
  worker: FaultWorker;
  client: Client;
  plane: LocalControlPlane;
  stateDir: string;
  /** The instance a stop outside any database session restarts. */
  instanceId: string;
}

/** How long an armed call may take to be reached, and a released one to finish. */
const HIT_TIMEOUT_MS = 180_000;

/**
 * Applies `fault` to the run while its armed activity call waits at the hook, then releases it.
 * Returns what happened, for the cell's report. The run is not awaited here.
 */
export async function applyFault(
  context: FaultContext,
  fault: Fault,
  handle: WorkflowHandle,
  ended: Promise<unknown>,
): Promise<{ reached: boolean; note: string }> {
  const { worker } = context;
  const hit = await worker.waitForHit(ended, HIT_TIMEOUT_MS);
  if (hit === 'ended') return { reached: false, note: 'the run ended before the armed call' };
  const where = `${hit.activity} #${hit.call} ${hit.placement}`;
  switch (fault) {
    case 'lost-reply':
      return { reached: true, note: `reply lost at ${where}` };
    case 'kill-worker':
      await worker.kill();
      await worker.start();
      return { reached: true, note: `worker killed at ${where}` };
    case 'restart-server':
      await context.server.restart();
      worker.go();
      return { reached: true, note: `server restarted at ${where}` };
    case 'restart-postgres': {
      const instanceId =
        hit.port === undefined ? context.instanceId : await instanceOnPort(context.plane, hit.port);
      await restartPostgres(context.stateDir, instanceId);
      worker.go();
      return { reached: true, note: `${instanceId} restarted at ${where}` };
    }
    case 'cancel':
      await handle.cancel();
      // Released only once the run that called the activity has seen its cancellation, so the
      // activity's result cannot reach the workflow first.
      await cancellationSeen(context.client, hit.workflowId);
      worker.go();
      return { reached: true, note: `cancelled at ${where}` };
    case 'terminate': {
      await handle.terminate('fault matrix: terminated at the hook');
      worker.go();
      const outcome = await worker.waitForFinished(HIT_TIMEOUT_MS);
      return { reached: true, note: `terminated at ${where}; the call then ${outcome}` };
    }
  }
}

/** Waits until a workflow task completed after the run's cancel request (its code saw it). */
async function cancellationSeen(client: Client, workflowId: string): Promise<void> {
  const { EventType } = temporal.api.enums.v1;
  for (let i = 0; i < 300; i++) {
    const events = (await client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
    const requested = events.findIndex(
      (event) => event.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED,
    );
    const seen = events
      .slice(requested + 1)
      .some((event) => event.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED);
    if (requested >= 0 && seen) return;
    await sleep(100);
  }
  throw new Error(`workflow ${workflowId} did not take its cancellation within 30 s`);
}

/** A client for the session's server; it reconnects by itself after a server restart. */
export async function connectClient(server: TemporalServer): Promise<Client> {
  const connection = await Connection.connect({ address: server.address });
  return new Client({ connection });
}
