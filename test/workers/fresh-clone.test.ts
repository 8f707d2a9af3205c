/**
 * The first minutes of a new user: clone the repository into a fresh directory of mode 700 (as a
 * home directory is) and run `npm start` there, without `npm install` first, until the banner and
 * the result of the demo DR test appear; then Ctrl-C. The clone gets the committed tree (HEAD).
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { access, mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { projectRoot } from '../../activities/config-types';
import { freePort, isPortOpen } from '../../activities/ports';
import { SHARED_STATE_ROOT } from '../../workers/config';

const execFileAsync = promisify(execFile);

describe('npm start on a fresh clone in a 0700 directory', function () {
  this.timeout(900_000); // npm install, then a cold worker bundles its workflows
  let home: string;
  let child: ChildProcess | undefined;
  let output = '';
  let stateDir: string | undefined;

  const waitFor = async (pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(output);
      if (match) return match;
      if (child?.exitCode !== null) throw new Error(`npm start exited ${child?.exitCode}:\n${output}`);
      if (Date.now() > deadline) throw new Error(`no ${pattern} in npm start output:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  };

  before(async () => {
    home = await mkdtemp(path.join(os.tmpdir(), 'dbops-home-'));
    assert.equal((await stat(home)).mode & 0o777, 0o700);
  });
  after(async () => {
    if (child !== undefined && !/\[start\] stopped/.test(output)) {
      process.kill(-child.pid!, 'SIGINT');
      await waitFor(/\[start\] stopped/, 120_000);
    }
    await rm(home, { recursive: true, force: true });
    if (stateDir?.startsWith(`${SHARED_STATE_ROOT}/`)) await rm(stateDir, { recursive: true, force: true });
  });

  it('installs the packages, prints the banner and the demo DR test result, and stops on Ctrl-C', async () => {
    const clone = path.join(home, 'dbops');
    await execFileAsync('git', ['clone', '--quiet', projectRoot, clone]);
    await assert.rejects(access(path.join(clone, 'node_modules')), 'the clone has node_modules already');
    const temporalPort = await freePort();
    child = spawn('npm', ['start'], {
      cwd: clone,
      env: {
        ...process.env,
        DBOPS_STATE_DIR: '',
        TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`,
        DBOPS_UI_PORT: String(await freePort()),
        DBOPS_METRICS_PORT: String(await freePort()),
      },
      detached: true,
    });
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));

    await waitFor(/\[packages\] node_modules is missing: npm install/, 30_000);
    const [, state] = await waitFor(/Temporal Web UI: http:\/\/localhost:\d+[\s\S]*State: +(\S+)/, 600_000);
    stateDir = state!;
    assert.equal(path.dirname(stateDir), SHARED_STATE_ROOT, 'the state is not where postgres can reach it');
    await waitFor(/\[start\] DR test (passed|FAILED)\b.*/, 300_000);

    process.kill(-child.pid!, 'SIGINT');
    await waitFor(/\[start\] stopped/, 120_000);
    assert.equal(await isPortOpen(temporalPort), false, 'the Temporal server still listens');
  });
});
