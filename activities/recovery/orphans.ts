/**
 * Finding orphans for the sweeper (workflows/sweep-orphans.ts): instances a DR test, a deploy's
 * rehearsal or a restore created whose owning run has ended without deleting them. A terminated
 * `drTest` never runs its cleanup, and a restore cancelled or terminated while its create call
 * was in flight can leave a copy nobody manages; both cost money until someone notices. Only
 * instances carrying our tags are judged, and the owner named by the tags is asked for in
 * Temporal, so an instance of a run that is still going, or one without owner tags, is never an
 * orphan.
 */
import { Context, heartbeat } from '@temporalio/activity';
import {
  isGrpcServiceError,
  ServiceError,
  WorkflowNotFoundError,
  type WorkflowExecutionStatusName,
} from '@temporalio/client';

import { DR_PURPOSE, OWNER_TAGS, REHEARSAL_PURPOSE, type OwnerPurpose } from '../../workflows/lib/owner-tags';
import type { ControlPlane, InstanceDescription } from '../control-plane/control-plane';
import { describeOwnerRun } from './owner-run';

/** How the owning run stands: its Temporal status, or NOT_FOUND (never known, or past retention). */
export type OwnerStatus = WorkflowExecutionStatusName | 'NOT_FOUND';

export interface OrphanFinding {
  instanceId: string;
  /** `dbops:purpose`: what created the instance. */
  purpose: OwnerPurpose;
  /** The owning run named by the tags; null when they do not name one. */
  owner: { workflowId: string; runId: string } | null;
  /** Null when Temporal was not asked (no owner tags, or marked to keep) or refused the tags as malformed. */
  ownerStatus: OwnerStatus | null;
  orphan: boolean;
  /** Why it is an orphan, or why it is kept. */
  reason: string;
}

/** gRPC's INVALID_ARGUMENT: what Temporal answers for a run id that is no run id, or a bad workflow id. */
const GRPC_INVALID_ARGUMENT = 3;

/** Closed, and not by finishing its work: what is left of a restore then belongs to nobody. */
const ABANDONED: OwnerStatus[] = ['CANCELLED', 'TERMINATED', 'TIMED_OUT'];
const CLOSED: OwnerStatus[] = [...ABANDONED, 'COMPLETED', 'FAILED', 'CONTINUED_AS_NEW', 'NOT_FOUND'];

export function createOrphanActivities(controlPlane: ControlPlane) {
  return {
    /**
     * Every instance tagged as a DR copy or a restore target, each with its verdict and the
     * reason. Instances without those tags are not listed: they are none of the sweeper's business.
     */
    async findOrphans(): Promise<OrphanFinding[]> {
      const findings: OrphanFinding[] = [];
      const instances = await controlPlane.listInstances();
      for (const instance of instances) {
        const finding = await judge(instance);
        if (finding !== undefined) findings.push(finding);
        heartbeat({ judged: findings.length, of: instances.length });
        Context.current().cancellationSignal.throwIfAborted();
      }
      return findings.sort((a, b) => a.instanceId.localeCompare(b.instanceId));
    },
  };
}

async function judge(instance: InstanceDescription): Promise<OrphanFinding | undefined> {
  const { instanceId, tags } = instance;
  const purpose = tags[OWNER_TAGS.purpose];
  if (purpose !== DR_PURPOSE && purpose !== REHEARSAL_PURPOSE && purpose !== 'restore') return undefined;
  const workflowId = tags[OWNER_TAGS.workflowId];
  const runId = tags[OWNER_TAGS.runId];
  const owner = workflowId !== undefined && runId !== undefined ? { workflowId, runId } : null;
  const kept = (reason: string, ownerStatus: OwnerStatus | null = null): OrphanFinding => ({
    instanceId,
    purpose,
    owner,
    ownerStatus,
    orphan: false,
    reason,
  });
  if (tags[OWNER_TAGS.keep] === 'true') return kept(`tagged ${OWNER_TAGS.keep}=true`);
  if (owner === null) {
    return kept(
      `no owner tags (${OWNER_TAGS.workflowId} and ${OWNER_TAGS.runId}): nobody to ask whether it is done`,
    );
  }
  const status = await ownerStatus(owner.workflowId, owner.runId);
  if (typeof status === 'object') {
    return kept(`owner tags do not name a run Temporal knows: ${status.malformed}`);
  }
  const run = `owner ${owner.workflowId} (run ${owner.runId})`;
  if (!CLOSED.includes(status)) return kept(`${run} is ${describeStatus(status)}`, status);
  const orphan = (reason: string): OrphanFinding => ({ ...kept(reason, status), orphan: true });
  if (purpose === DR_PURPOSE) return orphan(`DR copy whose ${run} ${describeStatus(status)}`);
  if (purpose === REHEARSAL_PURPOSE) return orphan(`rehearsal copy whose ${run} ${describeStatus(status)}`);
  if (ABANDONED.includes(status)) return orphan(`restore target whose ${run} ${describeStatus(status)}`);
  if (status === 'COMPLETED') return kept(`${run} completed: the instance is the restore's result`, status);
  if (status === 'FAILED') return kept(`${run} failed: kept for inspection (delete it when done)`, status);
  return kept(`${run} ${describeStatus(status)}: how the restore ended is unknown`, status);
}

function describeStatus(status: OwnerStatus): string {
  switch (status) {
    case 'NOT_FOUND':
      return 'is unknown to Temporal (it ended longer ago than the retention period)';
    case 'CONTINUED_AS_NEW':
      return 'continued as new';
    case 'TIMED_OUT':
      return 'timed out';
    default:
      return status.toLowerCase();
  }
}

/** The owning run's status, or why Temporal refused the tags (e.g. a run id that is no run id). */
async function ownerStatus(workflowId: string, runId: string): Promise<OwnerStatus | { malformed: string }> {
  try {
    return (await describeOwnerRun(Context.current().client, workflowId, runId)).status.name;
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return 'NOT_FOUND';
    const cause = error instanceof ServiceError ? error.cause : undefined;
    if (isGrpcServiceError(cause) && Number(cause.code) === GRPC_INVALID_ARGUMENT) {
      return {
        malformed: `${cause.details || cause.message.replace(/^\d+ INVALID_ARGUMENT: /, '')} (${OWNER_TAGS.workflowId}=${workflowId}, ${OWNER_TAGS.runId}=${runId})`,
      };
    }
    throw error;
  }
}
