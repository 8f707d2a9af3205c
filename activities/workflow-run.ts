/**
 * The workflow run an activity works for: what a deploy's migrations and a declared change's
 * phases record as the owner of what they apply, so a retry or a failure report can tell this
 * run's work from another's.
 */
import { ApplicationFailure, type Context } from '@temporalio/activity';

import { InvalidInputError } from '../workflows/lib/errors';

export interface WorkflowRun {
  workflowId: string;
  runId: string;
}

/** The run behind `context`; `what` says what needs one, for the error when there is none. */
export function workflowRunOf(context: Context, what: string): WorkflowRun {
  const run = context.info.workflowExecution;
  if (run === undefined) {
    throw ApplicationFailure.nonRetryable(`${what} only in a workflow run`, InvalidInputError.name);
  }
  return { workflowId: run.workflowId, runId: run.runId };
}
