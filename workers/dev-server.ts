/**
 * The Temporal dev server `npm start` runs (history in a SQLite file, Web UI). It is started in
 * its own process group so we stop it ourselves after the worker, and a pid file lets the next
 * start clean up a server orphaned by a crash.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { devServerSearchAttributeArgs } from '../workflows/lib/search-attributes';
import { isPortOpen, waitForPort } from '../activities/ports';
import { requireTool } from './tools';

export interface DevServer {
  pid: number;
  stop: () => Promise<void>;
}

export interface DevServerOptions {
  port: number;
  uiPort: number;
  namespace: string;
  /** Directory for the history database, log and pid file. */
  dir: string;
}

export async function startDevServer(options: DevServerOptions): Promise<DevServer> {
  await mkdir(options.dir, { recursive: true });
  const pidFile = path.join(options.dir, 'temporal.pid');
  await stopOrphan(pidFile, 'the Temporal dev server', 'start-dev');
  for (const port of [options.port, options.uiPort]) {
    if (await isPortOpen(port)) {
      throw new Error(
        `port ${port} is already in use: stop what listens there or set TEMPORAL_ADDRESS / DBOPS_UI_PORT`,
      );
    }
  }

  const log = openSync(path.join(options.dir, 'temporal.log'), 'a');
  const child = spawn(
    requireTool('temporal'),
    [
      'server',
      'start-dev',
      '--ip',
      '127.0.0.1',
      '--port',
      String(options.port),
      '--ui-port',
      String(options.uiPort),
      '--namespace',
      options.namespace,
      '--db-filename',
      path.join(options.dir, 'temporal.db'),
      '--log-level',
      'warn',
      ...devServerSearchAttributeArgs(),
    ],
    { detached: true, stdio: ['ignore', log, log] },
  );
  closeSync(log);
  const pid = child.pid!;
  await writeFile(pidFile, String(pid));

  const stop = async () => {
    await terminate(pid);
    await rm(pidFile, { force: true });
  };
  try {
    await waitForPort(options.port, 'temporal server', {
      stillAlive: () =>
        child.exitCode === null ? undefined : `exit ${child.exitCode}, see ${options.dir}/temporal.log`,
    });
    await waitForPort(options.uiPort, 'temporal web UI');
  } catch (error) {
    await stop();
    throw error;
  }
  return { pid, stop };
}

/**
 * A server left by a crashed start still holds the ports: stop it if it is ours (the process of the
 * pid file runs a command line containing `marker`).
 */
export async function stopOrphan(pidFile: string, what: string, marker: string): Promise<void> {
  const pid = Number(await readFile(pidFile, 'utf8').catch(() => ''));
  if (!pid) return;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (cmdline.includes(marker)) {
    console.log(`stopping ${what} left running by an earlier start (pid ${pid})`);
    await terminate(pid);
  }
  await rm(pidFile, { force: true });
}

/** SIGTERM to the process group, SIGKILL after 10 s. */
export async function terminate(pid: number): Promise<void> {
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(-pid, name);
    } catch {
      // already gone
    }
  };
  signal('SIGTERM');
  for (let waited = 0; alive() && waited < 10_000; waited += 100) await sleep(100);
  if (alive()) signal('SIGKILL');
}
