/**
 * How every benchmark measures: each side once as a warm-up (not counted), then at least five
 * rounds in alternating order (A, B, then B, A, ...), so whatever drifts during a run (caches,
 * autovacuum, other load on the machine) does not favour the side that always goes first. A
 * ratio is taken per round and reported as its median with its spread (lowest and highest), side
 * by side with the other ratios. drainWal() empties the WAL backlog before a timed step, so no side
 * pays for the checkpoint or archiving left behind by the one before.
 */
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
  /** What the ratio should be, e.g. ">= 0.7". */
  goal?: string;
}

/** `numerator[i] / denominator[i]` per round: its median and spread. */
export function ratio(label: string, numerator: number[], denominator: number[], goal?: string): Ratio {
  const values = numerator.map((value, i) => value / denominator[i]!);
  const sorted = [...values].sort((a, b) => a - b);
  return { label, median: median(values), min: sorted[0]!, max: sorted.at(-1)!, goal };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The ratios as a table: median, lowest, highest, goal. */
export function printRatios(ratios: Ratio[], rounds = ROUNDS): void {
  const width = Math.max(...ratios.map((r) => r.label.length), 5);
  const cell = (value: number) => value.toFixed(2).padStart(7);
  console.log(`${'ratio'.padEnd(width)}  median     min     max  (${rounds} rounds)  goal`);
  for (const r of ratios) {
    console.log(
      `${r.label.padEnd(width)}  ${cell(r.median)} ${cell(r.min)} ${cell(r.max)}  ${''.padEnd(11)}  ${r.goal ?? ''}`,
    );
  }
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
