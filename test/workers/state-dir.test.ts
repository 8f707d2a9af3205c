/**
 * The state directory from a clone the postgres user cannot reach (a home directory of mode 700):
 * the default moves to a directory it can reach, and an unreachable DBOPS_STATE_DIR stops
 * `npm start` before it creates anything, saying why and what to set.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { projectRoot } from '../../activities/config-types';
import { freePort, isPortOpen } from '../../activities/ports';
import { defaultStateDir, SHARED_STATE_ROOT } from '../../workers/config';

const execFileAsync = promisify(execFile);

describe('the state directory from a clone inside a 0700 home', () => {
  let home: string;
  let clone: string;

  beforeEach(async () => {
    home = await mkdtemp(path.join(os.tmpdir(), 'dbops-home-'));
    await chmod(home, 0o700);
    clone = path.join(home, 'dbops');
    await mkdir(clone, { mode: 0o755 });
  });
  afterEach(() => rm(home, { recursive: true, force: true }));

  it('defaults to a directory under /var/lib/dbops, one per clone', () => {
    const chosen = defaultStateDir(clone);
    assert.equal(path.dirname(chosen), SHARED_STATE_ROOT);
    assert.match(path.basename(chosen), /^dbops-[0-9a-f]{8}$/);
    assert.notEqual(defaultStateDir(path.join(home, 'other', 'dbops')), chosen);
  });

  it('stays in the clone when the postgres user can reach it', async () => {
    await chmod(home, 0o755);
    assert.equal(defaultStateDir(clone), path.join(clone, '.dbops', 'state'));
  });

  it('npm start stops before creating anything when DBOPS_STATE_DIR is out of reach, naming what to set', async () => {
    const stateDir = path.join(clone, '.dbops', 'state');
    const temporalPort = await freePort();
    const failed = await execFileAsync(process.execPath, ['--require', 'tsx/cjs', 'workers/start.ts'], {
      cwd: projectRoot,
      env: {
        ...process.env,
        DBOPS_STATE_DIR: stateDir,
        TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`,
        DBOPS_UI_PORT: String(await freePort()),
        DBOPS_METRICS_PORT: String(await freePort()),
      },
      timeout: 60_000,
    }).then(
      () => assert.fail('npm start went on with an unreachable state directory'),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
    assert.equal(failed.code, 1);
    assert.match(
      failed.stderr,
      new RegExp(
        `the state directory ${stateDir} is inside ${home} \\(mode 700\\), which the postgres user cannot pass through.*Set DBOPS_STATE_DIR to a directory it can reach`,
      ),
    );
    assert.deepEqual(await readdir(clone), [], 'something was created in the clone');
    assert.equal(await isPortOpen(temporalPort), false, 'a Temporal server was started');
  });
});
