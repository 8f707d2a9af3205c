/**
 * The worker container's health check: healthy when a worker on this host polled its workflow
 * task queue within the last minute. Temporal records each poller's identity, which the SDK sets
 * to `<pid>@<hostname>`, so a container whose worker is stuck or gone turns unhealthy even while
 * another replica keeps the queue served. Exits 0 when healthy, 1 otherwise, saying why.
 */
import os from 'node:os';

import { Connection } from '@temporalio/client';

import { loadConfig, type TemporalConfig } from './config';
import { clientConnectionOptions } from './temporal-connection';

/** Longer than the long-poll timeout (about 70 s on the server), so a live poller always qualifies. */
export const POLL_MAX_AGE_MS = 90_000;

export interface Poller {
  identity: string;
  lastAccessTime: Date | undefined;
}

/** Who polled the workflow task queue recently, as the Temporal server reports it. */
export async function workflowPollers(connection: Connection, temporal: TemporalConfig): Promise<Poller[]> {
  const response = await connection.workflowService.describeTaskQueue({
    namespace: temporal.namespace,
    taskQueue: { name: temporal.taskQueue },
  });
  return (response.pollers ?? []).map((poller) => ({
    identity: poller.identity ?? '',
    lastAccessTime:
      poller.lastAccessTime?.seconds == null
        ? undefined
        : new Date(Number(poller.lastAccessTime.seconds) * 1000),
  }));
}

/** The poller of this host that was seen within `maxAgeMs`, if any. */
export function pollerOfHost(
  pollers: Poller[],
  hostname: string,
  now: Date,
  maxAgeMs = POLL_MAX_AGE_MS,
): Poller | undefined {
  return pollers.find(
    (poller) =>
      poller.identity.endsWith(`@${hostname}`) &&
      poller.lastAccessTime !== undefined &&
      now.getTime() - poller.lastAccessTime.getTime() <= maxAgeMs,
  );
}

async function main(): Promise<void> {
  const { temporal } = loadConfig();
  const connection = await Connection.connect({ ...clientConnectionOptions(temporal), connectTimeout: '5s' });
  try {
    const pollers = await workflowPollers(connection, temporal);
    const mine = pollerOfHost(pollers, os.hostname(), new Date());
    if (mine === undefined) {
      console.error(
        `unhealthy: no worker of ${os.hostname()} polled task queue ${temporal.taskQueue} in the last ${POLL_MAX_AGE_MS / 1000} s (pollers: ${pollers.map((p) => p.identity).join(', ') || 'none'})`,
      );
      process.exitCode = 1;
      return;
    }
    console.log(`healthy: ${mine.identity} polls ${temporal.taskQueue}`);
  } finally {
    await connection.close();
  }
}

if (require.main === module) {
  main().catch((error: Error) => {
    console.error(`unhealthy: ${error.message}`);
    process.exitCode = 1;
  });
}
