/**
 * What every `dbops` command group uses: flag parsing and the usage error (exit 2), printing a
 * table or `--json`, a Temporal client for the duration of a command, workflow failures reported by
 * their root cause, and waiting for a workflow while showing its progress.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

import {
  ActivityFailure,
  ApplicationFailure,
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  type Client,
} from '@temporalio/client';

import { InvalidInputError } from '../../workflows/lib/errors';
import { isRdsIdentifier, RDS_IDENTIFIER_RULE } from '../../workflows/lib/identifiers';
import { progressQuery } from '../../workflows/lib/recovery';
import type { Config } from '../config';
import { connectClient } from '../temporal-connection';

/** One command: its arguments after the command name; returns the exit code (void: 0). */
export type Command = (args: string[]) => Promise<void | number>;

/** A file of related commands: their lines in the usage text and the commands by name. */
export interface CommandGroup {
  usage: string;
  commands: Record<string, Command>;
}

/** A wrong command line: printed with the usage text, exit 2. */
export class UsageError extends Error {}

/** parseArgs with our flags; an unknown flag or a stray argument is a usage error. */
export function parse<T extends NonNullable<ParseArgsConfig['options']>>(
  command: string,
  args: string[],
  options: T,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError(`dbops ${command}: ${(error as Error).message}`);
  }
}

export function print(json: boolean | undefined, value: unknown, table: string[][]): void {
  if (json) {
    console.log(JSON.stringify(value, null, 2));
    return;
  }
  const widths = table[0]!.map((_, column) => Math.max(...table.map((row) => row[column]!.length)));
  for (const row of table)
    console.log(
      row
        .map((cell, column) => cell.padEnd(widths[column]!))
        .join('  ')
        .trimEnd(),
    );
}

/** Runs `fn` with a client of the configured Temporal server. */
export async function withTemporal<T>(config: Config, fn: (client: Client) => Promise<T>): Promise<T> {
  const { connection, client } = await connectClient(config.temporal);
  try {
    return await fn(client);
  } finally {
    await connection.close();
  }
}

/** A failed workflow reported by its root cause; bad input stays a usage error (exit 2). */
/** For a start's `.catch`: a run of that id is going already, said with what to do about it. */
export function alreadyRunning(workflowId: string): (error: Error) => never {
  return (error) => {
    if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
    throw new Error(`${workflowId} is already running; see dbops status ${workflowId}`);
  };
}

/**
 * The report a run carries when it failed as `type` (DrTestFailed, SweepIncomplete, …: the run
 * ended but not everything went well), or undefined for any other failure.
 */
export function reportOfFailure<T>(error: unknown, type: string): T | undefined {
  const cause = error instanceof WorkflowFailedError ? error.cause : undefined;
  return cause instanceof ApplicationFailure && cause.type === type ? (cause.details?.[0] as T) : undefined;
}

export async function explainFailure<T>(run: Promise<T>): Promise<T> {
  try {
    return await run;
  } catch (error) {
    if (!(error instanceof WorkflowFailedError)) throw error;
    const cause = error.cause instanceof ActivityFailure ? error.cause.cause : error.cause;
    if (cause instanceof ApplicationFailure && cause.type === InvalidInputError.name) {
      throw new InvalidInputError(cause.message);
    }
    throw new Error(cause?.message ?? error.message);
  }
}

/** `--instance ID`: that instance, found through the ControlPlane; absent: the worker's configured database. */
export function instanceOption(instance: string | undefined): string | undefined {
  if (instance !== undefined && !isRdsIdentifier(instance)) {
    throw new UsageError(`--instance ${JSON.stringify(instance)} is not valid: ${RDS_IDENTIFIER_RULE}`);
  }
  return instance;
}

/** Recovery workflows on a local provider settle in seconds: look more often than on RDS. */
export function pollTimeouts(config: Config): { pollInterval: string } | undefined {
  return config.provider === 'local' ? { pollInterval: '1 second' } : undefined;
}

/**
 * Starts a recovery workflow and waits for its result, printing its progress (the workflow's
 * `progress` query) to stderr whenever it changes, unless `quiet`. When `workflowId` is running
 * already (`start` uses WorkflowIdConflictPolicy USE_EXISTING), it says so and waits for that run.
 */
export async function runWithProgress<T>(
  client: Client,
  workflowId: string,
  start: () => Promise<{ result(): Promise<T> }>,
  quiet: boolean,
): Promise<T> {
  const runningSince = await client.workflow
    .getHandle(workflowId)
    .describe()
    .then(
      (description) => (description.status.name === 'RUNNING' ? description.startTime : undefined),
      () => undefined,
    );
  const handle = await start();
  if (!quiet) {
    console.error(
      runningSince === undefined
        ? `started ${workflowId}`
        : `joined ${workflowId}, running since ${runningSince.toISOString()}: its result is this request's`,
    );
  }
  const result = handle.result();
  let last = '';
  for (;;) {
    const settled = await Promise.race([
      result.then(
        () => true,
        () => true,
      ),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), 2000)),
    ]);
    if (settled) return result;
    const progress = await client.workflow
      .getHandle(workflowId)
      .query(progressQuery)
      .catch(() => undefined);
    if (!quiet && progress !== undefined && progress.step !== last) {
      last = progress.step;
      console.error(`[${new Date().toISOString().slice(11, 19)}] ${progress.step}`);
    }
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `--flag N` as an integer (its range is the workflow's to check, naming the field). */
export function integerOption(command: string, flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value))
    throw new UsageError(`dbops ${command}: --${flag} ${JSON.stringify(value)} is not an integer`);
  return Number(value);
}

/** The first argument as the required positional `what`, e.g. a workflow id. */
export function positional(command: string, what: string, args: string[]): [string, string[]] {
  const [value, ...rest] = args;
  if (value === undefined || value.startsWith('-'))
    throw new UsageError(`dbops ${command}: ${what} is required`);
  return [value, rest];
}

/** Waits for `result`, calling `look` every second meanwhile. */
export async function whileRunning<T>(result: Promise<T>, look: () => Promise<void>): Promise<T> {
  for (;;) {
    const settled = await Promise.race([
      result.then(
        () => true,
        () => true,
      ),
      sleep(1000).then(() => false),
    ]);
    if (settled) return result;
    await look();
  }
}

export const clock = () => new Date().toISOString().slice(11, 19);
