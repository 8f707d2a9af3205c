/**
 * `dbops`: the command line of the ControlPlane of the configured provider. One function per
 * command in `commands`; to add one, write `async function name(args: string[])` and list it there.
 * `--json` prints the description objects of the ControlPlane interface as a JSON array (stable:
 * scripts rely on it, see docs/local-provider.md). Exit codes: 0 done, 1 failed, 2 usage error
 * (unknown command or flag, missing or invalid argument).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

import type { InstanceDescription, SnapshotDescription } from '../activities/control-plane/control-plane';
import { createControlPlane } from '../activities/control-plane';
import { InvalidInputError } from '../workflows/lib/errors';
import { loadConfig } from './config';

class UsageError extends Error {}

const USAGE = `usage: dbops <command> [options]

commands:
  instances [--json]                 instances with their status and endpoint
  snapshots --instance ID [--json]   snapshots of an instance, newest first`;

/** parseArgs with our flags; an unknown flag or a stray argument is a usage error. */
function parse<T extends NonNullable<ParseArgsConfig['options']>>(
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

function print(json: boolean | undefined, value: unknown, table: string[][]): void {
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

async function instances(args: string[]): Promise<void> {
  const { json } = parse('instances', args, { json: { type: 'boolean' } });
  const list: InstanceDescription[] = await createControlPlane(loadConfig()).listInstances();
  print(json, list, [
    ['INSTANCE', 'STATUS', 'ENDPOINT', 'ENGINE', 'LATEST RESTORABLE'],
    ...list.map((i) => [
      i.instanceId,
      i.status,
      i.endpoint ? `${i.endpoint.user}@${i.endpoint.host}:${i.endpoint.port}/${i.endpoint.database}` : '-',
      i.engineVersion,
      i.latestRestorableTime ?? '-',
    ]),
  ]);
}

async function snapshots(args: string[]): Promise<void> {
  const { json, instance } = parse('snapshots', args, {
    json: { type: 'boolean' },
    instance: { type: 'string' },
  });
  if (instance === undefined) throw new UsageError('dbops snapshots: --instance ID is required');
  const list: SnapshotDescription[] = await createControlPlane(loadConfig()).listSnapshots(instance);
  print(json, list, [
    ['SNAPSHOT', 'TYPE', 'STATUS', 'CREATED', 'SIZE'],
    ...list.map((s) => [
      s.snapshotId,
      s.type,
      s.status,
      s.createdAt ?? '-',
      s.sizeBytes === undefined ? '-' : `${(s.sizeBytes / 1024 / 1024).toFixed(1)} MiB`,
    ]),
  ]);
}

const commands: Record<string, (args: string[]) => Promise<void>> = { instances, snapshots };

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined) {
    console.error(USAGE);
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE);
    return 0;
  }
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  try {
    if (command === undefined) throw new UsageError(`dbops: unknown command ${JSON.stringify(name)}`);
    await command(args);
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`${error.message}\n\n${USAGE}`);
      return 2;
    }
    // A bad argument value (e.g. an invalid identifier) is a usage error too.
    if (error instanceof InvalidInputError) {
      console.error(`dbops ${name}: ${error.message}`);
      return 2;
    }
    const failure = error as Error;
    console.error(`dbops ${name} failed: ${failure.name}: ${failure.message}`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (error: Error) => {
    console.error(error.message);
    process.exitCode = 1;
  },
);
