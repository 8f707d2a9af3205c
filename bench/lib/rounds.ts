/**
 * How every benchmark measures: each side once as a warm-up (not counted), then at least five
 * rounds in alternating order (A, B, then B, A, ...), so whatever drifts during a run (caches,
 * autovacuum, other load on the machine) does not favour the side that always goes first. A
 * ratio is taken per round and reported as its median with its spread (lowest and highest), side
 * by side with the other ratios. drainWal() empties the WAL backlog before a timed step, so no side
 * pays for the checkpoint or archiving left behind by the one before.
 *
 * Every figure printed through printRatios, and every other figure a bench hands to record(), is
 * also appended to the results file named by BENCH_RESULTS (when set, as `npm run bench` does):
 * the summary table at the end of `npm run bench` is read from it (bench/lib/run-all.ts).
 */
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import type { Client } from 'pg';

export const ROUNDS = Math.max(5, Number(process.env.BENCH_ROUNDS ?? 5));

/** A side of the comparison: prepares, then returns the measured figure (e.g. seconds) of one run. */
export type Side = () => Promise<number>;

/** Every side's figure per counted round, in round order. */
export type Samples<K extends string> = Record<K, number[]>;

/**
 * Runs every side once as a warm-up, then `rounds` rounds, odd rounds in the given order and even
 * rounds in reverse. `progress` hears each counted round's figures.
 */
export async function alternate<K extends string>(
  sides: Record<K, Side>,
  progress: (round: number, figures: Record<K, number>) => void = () => undefined,
  rounds = ROUNDS,
): Promise<Samples<K>> {
  const names = Object.keys(sides) as K[];
  for (const name of names) await sides[name]();
  const samples = Object.fromEntries(names.map((name) => [name, [] as number[]])) as Samples<K>;
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? names : [...names].reverse();
    const figures = {} as Record<K, number>;
    for (const name of order) figures[name] = await sides[name]();
    for (const name of names) samples[name].push(figures[name]);
    progress(round, figures);
  }
  return samples;
}

export interface Ratio {
  label: string;
  median: number;
  min: number;
  max: number;
  /** How many rounds it was taken in. */
  rounds: number;
  /** What the ratio should be, e.g. ">= 0.7" (see goalResult). */
  goal?: string;
}

/** `numerator[i] / denominator[i]` per round: its median and spread. */
export function ratio(label: string, numerator: number[], denominator: number[], goal?: string): Ratio {
  if (goal !== undefined) goalCheck(goal);
  const values = numerator.map((value, i) => value / denominator[i]!);
  const sorted = [...values].sort((a, b) => a - b);
  return {
    label,
    median: median(values),
    min: sorted[0]!,
    max: sorted.at(-1)!,
    rounds: values.length,
    goal,
  };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The ratios as a table: median, lowest, highest, goal; each also recorded for the summary. */
export function printRatios(ratios: Ratio[], rounds = ROUNDS): void {
  for (const r of ratios) save({ ...r, unit: '' });
  const width = Math.max(...ratios.map((r) => r.label.length), 5);
  const cell = (value: number) => value.toFixed(2).padStart(7);
  console.log(`${'ratio'.padEnd(width)}  median     min     max  (${rounds} rounds)  goal`);
  for (const r of ratios) {
    console.log(
      `${r.label.padEnd(width)}  ${cell(r.median)} ${cell(r.min)} ${cell(r.max)}  ${''.padEnd(11)}  ${r.goal ?? ''}`,
    );
  }
}

/** A figure as the summary of `npm run bench` shows it: one line of the results file. */
export interface Figure extends Ratio {
  /** The bench that measured it, e.g. "backfill". */
  bench: string;
  /** What the values are in, e.g. "s"; empty for a ratio. */
  unit: string;
}

/**
 * Records a figure a bench prints outside printRatios, measured once per round (seconds, failed
 * transactions, a batch size, a recall), with its goal if it has one, for the summary table.
 */
export function record(
  label: string,
  values: number[],
  options: { unit?: string; goal?: string } = {},
): void {
  if (values.length === 0) throw new Error(`record ${label}: no values`);
  if (options.goal !== undefined) goalCheck(options.goal);
  const sorted = [...values].sort((a, b) => a - b);
  save({
    label,
    unit: options.unit ?? '',
    median: median(values),
    min: sorted[0]!,
    max: sorted.at(-1)!,
    rounds: values.length,
    goal: options.goal,
  });
}

function save(figure: Omit<Figure, 'bench'>): void {
  const file = process.env.BENCH_RESULTS;
  if (file === undefined || file === '') return;
  const bench = process.env.BENCH_NAME ?? path.basename(process.argv[1] ?? 'bench', '.ts');
  appendFileSync(file, `${JSON.stringify({ bench, ...figure })}\n`);
}

const NUMBER = String.raw`(-?\d+(?:\.\d+)?)`;
const GOAL = new RegExp(String.raw`^(?:(>=|<=|=)\s*${NUMBER}|${NUMBER} to ${NUMBER})(?:\s+\(.*\))?$`);

/**
 * The test a goal stands for: ">= x", "<= x", "= x" or "a to b" (both ends included), optionally
 * followed by a note in parentheses, e.g. "0.9 to 1.1 (linear)". Any other goal is an error, so
 * every goal in the summary can be judged.
 */
function goalCheck(goal: string): (value: number) => boolean {
  const match = GOAL.exec(goal.trim());
  if (match === null) {
    throw new Error(`goal ${JSON.stringify(goal)}: expected ">= x", "<= x", "= x" or "a to b"`);
  }
  const [, op, bound, low, high] = match;
  if (op === '>=') return (value) => value >= Number(bound);
  if (op === '<=') return (value) => value <= Number(bound);
  if (op === '=') return (value) => value === Number(bound);
  return (value) => value >= Number(low) && value <= Number(high);
}

/** Whether a figure met its goal: in every round (its lowest and highest), by its median only, or not. */
export function goalResult(figure: Ratio): 'met' | 'median only' | 'not met' | '' {
  if (figure.goal === undefined) return '';
  const check = goalCheck(figure.goal);
  if (check(figure.min) && check(figure.max)) return 'met';
  return check(figure.median) ? 'median only' : 'not met';
}

/**
 * Checkpoints, switches to a new WAL segment and waits until the archiver has archived it: no
 * dirty buffers or archive backlog left for the next timed step. `client` is a superuser's.
 */
export async function drainWal(client: Client): Promise<void> {
  await client.query('CHECKPOINT');
  const { rows } = await client.query<{ wal: string }>(`SELECT pg_walfile_name(pg_switch_wal()) AS wal`);
  const target = rows[0]!.wal;
  for (let i = 0; i < 6000; i++) {
    const { rows: archiver } = await client.query<{ last: string | null; archiving: boolean }>(
      `SELECT last_archived_wal AS last, current_setting('archive_mode') <> 'off' AS archiving FROM pg_stat_archiver`,
    );
    const { last, archiving } = archiver[0]!;
    if (!archiving || (last !== null && last.slice(0, 24) >= target)) return;
    await sleep(100);
  }
  throw new Error(`the WAL archive did not catch up with ${target} within 10 minutes`);
}

/** Seconds `what` takes. */
export async function timed(what: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await what();
  return (performance.now() - started) / 1000;
}
