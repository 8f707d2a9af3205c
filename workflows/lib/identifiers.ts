/**
 * Identifier rules shared by workflows (validating input at the edge), activities and config.
 * Pure code: safe inside the workflow sandbox. Activities import it too, so it must stay pure: no
 * I/O, no Node built-ins, nothing from workers/, only types from activities/.
 */

/** RDS DB instance / snapshot identifier: letter first, letters/digits/hyphens, 1-63, no "--", no trailing "-". */
const RDS_IDENTIFIER = /^[A-Za-z](?!.*--)[A-Za-z0-9-]{0,62}(?<!-)$/;

export const RDS_IDENTIFIER_RULE =
  'a letter first, then letters, digits or hyphens, at most 63 characters, no double or trailing hyphen';

export function isRdsIdentifier(value: unknown): value is string {
  return typeof value === 'string' && RDS_IDENTIFIER.test(value);
}

/** A rollout hook's name, as DBOPS_ROLLOUT_HOOKS requires it. */
export const ROLLOUT_HOOK_NAME_RULE =
  'a hook name: lowercase letters, digits and hyphens, at most 63 characters';

export function isRolloutHookName(value: unknown): value is string {
  return typeof value === 'string' && /^[a-z0-9][a-z0-9-]{0,62}$/.test(value);
}
