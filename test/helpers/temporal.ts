/** Temporal test environments on the binaries `npm run setup` installed (never a download). */
import { readdir, readFile } from 'node:fs/promises';

import { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';

import { freePort } from '../../activities/ports';
import { searchAttributeKeys } from '../../workflows/lib/search-attributes';
import { requireTool } from '../../workers/tools';

/** A Temporal dev server (the same one `npm start` runs) with our search attributes registered. */
export function createDevServerEnv(): Promise<TestWorkflowEnvironment> {
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: requireTool('temporal') },
      searchAttributes: searchAttributeKeys,
      ip: '127.0.0.1',
    },
  });
}

/**
 * The Java time-skipping test server: timers fire as soon as nothing else is running. Our search
 * attributes are registered, as on the dev server (the recovery workflows set them).
 */
export async function createTimeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  const env = await startTimeSkippingServer();
  await env.connection.operatorService.addSearchAttributes({
    namespace: 'default',
    searchAttributes: Object.fromEntries(
      searchAttributeKeys.map((key) => [
        key.name,
        temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
      ]),
    ),
  });
  return env;
}

/**
 * The SDK gives the server 5 s to answer; a JVM starting on a busy 2-core machine can take longer.
 * A start that timed out is tried again (three times in all) on another port, after its server,
 * which the SDK leaves running, is stopped.
 */
async function startTimeSkippingServer(attempt = 1): Promise<TestWorkflowEnvironment> {
  const port = await freePort();
  try {
    return await TestWorkflowEnvironment.createTimeSkipping({
      server: { executable: { type: 'existing-path', path: requireTool('temporalTestServer') }, port },
    });
  } catch (error) {
    if (attempt === 3 || !/did not start within/.test(String(error))) throw error;
    console.warn(`the time-skipping server on port ${port} did not start in time; starting another`);
    await stopTestServerOn(port);
    return startTimeSkippingServer(attempt + 1);
  }
}

/** Kills the Java test server listening on `port` (its command line ends with its class and port). */
async function stopTestServerOn(port: number): Promise<void> {
  for (const pid of await readdir('/proc').catch(() => [])) {
    if (!/^\d+$/.test(pid)) continue;
    const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const at = args.indexOf(TEST_SERVER_CLASS);
    if (at < 0 || args[at + 1] !== String(port)) continue;
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // It ended meanwhile.
    }
  }
}

const TEST_SERVER_CLASS = 'io.temporal.testserver.TestServer';

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/** The workflow bundle, built once per test run (webpack takes seconds). */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows'), logger: quietLogger });
  return bundle;
}

const quietLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (message: string) => console.warn(message),
  error: (message: string) => console.error(message),
};
