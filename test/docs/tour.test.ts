/**
 * docs/tour.md, run as written: a fresh clone (the committed tree), `npm start` there, then every
 * other `sh` block of the tour in order, in the clone, as a user pastes it into a second terminal.
 * Each block must succeed. Ports and the state directory are the test's own, given by environment.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

import { projectRoot } from '../../activities/config-types';
import { freePort } from '../../activities/ports';

const execFileAsync = promisify(execFile);

describe('docs/tour.md', function () {
  this.timeout(1_200_000); // a fresh install, a cold worker bundle, then every step of the tour
  let home: string;
  let clone: string;
  let env: NodeJS.ProcessEnv;
  let child: ChildProcess | undefined;
  let output = '';

  const waitFor = async (pattern: RegExp, timeoutMs: number): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(output)) {
      if (child?.exitCode !== null) throw new Error(`npm start exited ${child?.exitCode}:\n${output}`);
      if (Date.now() > deadline) throw new Error(`no ${pattern} in npm start output:\n${output}`);
      await sleep(500);
    }
  };

  before(async () => {
    home = await mkdtemp(path.join(os.tmpdir(), 'dbops-tour-'));
    await chmod(home, 0o755); // the state stays in the clone, removed with it
    clone = path.join(home, 'dbops');
    await execFileAsync('git', ['clone', '--quiet', projectRoot, clone]);
    env = {
      ...process.env,
      DBOPS_STATE_DIR: '',
      TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}`,
      DBOPS_UI_PORT: String(await freePort()),
      DBOPS_METRICS_PORT: String(await freePort()),
    };
  });
  after(async () => {
    if (child !== undefined && !/\[start\] stopped/.test(output)) {
      process.kill(-child.pid!, 'SIGINT');
      await waitFor(/\[start\] stopped/, 120_000);
    }
    await rm(home, { recursive: true, force: true });
  });

  it('every command of the tour works, in order, on a fresh clone', async () => {
    const tour = await readFile(path.join(clone, 'docs', 'tour.md'), 'utf8');
    const blocks = [...tour.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((match) => match[1]!);
    assert.equal(blocks[0], 'npm start\n', 'the tour starts with npm start');
    assert.ok(blocks.length >= 6, `only ${blocks.length} command blocks`);

    child = spawn('npm', ['start'], { cwd: clone, env, detached: true });
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await waitFor(/\[start\] DR test passed: /, 900_000);
    // Step 4 restores to a minute ago: the demo's backup must be older than that.
    const backupAt = Date.now();
    const restoreStep = blocks.findIndex((block) => block.includes("'1 minute ago'"));
    assert.ok(restoreStep > 0, 'the tour has no restore to a minute ago');

    for (const [index, block] of blocks.slice(1).entries()) {
      if (index + 1 === restoreStep) await sleep(Math.max(0, backupAt + 65_000 - Date.now()));
      const run = await execFileAsync('bash', ['-euo', 'pipefail', '-c', block], {
        cwd: clone,
        env,
        timeout: 300_000,
      }).catch((error: { code: number; stdout: string; stderr: string }) =>
        assert.fail(`tour block failed (exit ${error.code}):\n${block}\n${error.stdout}\n${error.stderr}`),
      );
      assert.ok(run.stdout.length > 0, `tour block printed nothing:\n${block}`);
    }
  });
});
