/**
 * Activities of the recovery workflows beyond the ControlPlane itself: finding an instance
 * without failing when it is missing, finding orphans of crashed DR tests, the DR checks on a
 * restored copy, storing the DR report, and the default export destination.
 */
import { ApplicationFailure, Context, heartbeat } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';

import { InvalidInputError, NotFoundError } from '../../workflows/lib/errors';
import { DR_PURPOSE, OWNER_TAGS, REHEARSAL_PURPOSE } from '../../workflows/lib/owner-tags';
import type { DrTestReport } from '../../workflows/lib/recovery';
import type { ControlPlane, ExportDestination, InstanceDescription } from '../control-plane/control-plane';
import type { DatabaseConnector } from '../postgres/connect';
import { runDrChecks, type DrChecksInput, type DrChecksResult } from '../postgres/dr-checks';
import { describeOwnerRun } from './owner-run';
import { writeDrReportFiles, type RecoveryStorage } from './reports';

export interface RecoveryActivityDeps {
  controlPlane: ControlPlane;
  connector: DatabaseConnector;
  storage: RecoveryStorage;
}

export function createRecoveryActivities({ controlPlane, connector, storage }: RecoveryActivityDeps) {
  return {
    /** The instance, or null when it does not exist (a wait for a deletion, a cleanup). */
    async findInstance(instanceId: string): Promise<InstanceDescription | null> {
      try {
        return await controlPlane.describeInstance(instanceId);
      } catch (error) {
        if (error instanceof NotFoundError) return null;
        throw error;
      }
    },

    /**
     * DR test instances of `instanceId`, and copies of it a deploy restored to rehearse on, that
     * no running workflow owns: left behind by a run that crashed or was terminated (its cleanup
     * never ran). Only instances carrying our tag count, so an instance someone merely named like
     * ours is never touched.
     */
    async findOrphanDrInstances(instanceId: string): Promise<string[]> {
      const prefix = `${instanceId}-dr-test-`;
      const own = Context.current().info.workflowExecution;
      const orphans: string[] = [];
      for (const instance of await controlPlane.listInstances()) {
        const drCopy =
          instance.instanceId.startsWith(prefix) && instance.tags[OWNER_TAGS.purpose] === DR_PURPOSE;
        const rehearsalCopy =
          instance.tags[OWNER_TAGS.purpose] === REHEARSAL_PURPOSE &&
          instance.tags[OWNER_TAGS.source] === instanceId;
        if (!drCopy && !rehearsalCopy) continue;
        const workflowId = instance.tags[OWNER_TAGS.workflowId];
        const runId = instance.tags[OWNER_TAGS.runId];
        if (workflowId === own?.workflowId && runId === own?.runId) continue;
        if (workflowId !== undefined && (await isRunning(workflowId, runId))) continue;
        orphans.push(instance.instanceId);
      }
      return orphans;
    },

    async runDrChecks(input: DrChecksInput): Promise<DrChecksResult> {
      return runDrChecks(connector, input, (check) => heartbeat(check));
    },

    /** Writes `<instance>-dr-test-<stamp>.json` and `.md` (with the trend); returns where they went. */
    writeDrReport(report: DrTestReport): Promise<string[]> {
      return writeDrReportFiles(storage.reports, report);
    },

    /** Where a backup's export goes when its input names no bucket. */
    defaultExportDestination(instanceId: string): Promise<ExportDestination> {
      if (storage.exportBucket === undefined) {
        throw ApplicationFailure.nonRetryable(
          'export: no bucket given and no default configured (set DBOPS_EXPORT_BUCKET or pass export.bucket)',
          InvalidInputError.name,
        );
      }
      return Promise.resolve({ bucket: storage.exportBucket, prefix: `exports/${instanceId}` });
    },
  };
}

async function isRunning(workflowId: string, runId: string | undefined): Promise<boolean> {
  try {
    const description = await describeOwnerRun(Context.current().client, workflowId, runId);
    return description.status.name === 'RUNNING';
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return false;
    throw error;
  }
}
