/**
 * What `npm start` does so the user sees real recovery work at once: demo rows in the local
 * instance, then a backup and one DR test through the worker, with the report's location printed.
 */

import type { DatabaseConfig } from '../activities/config-types';
import type { LocalControlPlane } from '../activities/control-plane/local';
import { backup } from '../workflows';
import { utcStamp, type DrTestReport } from '../workflows/lib/recovery';
import { reportOfFailure } from './cli/common';
import type { Config } from './config';
import { drTestRun } from './dr-test-run';
import { seedDemoData } from './seed';
import { connectClient } from './temporal-connection';

/** A few thousand conversations with embeddings: enough for the indexes and recall to mean something. */
export const DEMO_DATA = { conversations: 1500, chunksPerConversation: 2 };

export async function prepareDemoData(database: DatabaseConfig): Promise<void> {
  const seeded = await seedDemoData(database, DEMO_DATA);
  if (seeded.migrationsApplied.length > 0) {
    console.log(`[start] migrations applied: ${seeded.migrationsApplied.join(', ')}`);
  }
  console.log(
    seeded.conversationsInserted > 0
      ? `[start] demo data: ${seeded.conversationsInserted} conversations, ${seeded.chunksInserted} chunks with embeddings`
      : '[start] demo data: already present',
  );
}

/**
 * A fresh snapshot, then the DR test of it; prints the outcome and where the report is. When
 * `workerStopped` settles first (Ctrl-C), the wait is abandoned: the workflows resume when a
 * worker runs again.
 */
export async function runDemoDrTest(config: Config, workerStopped: Promise<unknown>): Promise<void> {
  const { connection, client } = await connectClient(config.temporal);
  // An object, not a variable: the closure below changes it.
  const wait: { state: 'running' | 'done' | 'abandoned' } = { state: 'running' };
  const abandon = () => {
    if (wait.state !== 'running') return;
    wait.state = 'abandoned';
    void connection.close().catch(() => undefined);
  };
  workerStopped.then(abandon, abandon);
  try {
    const instanceId = config.instanceId;
    // The local provider settles in seconds: look every second.
    const timeouts = { pollInterval: '1 second' };
    const taken = await client.workflow.execute(backup, {
      taskQueue: config.temporal.taskQueue,
      workflowId: `backup-${instanceId}-${utcStamp(new Date())}`,
      workflowIdConflictPolicy: 'USE_EXISTING',
      args: [{ instanceId, timeouts }],
    });
    console.log(`[start] backup: snapshot ${taken.snapshotId} in ${taken.snapshotSeconds} s`);
    let report: DrTestReport;
    try {
      const run = await drTestRun(client, { taskQueue: config.temporal.taskQueue, instanceId, timeouts });
      const handle = await run.start();
      console.log(`[start] DR test ${run.workflowId} ...`);
      report = await handle.result();
    } catch (error) {
      const carried = reportOfFailure<DrTestReport>(error, 'DrTestFailed');
      if (carried === undefined) throw error;
      report = carried;
    }
    console.log(`[start] ${drTestOutcome(report)}`);
    const markdown = report.reportLocations.find((location) => location.endsWith('.md'));
    console.log(`[start] DR report: ${markdown ?? 'not written'}`);
  } catch (error) {
    if (wait.state !== 'abandoned') throw error;
    console.log('[start] DR test interrupted: it resumes at the next start');
  } finally {
    if (wait.state === 'running') {
      wait.state = 'done';
      await connection.close();
    }
  }
}

/**
 * One line for the outcome of a DR test: passed with its snapshot, RPO, RTO and number of checks,
 * or FAILED with why (the error, the failed checks); what the run never got to is left out.
 */
export function drTestOutcome(report: DrTestReport): string {
  const checks = report.checks.length;
  const facts = [
    report.snapshot === null ? 'no snapshot' : `snapshot ${report.snapshot.snapshotId}`,
    ...(report.rpoSeconds === null ? [] : [`RPO ${report.rpoSeconds} s`]),
    ...(report.rtoSeconds === null ? [] : [`RTO ${report.rtoSeconds} s`]),
    `${checks} ${checks === 1 ? 'check' : 'checks'}`,
  ].join(', ');
  if (report.ok) return `DR test passed: ${facts}`;
  const failed = report.checks.filter((check) => check.status === 'failed');
  const reasons = [
    ...(report.error === null ? [] : [report.error]),
    ...failed.map((check) => `check ${check.name} failed: ${check.detail.split('\n')[0]}`),
  ];
  return `DR test FAILED: ${reasons.join('; ') || 'no reason recorded'} (${facts})`;
}

/**
 * On Ctrl-C: stops every running local instance, the demo's and any DR copy of a DR test still
 * under way (its workflow resumes at the next start, finds the copy stopped and deletes it).
 */
export async function stopLocalInstances(plane: LocalControlPlane): Promise<void> {
  for (const instance of await plane.listInstances()) {
    if (instance.status === 'available') await plane.stopInstance(instance.instanceId);
  }
}
