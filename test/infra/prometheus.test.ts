import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

import { projectRoot } from '../../activities/config-types';
import { requireTool } from '../../workers/tools';

const execFileAsync = promisify(execFile);
const rulesDir = path.join(projectRoot, 'infra', 'prometheus');

async function promtool(...args: string[]): Promise<string> {
  const { stdout, stderr } = await execFileAsync(requireTool('promtool'), args, { cwd: rulesDir });
  return stdout + stderr;
}

describe('Prometheus alert rules (promtool)', () => {
  it('are valid rules: 4 for the database, 4 for the worker, 4 for recoverability', async () => {
    const output = await promtool('check', 'rules', 'alerts.yml');
    assert.match(output, /SUCCESS: 12 rules found/);
  });

  it('are valid rules: 2 for the recall of the vector indexes', async () => {
    const output = await promtool('check', 'rules', 'vector-alerts.yml');
    assert.match(output, /SUCCESS: 2 rules found/);
  });

  it('fire on bad series and stay silent on good ones (promtool unit tests)', async () => {
    const output = await promtool(
      'test',
      'rules',
      'alerts.test.yml',
      'dr-alerts.test.yml',
      'recoverability-alerts.test.yml',
      'daily-backup-alerts.test.yml',
      'vector-alerts.test.yml',
    );
    assert.match(output, /SUCCESS/);
    assert.doesNotMatch(output, /FAILED/);
  });
});
