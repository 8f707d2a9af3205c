/**
 * Waits of days on the time-skipping server: stand-in control-plane activities that answer by the
 * server's clock (a 48-hour RDS snapshot cannot run here), and the run chain a workflow leaves when
 * it continues as new. Used by test/workflows/lib/polling.test.ts and by the recorder of the
 * histories that continue as new (test/fixtures/record-continued-histories.ts).
 */
import { Context } from '@temporalio/activity';
import type { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';

import type { Activities } from '../../activities';
import type {
  ExportDescription,
  InstanceDescription,
  SnapshotDescription,
} from '../../activities/control-plane/control-plane';
import { OWNER_TAGS } from '../../workflows/lib/owner-tags';

export const HOUR = 3_600_000;

/** The server's clock as the activity sees it: when this attempt was scheduled (skipped time). */
export const serverNow = () => Context.current().info.currentAttemptScheduledTimestampMs;

/** The source of the stand-in backup: 20 TiB. */
export const HUGE_SOURCE = 'huge-src';

/**
 * A backup of a 20 TiB source: the snapshot takes 48 hours, its export 24. `onCall` hears each
 * call: `snapshot ID`, `export SNAPSHOT as ID`, `look at ID`.
 */
export function backupStandIns(onCall: (call: string) => void = () => undefined): Partial<Activities> {
  let snapshotAt = 0;
  let exportAt = 0;
  const snapshot = (snapshotId: string, done: boolean): SnapshotDescription => ({
    snapshotId,
    instanceId: HUGE_SOURCE,
    type: 'manual',
    status: done ? 'available' : 'creating',
    createdAt: new Date(snapshotAt).toISOString(),
    percentProgress: done ? 100 : Math.floor(((serverNow() - snapshotAt) / (48 * HOUR)) * 100),
    sizeBytes: 20 * 2 ** 40,
    engineVersion: '15.7',
    tableRowCounts: undefined,
    tableContentHashes: undefined,
    tags: {},
  });
  const describeExport = (exportId: string): ExportDescription => {
    const done = serverNow() >= exportAt + 24 * HOUR;
    return {
      exportId,
      snapshotId: exportId.replace(/-export$/, ''),
      status: done ? 'complete' : 'in-progress',
      percentProgress: done ? 100 : 50,
      destination: `s3://stand-in/exports/${HUGE_SOURCE}/${exportId}`,
      failureCause: undefined,
    };
  };
  return {
    createSnapshot: (_instanceId, snapshotId) => {
      onCall(`snapshot ${snapshotId}`);
      snapshotAt = serverNow();
      return Promise.resolve(snapshot(snapshotId, false));
    },
    describeSnapshot: (snapshotId) => {
      onCall(`look at ${snapshotId}`);
      return Promise.resolve(snapshot(snapshotId, serverNow() >= snapshotAt + 48 * HOUR));
    },
    defaultExportDestination: (instanceId) =>
      Promise.resolve({ bucket: 'stand-in', prefix: `exports/${instanceId}` }),
    startExport: (exportId, snapshotId) => {
      onCall(`export ${snapshotId} as ${exportId}`);
      exportAt = serverNow();
      return Promise.resolve(describeExport(exportId));
    },
    describeExport: (exportId) => {
      onCall(`look at ${exportId}`);
      return Promise.resolve(describeExport(exportId));
    },
  };
}

/** The DR copies the stand-in sweep finds, each left by a terminated DR test. */
export const ORPHANS = ['gone-a', 'gone-b', 'gone-c'];

/**
 * Three DR copies whose owner was terminated; each takes 5 hours to delete. `onDelete` hears each
 * deletion asked for.
 */
export function sweepStandIns(onDelete: (instanceId: string) => void = () => undefined): Partial<Activities> {
  const owner = { workflowId: 'dead-dr-test', runId: 'f0e1d2c3-0000-4000-8000-000000000000' };
  const deletedAt = new Map<string, number>();
  const gone = (instanceId: string) =>
    deletedAt.has(instanceId) && serverNow() >= deletedAt.get(instanceId)! + 5 * HOUR;
  const instance = (instanceId: string): InstanceDescription => ({
    instanceId,
    status: deletedAt.has(instanceId) ? 'deleting' : 'available',
    providerStatus: deletedAt.has(instanceId) ? 'deleting' : 'available',
    endpoint: undefined,
    engineVersion: '15.7',
    earliestRestorableTime: undefined,
    latestRestorableTime: undefined,
    createdAt: undefined,
    multiAz: false,
    tags: { [OWNER_TAGS.workflowId]: owner.workflowId, [OWNER_TAGS.runId]: owner.runId },
  });
  return {
    // A stand-in for the sweeper's Temporal lookups: every orphan's owner was terminated.
    findOrphans: () =>
      Promise.resolve(
        ORPHANS.filter((id) => !gone(id)).map((instanceId) => ({
          instanceId,
          purpose: 'dr-test' as const,
          owner,
          ownerStatus: 'TERMINATED' as const,
          orphan: true,
          reason: 'DR copy whose owner terminated',
        })),
      ),
    findInstance: (instanceId) => Promise.resolve(gone(instanceId) ? null : instance(instanceId)),
    deleteInstance: (instanceId) => {
      onDelete(instanceId);
      if (!deletedAt.has(instanceId)) deletedAt.set(instanceId, serverNow());
      return Promise.resolve();
    },
  };
}

/** The histories of a workflow's runs, first to last, following its continue-as-new chain. */
export async function runChain(
  env: TestWorkflowEnvironment,
  workflowId: string,
  firstRunId: string,
): Promise<temporal.api.history.v1.IHistory[]> {
  const histories: temporal.api.history.v1.IHistory[] = [];
  let runId: string | undefined = firstRunId;
  while (runId !== undefined) {
    const history = await env.client.workflow.getHandle(workflowId, runId).fetchHistory();
    histories.push(history);
    runId =
      history.events?.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
  }
  return histories;
}
