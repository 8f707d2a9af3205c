/**
 * `bin/dbops …args` as a user runs it: a child process with the suite's settings in its
 * environment (its Temporal server, task queue, state directory), its exit code and both streams.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';

import { projectRoot } from '../../activities/config-types';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Settings of a suite that runs the local provider; `extra` adds or overrides variables. */
export interface CliTarget {
  address?: string;
  taskQueue?: string;
  stateDir?: string;
  extra?: Record<string, string>;
}

export function runDbops(target: CliTarget, args: string[]): Promise<CliRun> {
  const env: NodeJS.ProcessEnv = { ...process.env, DBOPS_PROVIDER: 'local' };
  if (target.address !== undefined) env.TEMPORAL_ADDRESS = target.address;
  if (target.taskQueue !== undefined) env.DBOPS_TASK_QUEUE = target.taskQueue;
  if (target.stateDir !== undefined) env.DBOPS_STATE_DIR = target.stateDir;
  Object.assign(env, target.extra);
  return new Promise((resolve) => {
    execFile(path.join(projectRoot, 'bin', 'dbops'), args, { env }, (error, stdout, stderr) =>
      resolve({ code: error ? Number(error.code) : 0, stdout, stderr }),
    );
  });
}
