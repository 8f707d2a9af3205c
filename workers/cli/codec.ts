/** `dbops codec-server`: the payload codec over HTTP for the Web UI and the Temporal CLI. */
import { runCodecServer } from '../codec-server';
import { loadConfig } from '../config';
import { parse, type CommandGroup } from './common';

export const codec: CommandGroup = {
  usage: `  codec-server                       decode encrypted payloads for the Web UI and the Temporal
                                     CLI until Ctrl-C (see docs/security.md)`,
  commands: { 'codec-server': codecServer },
};

async function codecServer(args: string[]): Promise<void> {
  parse('codec-server', args, {});
  await runCodecServer(loadConfig());
}
