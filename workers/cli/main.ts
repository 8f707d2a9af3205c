/**
 * `dbops`: the command line of the configured provider and of the workflows on the worker. This
 * file dispatches: it finds the command in `GROUPS`, runs it and turns its outcome into the exit
 * code. Exit codes: 0 done, 1 failed, 2 usage error (unknown command or flag, missing or invalid
 * argument), 3 `health` found a critical problem. `--json` prints the description objects of the
 * ControlPlane interface as a JSON array (stable: scripts rely on it, see docs/local-provider.md).
 *
 * Commands come in groups, one file each (./inventory.ts, ./operations.ts, ...), exporting a
 * `CommandGroup`: its lines of the usage text and one `async function name(args: string[])` per
 * command. Adding a group is one new file plus one line here: e.g. ./sweep.ts exporting
 * `sweep: CommandGroup`, then `sweep` in `GROUPS` (and its import). The helpers every command uses
 * (parse, print, withTemporal, explainFailure, runWithProgress, ...) are in ./common.ts.
 */
import { InvalidInputError } from '../../workflows/lib/errors';
import { change } from './change';
import { codec } from './codec';
import { declared } from './declared';
import { UsageError, type Command, type CommandGroup } from './common';
import { vectorIndexes } from './index-cmd';
import { inventory } from './inventory';
import { operations } from './operations';
import { recovery } from './recovery';
import { retention } from './retention';
import { sweep } from './sweep';

/** In the order of the usage text. */
const GROUPS: CommandGroup[] = [
  inventory,
  operations,
  recovery,
  sweep,
  retention,
  change,
  declared,
  vectorIndexes,
  codec,
];

const USAGE = `usage: dbops <command> [options]

commands:
${GROUPS.map((group) => group.usage).join('\n')}`;

const commands: Record<string, Command> = Object.fromEntries(
  GROUPS.flatMap((group) => Object.entries(group.commands)),
);

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
    return (await command(args)) ?? 0;
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
