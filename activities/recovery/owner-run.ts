/**
 * How the run that owns a resource stands, for the sweeper and the DR test's orphan check. Owner
 * tags name a workflow and the FIRST run of its chain (workflows/lib/recovery.ts runOwner): a run
 * that continued as new handed its wait, and what it created, to the next run of the chain. So the
 * owner is the chain's latest run, found here by following each continued run to the next.
 */
import type { Client, WorkflowExecutionDescription } from '@temporalio/client';
import { temporal } from '@temporalio/proto';

/** The latest run of the chain that `runId` began (the latest run of the workflow without one). */
export async function describeOwnerRun(
  client: Client,
  workflowId: string,
  runId: string | undefined,
): Promise<WorkflowExecutionDescription> {
  let description = await client.workflow.getHandle(workflowId, runId).describe();
  while (description.status.name === 'CONTINUED_AS_NEW') {
    const next = await continuedAs(client, workflowId, description.runId);
    if (next === undefined) break;
    description = await client.workflow.getHandle(workflowId, next).describe();
  }
  return description;
}

/** The run a closed run continued as: read from its close event alone. */
async function continuedAs(client: Client, workflowId: string, runId: string): Promise<string | undefined> {
  const { history } = await client.workflowService.getWorkflowExecutionHistory({
    namespace: client.options.namespace,
    execution: { workflowId, runId },
    historyEventFilterType:
      temporal.api.enums.v1.HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT,
  });
  const next = history?.events?.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId;
  return next === null || next === undefined || next === '' ? undefined : next;
}
