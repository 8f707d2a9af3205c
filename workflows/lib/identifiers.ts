/**
 * Identifier rules shared by workflows (validating input at the edge), activities and config.
 * Pure code: safe inside the workflow sandbox.
 */

/** RDS DB instance / snapshot identifier: letter first, letters/digits/hyphens, 1-63, no "--", no trailing "-". */
const RDS_IDENTIFIER = /^[A-Za-z](?!.*--)[A-Za-z0-9-]{0,62}(?<!-)$/;

export const RDS_IDENTIFIER_RULE =
  'a letter first, then letters, digits or hyphens, at most 63 characters, no double or trailing hyphen';

export function isRdsIdentifier(value: unknown): value is string {
  return typeof value === 'string' && RDS_IDENTIFIER.test(value);
}
