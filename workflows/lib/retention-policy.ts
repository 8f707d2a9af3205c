/**
 * The snapshot retention policy, shared by the `retention` workflow (which validates it), its
 * activities (which apply it) and the configuration (which sets it for the schedule and the CLI).
 * Pure: no workflow API, no I/O.
 */

/** What a retention run may expire and what it always keeps. */
export interface RetentionPolicy {
  /** Keep the newest N snapshots in scope of each instance (N >= 1). */
  keepNewest: number;
  /** Keep every snapshot in scope younger than this many days. */
  keepDays: number;
  /** Also judge manual snapshots dbops did not make (no backup or pre-migration tag). */
  includeForeign: boolean;
  /** Also judge automated snapshots (the provider may still refuse to delete them). */
  includeAutomated: boolean;
}

/** The policy when neither the input nor the configuration says otherwise. */
export const DEFAULT_RETENTION: RetentionPolicy = {
  keepNewest: 7,
  keepDays: 30,
  includeForeign: false,
  includeAutomated: false,
};

/** At most ten years: a longer wait is a typo. */
export const MAX_KEEP_DAYS = 3650;
