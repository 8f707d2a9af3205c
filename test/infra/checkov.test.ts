/**
 * checkov, the static analyser of infrastructure code, on everything under infra/terraform: no
 * failed check, and every check we skip says why on the line that skips it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import { projectRoot } from '../../activities/config-types';
import { requireTool } from '../../workers/tools';

const terraformDir = path.join(projectRoot, 'infra', 'terraform');

interface CheckovFailure {
  check_id: string;
  check_name: string;
  resource: string;
  file_path: string;
  file_line_range: [number, number];
}

interface CheckovReport {
  check_type: string;
  results: { failed_checks: CheckovFailure[] };
  summary: {
    passed: number;
    failed: number;
    skipped: number;
    parsing_errors: number;
    resource_count: number;
  };
}

/** Runs checkov; it exits 1 when a check fails, which is still a report to read. */
function runCheckov(): Promise<CheckovReport[]> {
  // --skip-download: no network (the checks ship with checkov; only guideline links are online).
  const args = [
    '-d',
    terraformDir,
    '--framework',
    'terraform',
    '--compact',
    '--quiet',
    '-o',
    'json',
    '--skip-download',
  ];
  return new Promise((resolve, reject) => {
    execFile(requireTool('checkov'), args, { maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error && error.code !== 1) {
        reject(new Error(`checkov failed to run (exit ${String(error.code)}): ${stderr}`));
        return;
      }
      const parsed = JSON.parse(stdout) as CheckovReport | CheckovReport[];
      resolve(Array.isArray(parsed) ? parsed : [parsed]);
    });
  });
}

async function terraformFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter(
      (entry) => entry.isFile() && entry.name.endsWith('.tf') && !entry.parentPath.includes('.terraform'),
    )
    .map((entry) => path.join(entry.parentPath, entry.name));
}

describe('checkov on infra/terraform', () => {
  it('passes every check: zero failed, nothing it could not parse', async () => {
    const reports = await runCheckov();
    const failures = reports.flatMap((report) => report.results.failed_checks);
    const listed = failures.map(
      (f) => `${f.check_id} ${f.resource} (${f.file_path}:${f.file_line_range[0]}): ${f.check_name}`,
    );
    assert.equal(failures.length, 0, `checkov found ${failures.length} failed checks:\n${listed.join('\n')}`);
    const summary = reports.map((report) => report.summary);
    assert.ok(
      summary.every((s) => s.parsing_errors === 0),
      `parsing errors: ${JSON.stringify(summary)}`,
    );
    // A run that checked nothing would also have zero failures.
    assert.ok(
      summary.some((s) => s.resource_count > 20 && s.passed > 100),
      `too little checked: ${JSON.stringify(summary)}`,
    );
  });

  it('every checkov:skip in the .tf files names the check and gives a reason', async () => {
    const files = await terraformFiles(terraformDir);
    assert.ok(files.length > 0, `no .tf files under ${terraformDir}`);
    const bad: string[] = [];
    let skips = 0;
    for (const file of files) {
      const lines = (await readFile(file, 'utf8')).split('\n');
      lines.forEach((line, index) => {
        if (!/checkov:skip/i.test(line)) return;
        skips += 1;
        // e.g. #checkov:skip=CKV_AWS_157:why this check does not apply here
        const match = /checkov:skip=(CKV2?_AWS_\d+):(.*)$/.exec(line);
        const reason = match?.[2]?.trim() ?? '';
        if (!match || reason.split(/\s+/).length < 5) {
          bad.push(`${path.relative(projectRoot, file)}:${index + 1}: ${line.trim()}`);
        }
      });
    }
    assert.deepEqual(bad, [], `skips (of ${skips}) without a check id and a reason of five words or more`);
  });
});
