import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { Client, Connection } from '@temporalio/client';

import { projectRoot } from '../../activities/config-types';
import { freePort, isPortOpen } from '../../activities/ports';

const execFileAsync = promisify(execFile);

/** `npm start` as a user runs it, in its own process group so a test can "press Ctrl-C". */
class NpmStart {
  readonly child: ChildProcess;
  output = '';
  constructor(env: NodeJS.ProcessEnv) {
    this.child = spawn('npm', ['start'], {
      cwd: projectRoot,
      env: { ...process.env, ...env },
      detached: true,
    });
    this.child.stdout?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.child.stderr?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
  }

  async waitFor(pattern: RegExp, timeoutMs = 240_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(this.output);
      if (match) return match;
      if (this.child.exitCode !== null)
        throw new Error(`npm start exited ${this.child.exitCode}:\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`no ${pattern} in npm start output:\n${this.output}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /**
   * SIGINT to the whole process group, as a terminal's Ctrl-C does; then waits for our own
   * shutdown to finish (npm itself exits on the signal at once, its children clean up after).
   */
  async pressCtrlC(): Promise<void> {
    process.kill(-this.child.pid!, 'SIGINT');
    await this.waitFor(/\[start\] stopped/, 120_000);
  }
}

describe('npm start (the embedded stack)', function () {
  this.timeout(300_000); // a cold worker bundles its workflows first
  let stateDir: string;
  let temporalPort: number;
  let uiPort: number;
  let metricsPort: number;
  let env: NodeJS.ProcessEnv;
  let running: NpmStart | undefined;

  before(async () => {
    stateDir = await mkdtemp(path.join(os.tmpdir(), 'dbops-start-'));
    await chmod(stateDir, 0o755); // the postgres user must reach the clusters inside
    temporalPort = await freePort();
    uiPort = await freePort();
    metricsPort = await freePort();
    env = {
      TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`,
      DBOPS_UI_PORT: String(uiPort),
      DBOPS_STATE_DIR: stateDir,
      DBOPS_METRICS_PORT: String(metricsPort),
    };
  });
  after(async () => {
    if (running !== undefined && !/\[start\] stopped/.test(running.output)) await running.pressCtrlC();
    await rm(stateDir, { recursive: true, force: true });
  });

  it('brings up Temporal, the Web UI, the database and the worker, and runs a ping', async () => {
    running = new NpmStart(env);
    await running.waitFor(/Temporal Web UI: http:\/\/localhost:\d+/);
    assert.match(running.output, /Task queue: +dbops/);
    await running.waitFor(/\[start\] ping: PostgreSQL 15\.\d+.*, pgvector 0\.8\.0/);
  });

  it('keeps the console to its own lines; the worker detail goes to the log file the banner names', async () => {
    const [, log] = await running!.waitFor(/Worker log: +(\S+)/);
    assert.equal(log, path.join(stateDir, 'worker.log'));
    await running!.waitFor(/\[start\] DR report: /);
    assert.doesNotMatch(running!.output, /webpack|Workflow bundle created|modules by path/i);
    assert.doesNotMatch(running!.output, /^\s+at .+:\d+:\d+\)?$/m, 'a stack trace on the console');
    assert.match(await readFile(log, 'utf8'), /\[INFO\] Workflow bundle created/);
  });

  it('seeds demo data, takes a snapshot and runs one DR test whose report it prints', async () => {
    assert.match(running!.output, /\[start\] demo data: 1500 conversations, 3000 chunks with embeddings/);
    await running!.waitFor(
      /\[start\] DR test passed: snapshot mcp-demo-prod-manual-\d{8}-\d{6}, RPO [\d.]+ s, RTO [\d.]+ s, 10 checks/,
    );
    const [, location] = await running!.waitFor(/\[start\] DR report: (file:\/\/\S+\.md)$/m);
    const report = await readFile(fileURLToPath(location!), 'utf8');
    assert.match(report, /^# DR test of mcp-demo-prod: PASSED/);
    assert.match(report, /\| recall:conversations_embedding_idx \| passed \| recall@10/);
  });

  it('upserts the schedules and serves the worker metrics', async () => {
    for (const id of ['dr-test', 'maintenance', 'health-check']) {
      assert.match(running!.output, new RegExp(`\\[start\\] schedule dbops-${id}-mcp-demo-prod: created`));
    }
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(metrics, /^temporal_workflow_completed_total\{.*workflow_type="ping"/m);
  });

  it('serves the Temporal Web UI, which lists the ping run (headless Chromium)', async () => {
    const response = await fetch(`http://127.0.0.1:${uiPort}/`);
    assert.equal(response.status, 200);
    const profile = await mkdtemp(path.join(os.tmpdir(), 'dbops-chromium-'));
    const screenshot = path.join(stateDir, 'web-ui.png');
    try {
      const { stdout: dom } = await execFileAsync(
        'chromium',
        [...chromiumFlags(profile), '--dump-dom', `http://localhost:${uiPort}/namespaces/default/workflows`],
        { maxBuffer: 32 * 1024 * 1024, timeout: 90_000 },
      );
      assert.match(dom, /ping-\d{8}-\d{6}/, 'the workflows page does not list the ping run');
      await execFileAsync(
        'chromium',
        [
          ...chromiumFlags(profile),
          `--screenshot=${screenshot}`,
          '--window-size=1280,800',
          `http://localhost:${uiPort}/`,
        ],
        { timeout: 90_000 },
      );
      const png = await readFile(screenshot);
      assert.equal(png.subarray(1, 4).toString(), 'PNG');
      assert.ok((await stat(screenshot)).size > 10_000, 'the screenshot is (nearly) empty');
    } finally {
      await rm(profile, { recursive: true, force: true });
    }
  });

  it('the Web UI finds the DR test by its search attribute, and only recovery runs (headless Chromium)', async () => {
    const profile = await mkdtemp(path.join(os.tmpdir(), 'dbops-chromium-'));
    try {
      const query = encodeURIComponent(`DbopsOperation="drTest" AND DbopsInstance="mcp-demo-prod"`);
      const { stdout: dom } = await execFileAsync(
        'chromium',
        [
          ...chromiumFlags(profile),
          '--dump-dom',
          `http://localhost:${uiPort}/namespaces/default/workflows?query=${query}`,
        ],
        { maxBuffer: 32 * 1024 * 1024, timeout: 90_000 },
      );
      assert.match(dom, /dr-test-mcp-demo-prod-\d{8}\b/, 'the filtered list does not show the DR test');
      assert.doesNotMatch(dom, /ping-\d{8}/, 'the filter by search attribute lists the ping run too');
    } finally {
      await rm(profile, { recursive: true, force: true });
    }
  });

  it('stops everything it started on Ctrl-C', async () => {
    await running!.pressCtrlC();
    assert.doesNotMatch(running!.output, /failed/i);
    assert.equal(await isPortOpen(temporalPort), false, 'the Temporal server still listens');
    assert.equal(await isPortOpen(uiPort), false, 'the Web UI still listens');
    const postmasterPids = await findFiles(stateDir, 'postmaster.pid');
    assert.deepEqual(postmasterPids, [], 'a Postgres cluster is still running');
  });

  it('starts again on the same state and keeps the earlier history', async () => {
    running = new NpmStart(env);
    await running.waitFor(/\[start\] ping: /);
    assert.match(running.output, /\[start\] schedule dbops-health-check-mcp-demo-prod: updated/);
    const connection = await Connection.connect({ address: `127.0.0.1:${temporalPort}` });
    try {
      const client = new Client({ connection });
      const runs: string[] = [];
      for await (const run of client.workflow.list({ query: `WorkflowType = 'ping'` }))
        runs.push(run.workflowId);
      assert.equal(runs.length, 2, `expected the ping runs of both starts, got ${runs.join(', ')}`);
    } finally {
      await connection.close();
    }
    await running.pressCtrlC();
  });
});

function chromiumFlags(profile: string): string[] {
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    `--user-data-dir=${profile}`,
    '--virtual-time-budget=15000',
  ];
}

async function findFiles(dir: string, name: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.name === name)
    .map((entry) => path.join(entry.parentPath, entry.name));
}
