import { proxyActivities } from '@temporalio/workflow';

import type { Activities, PingResult } from '../activities';

const { pingDatabase } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { maximumAttempts: 3 },
});

/** Smallest end-to-end proof: the worker reaches the database. */
export async function ping(): Promise<PingResult> {
  return pingDatabase();
}
