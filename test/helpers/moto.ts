/** A moto server (an independent implementation of the AWS APIs) on a free loopback port. */
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

import { freePort, waitForPort } from '../../activities/ports';
import { requireTool } from '../../workers/tools';

export interface MotoServer {
  endpoint: string;
  /** Dummy credentials: moto accepts any. */
  credentials: { accessKeyId: string; secretAccessKey: string };
  region: string;
  /** Forgets every resource (moto's reset API). */
  reset(): Promise<void>;
  stop: () => Promise<void>;
}

export async function startMoto(env: NodeJS.ProcessEnv = {}): Promise<MotoServer> {
  const port = await freePort();
  const child = spawn(requireTool('motoServer'), ['-H', '127.0.0.1', '-p', String(port)], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  try {
    await waitForPort(port, 'moto_server', {
      stillAlive: () => (child.exitCode === null ? undefined : `exit ${child.exitCode}: ${stderr}`),
    });
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    region: 'us-east-1',
    async reset() {
      const response = await fetch(`${endpoint}/moto-api/reset`, { method: 'POST' });
      if (!response.ok) throw new Error(`moto reset failed: HTTP ${response.status}`);
    },
    stop: () => stopChild(child),
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(5000).then(() => child.kill('SIGKILL'))]);
}
