/**
 * One DR test per instance at a time. Every run restores to the same copy,
 * `<instance>-dr-test-<YYYYMMDD>`, so a second request while one runs would fail on it; instead it
 * joins the running test and gets its report. `dbops dr-test` and `npm start` use the id
 * `dr-test-<instance>-<YYYYMMDD>` with WorkflowIdConflictPolicy USE_EXISTING (two requests at once
 * become one run), and first look for a test of the instance already running under another id (the
 * monthly schedule's, whose ids carry the schedule's time stamp).
 */
import type { Client, WorkflowHandle } from '@temporalio/client';

import { drTest } from '../workflows';
import { utcDate } from '../workflows/lib/recovery';

export interface DrTestRequest {
  taskQueue: string;
  instanceId: string;
  timeouts: { pollInterval: string } | undefined;
  /** `random` or an ISO time: a point-in-time drill; absent: the newest snapshot. */
  pointInTime?: string | undefined;
}

export interface DrTestRun {
  workflowId: string;
  /** Start the run (or join the run of the same id); a getHandle when it runs under another id. */
  start: () => Promise<WorkflowHandle<typeof drTest>>;
}

export function drTestWorkflowId(instanceId: string, now: Date = new Date()): string {
  return `dr-test-${instanceId}-${utcDate(now)}`;
}

/** The DR test of `request.instanceId` running now, joined; otherwise a new one. */
export async function drTestRun(client: Client, request: DrTestRequest): Promise<DrTestRun> {
  const { instanceId } = request;
  // instanceId is an RDS identifier (letters, digits, hyphens): safe inside the quotes.
  const query = `WorkflowType = 'drTest' AND ExecutionStatus = 'Running' AND DbopsInstance = '${instanceId}'`;
  for await (const running of client.workflow.list({ query })) {
    return {
      workflowId: running.workflowId,
      start: () => Promise.resolve(client.workflow.getHandle<typeof drTest>(running.workflowId)),
    };
  }
  const workflowId = drTestWorkflowId(instanceId);
  return {
    workflowId,
    start: () =>
      client.workflow.start(drTest, {
        taskQueue: request.taskQueue,
        workflowId,
        workflowIdConflictPolicy: 'USE_EXISTING',
        staticSummary: `DR test of ${instanceId}: restore the newest snapshot, check it, delete it`,
        args: [
          {
            instanceId,
            timeouts: request.timeouts,
            ...(request.pointInTime === undefined ? {} : { pointInTime: request.pointInTime }),
          },
        ],
      }),
  };
}
