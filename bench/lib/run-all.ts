/**
 * `npm run bench`: runs every bench/*.ts (or the ones named: `npm run bench -- local-restore
 * pitr-growth`) one after the other, each in its own process with its own output, then prints one
 * table of every figure every bench recorded (bench/lib/rounds.ts: printRatios and record) with
 * its median, spread, rounds, goal and whether the goal was met, and how long each bench took.
 * Figures are collected in the file BENCH_RESULTS names (default: a temporary file, removed
 * afterwards). A bench that fails does not stop the others; it is listed as failed and
 * `npm run bench` exits with 1.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { goalResult, type Figure } from './rounds';

const BENCH_DIR = path.join(__dirname, '..');

interface Run {
  bench: string;
  minutes: number;
  /** Empty when it succeeded. */
  failure: string;
}

function benchNames(wanted: string[]): string[] {
  const all = readdirSync(BENCH_DIR)
    .filter((file) => file.endsWith('.ts'))
    .map((file) => file.slice(0, -'.ts'.length))
    .sort();
  const names = wanted.map((name) => path.basename(name).replace(/\.ts$/, ''));
  const unknown = names.filter((name) => !all.includes(name));
  if (unknown.length > 0) {
    throw new Error(`no bench named ${unknown.join(', ')}; the benches: ${all.join(', ')}`);
  }
  return names.length > 0 ? names : all;
}

/** Runs one bench; resolves with its failure, empty when it exited with 0. */
function runBench(bench: string, results: string): Promise<string> {
  const child = spawn(process.execPath, [require.resolve('tsx/cli'), path.join(BENCH_DIR, `${bench}.ts`)], {
    stdio: 'inherit',
    env: { ...process.env, BENCH_RESULTS: results, BENCH_NAME: bench },
  });
  return new Promise((resolve) => {
    child.on('error', (error) => resolve(error.message));
    child.on('exit', (code, signal) =>
      resolve(code === 0 ? '' : signal !== null ? `killed by ${signal}` : `exit code ${code}`),
    );
  });
}

/** A figure's value; JSON holds an infinite or undefined quotient (NaN) as null. */
function format(value: number | null): string {
  if (value === null || !Number.isFinite(value)) return '-';
  if (Number.isInteger(value)) return String(value);
  if (Math.abs(value) >= 100) return value.toFixed(0);
  return Math.abs(value) < 1 ? value.toFixed(3) : value.toFixed(2);
}

/** Rows as columns padded to their widest cell; numbers right-aligned. */
function printTable(header: string[], rows: string[][], right: Set<number>): void {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (right.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  console.log(line(header));
  console.log(line(widths.map((width) => '-'.repeat(width))));
  for (const row of rows) console.log(line(row));
}

function printSummary(runs: Run[], figures: Figure[]): void {
  console.log('');
  console.log(`Summary of ${runs.length} benches (median, lowest and highest round)`);
  console.log('');
  if (figures.length === 0) console.log('(no figures recorded)');
  else
    printTable(
      ['bench', 'figure', 'unit', 'median', 'min', 'max', 'rounds', 'goal', 'result'],
      figures.map((f) => [
        f.bench,
        f.label,
        f.unit,
        format(f.median),
        format(f.min),
        format(f.max),
        String(f.rounds),
        f.goal ?? '',
        goalResult(f),
      ]),
      new Set([3, 4, 5, 6]),
    );
  console.log('');
  printTable(
    ['bench', 'minutes', 'figures', 'outcome'],
    runs.map((run) => [
      run.bench,
      run.minutes.toFixed(1),
      String(figures.filter((f) => f.bench === run.bench).length),
      run.failure === '' ? 'ok' : `FAILED (${run.failure})`,
    ]),
    new Set([1, 2]),
  );
  const total = runs.reduce((sum, run) => sum + run.minutes, 0);
  const load = os
    .loadavg()
    .map((n) => n.toFixed(2))
    .join(', ');
  console.log(`total ${total.toFixed(1)} minutes; load average now ${load} on ${os.cpus().length} cores`);
}

async function main(): Promise<void> {
  const benches = benchNames(process.argv.slice(2));
  const temporary = process.env.BENCH_RESULTS
    ? undefined
    : mkdtempSync(path.join(os.tmpdir(), 'dbops-bench-'));
  const results = process.env.BENCH_RESULTS || path.join(temporary!, 'results.jsonl');
  writeFileSync(results, '');
  let interrupted = false;
  // Ctrl-C reaches the running bench too: it cleans up and exits; then the summary of what ran.
  process.on('SIGINT', () => {
    interrupted = true;
  });
  const runs: Run[] = [];
  try {
    for (const bench of benches) {
      if (interrupted) break;
      console.log(`\n[bench] ${bench} ...`);
      const started = performance.now();
      const failure = await runBench(bench, results);
      runs.push({ bench, minutes: (performance.now() - started) / 60_000, failure });
    }
    const figures = existsSync(results)
      ? readFileSync(results, 'utf8')
          .split('\n')
          .filter((text) => text !== '')
          .map((text) => JSON.parse(text) as Figure)
      : [];
    printSummary(runs, figures);
  } finally {
    if (temporary !== undefined) rmSync(temporary, { recursive: true, force: true });
  }
  if (interrupted) process.exitCode = 130;
  else if (runs.some((run) => run.failure !== '')) process.exitCode = 1;
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exitCode = 1;
});
