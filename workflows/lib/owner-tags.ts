/**
 * The owner tags of what dbops creates, shared by workflows (which write them) and activities
 * (providers that recognise their own resource on a retried create, the orphan sweeper). Activities
 * import it, so it stays pure: no workflow API, no I/O, no Node built-ins.
 *
 * Every snapshot and instance a run creates carries them. The run's ids make a retried
 * create recognise its own resource (the provider carries on instead of failing), the purpose and
 * source tell what it is, and the sweeper deletes copies whose owning run has closed, except
 * those tagged `dbops:keep=true`.
 */

export const OWNER_TAGS = {
  workflowId: 'dbops:workflow-id',
  runId: 'dbops:run-id',
  purpose: 'dbops:purpose',
  source: 'dbops:source-instance',
  keep: 'dbops:keep',
} as const;

export type OwnerPurpose = 'backup' | 'restore' | 'dr-test' | 'pre-migration' | 'rehearsal';

export const DR_PURPOSE = 'dr-test' satisfies OwnerPurpose;

/** A deploy's copy of production, restored to rehearse its migrations on and deleted after. */
export const REHEARSAL_PURPOSE = 'rehearsal' satisfies OwnerPurpose;

/**
 * Whether the tags name a temporary copy (a DR test's or a rehearsal's): it lives minutes, gets the
 * cheap placement, no automated backups, and is an orphan once its owning run has closed.
 */
export function isTemporaryCopy(tags: Record<string, string>): boolean {
  const purpose = tags[OWNER_TAGS.purpose];
  return purpose === DR_PURPOSE || purpose === REHEARSAL_PURPOSE;
}

/** Whether a resource's tags name the run `owner` names: workflow id and run id both given and equal. */
export function ownedBy(tags: Record<string, string>, owner: Record<string, string>): boolean {
  const ids = [OWNER_TAGS.workflowId, OWNER_TAGS.runId];
  return ids.every((key) => owner[key] !== undefined && tags[key] === owner[key]);
}

/** The owner a resource's tags name, for messages. */
export function describeOwner(tags: Record<string, string>): string {
  const workflowId = tags[OWNER_TAGS.workflowId];
  if (workflowId === undefined) return `no dbops run (no ${OWNER_TAGS.workflowId} tag)`;
  return `workflow ${workflowId} run ${tags[OWNER_TAGS.runId] ?? '(none named)'}`;
}
