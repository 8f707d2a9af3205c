/**
 * Generates every phase's SQL of a declared change from its operations and the table as the
 * catalog describes it (the new version's view lists the table's columns; names the change adds
 * must be free before expand). Pure: tests and `dbops plan` read the same SQL the phases run.
 */
import { InvalidInputError, InvalidStateError } from '../../../workflows/lib/errors';
import {
  quote,
  type AddedColumn,
  type Change,
  type Col,
  type ColumnPair,
  type DroppedColumn,
} from './definition';

export type Phase = 'expand' | 'tighten' | 'contract' | 'abort';
export const PHASES: Phase[] = ['expand', 'tighten', 'contract', 'abort'];

/** One transaction (`transaction`), or statements run one by one outside (CONCURRENTLY). */
export interface Step {
  transaction: boolean;
  statements: string[];
  /** A concurrent index build: an invalid left-over of that name is dropped before it runs. */
  index?: string;
}

export interface BackfillSql {
  /** The UPDATE's SET list; the row is `t`. */
  set: string;
  /** True for rows still to fill: `new IS DISTINCT FROM f(old)`. */
  pending: string;
}

export interface ChangePlan {
  change: string;
  description: string;
  table: string;
  key: string;
  operations: string[];
  /** The schema new code puts first in its search_path; undefined when the change needs none. */
  versionSchema: string | undefined;
  phases: Record<Phase, Step[]>;
  /** Undefined when no column needs filling. */
  backfill: BackfillSql | undefined;
}

/** What the plan needs from the catalog. */
export interface TableInfo {
  /** `default`: the default expression as SQL, null without one. */
  columns: { name: string; type: string; notNull: boolean; default: string | null }[];
  /** Index and constraint names (NOT NULL and the primary key aside) using each column. */
  usedBy: Record<string, string[]>;
  /** Relation and constraint names already in the table's schema. */
  names: string[];
}

interface Parts {
  change: Change;
  table: string;
  pairs: (ColumnPair & { tmp: string; oldNotNull: boolean; oldDefault: string | null })[];
  added: AddedColumn[];
  dropped: DroppedColumn[];
  /** Physical name of a column of the new version (by its new name). */
  physicalNew: (name: string) => string;
}

/** The physical column that holds a pair's new value until contract. */
function tmpColumn(pair: ColumnPair): string {
  return pair.renameAtContract ? `_new_${pair.old}` : pair.final;
}

/**
 * `expanded`: expand has run (its names exist now, the checks of free names are skipped).
 * Throws InvalidStateError when the table does not allow the change, naming what is in the way.
 */
export function planChange(change: Change, info: TableInfo, expanded: boolean): ChangePlan {
  const parts = collect(change, info, expanded);
  const { table } = parts;
  const fn = `${quote(change.schema)}.${quote(`dbops_sync_${change.ident}`)}`;
  const trigger = quote(`dbops_sync_${change.ident}`);
  const syncs = parts.pairs.length > 0 || parts.added.some((c) => c.up) || parts.dropped.some((c) => c.down);
  const versionSchema =
    parts.pairs.length + parts.added.length + parts.dropped.length > 0 ? `change_${change.ident}` : undefined;
  const notNullChecks = [
    ...parts.pairs.filter((p) => p.oldNotNull).map((p) => p.tmp),
    ...parts.added.filter((c) => c.up !== undefined).map((c) => c.name),
  ].map((column) => ({ column, name: `${column}_not_null` }));
  const newCol: Col = (name) => quote(parts.physicalNew(name));
  const constraints = change.operations.flatMap((op) => op.constraints ?? []);
  const indexes = change.operations.flatMap((op) => op.indexes ?? []);
  const alter = `ALTER TABLE ${table}`;

  const expandSql: string[] = [
    ...parts.pairs.flatMap((p) => [
      `${alter} ADD COLUMN ${quote(p.tmp)} ${p.type}`,
      // The old default, converted, for new-code inserts that leave the column out (set apart
      // from ADD COLUMN: a volatile default there would rewrite the table).
      ...(p.oldDefault === null
        ? []
        : [`${alter} ALTER COLUMN ${quote(p.tmp)} SET DEFAULT ${p.up(() => `(${p.oldDefault})`)}`]),
    ]),
    ...parts.added.map((c) =>
      c.default === undefined
        ? `${alter} ADD COLUMN ${quote(c.name)} ${c.type}`
        : `${alter} ADD COLUMN ${quote(c.name)} ${c.type} NOT NULL DEFAULT ${c.default}`,
    ),
  ];
  if (syncs) {
    expandSql.push(syncFunction(fn, versionSchema!, parts), syncTrigger(trigger, table, fn));
  }
  if (versionSchema !== undefined) {
    expandSql.push(
      `CREATE SCHEMA ${quote(versionSchema)}`,
      `CREATE VIEW ${quote(versionSchema)}.${quote(change.table)} AS\n  SELECT ${viewColumns(parts, info).join(', ')}\n    FROM ${table}`,
    );
  }
  const expandSteps: Step[] = [
    ...(expandSql.length > 0 ? [{ transaction: true, statements: expandSql }] : []),
    ...indexes.map((index) => ({
      transaction: false,
      index: index.name,
      statements: [
        `CREATE INDEX CONCURRENTLY IF NOT EXISTS ${quote(index.name)} ON ${table} ${index.definition(newCol)}`,
      ],
    })),
  ];

  const added = [
    ...notNullChecks.map((c) => ({ name: c.name, definition: `CHECK (${quote(c.column)} IS NOT NULL)` })),
    ...constraints.map((c) => ({ name: c.name, definition: c.definition(newCol) })),
  ];
  const tightenSteps: Step[] = [];
  if (added.length > 0) {
    tightenSteps.push({
      transaction: true,
      statements: added.flatMap((c) => [
        `${alter} DROP CONSTRAINT IF EXISTS ${quote(c.name)}`,
        `${alter} ADD CONSTRAINT ${quote(c.name)} ${c.definition} NOT VALID`,
      ]),
    });
    for (const c of added)
      tightenSteps.push({ transaction: true, statements: [`${alter} VALIDATE CONSTRAINT ${quote(c.name)}`] });
  }
  if (notNullChecks.length > 0) {
    tightenSteps.push({
      transaction: true,
      statements: notNullChecks.flatMap((c) => [
        '-- The validated check proves it: no table scan under the lock.\n' +
          `-- squawk-ignore adding-not-nullable-field\n${alter} ALTER COLUMN ${quote(c.column)} SET NOT NULL`,
        `${alter} DROP CONSTRAINT ${quote(c.name)}`,
      ]),
    });
  }

  const dropColumn = (column: string) =>
    `-- The old version's column: its code is gone (codeDeployed).\n-- squawk-ignore ban-drop-column\n${alter} DROP COLUMN ${quote(column)}`;
  const contractSql: string[] = [];
  if (syncs) contractSql.push(`DROP TRIGGER ${trigger} ON ${table}`, `DROP FUNCTION ${fn}()`);
  for (const p of parts.pairs) {
    contractSql.push(dropColumn(p.old));
    if (p.renameAtContract) {
      contractSql.push(
        `-- Its new version takes the name; new code reads it through the change's schema.\n` +
          `-- squawk-ignore renaming-column\n${alter} RENAME COLUMN ${quote(p.tmp)} TO ${quote(p.final)}`,
      );
    }
  }
  for (const c of parts.dropped) contractSql.push(dropColumn(c.name));

  const abortSql: string[] = [];
  if (versionSchema !== undefined) {
    abortSql.push(
      `DROP VIEW IF EXISTS ${quote(versionSchema)}.${quote(change.table)}`,
      `DROP SCHEMA IF EXISTS ${quote(versionSchema)}`,
    );
  }
  if (syncs)
    abortSql.push(`DROP TRIGGER IF EXISTS ${trigger} ON ${table}`, `DROP FUNCTION IF EXISTS ${fn}()`);
  for (const c of added) abortSql.push(`${alter} DROP CONSTRAINT IF EXISTS ${quote(c.name)}`);
  for (const column of [...parts.pairs.map((p) => p.tmp), ...parts.added.map((c) => c.name)]) {
    abortSql.push(
      `-- Added by expand: dropping it puts the table back as it was.\n-- squawk-ignore ban-drop-column\n${alter} DROP COLUMN IF EXISTS ${quote(column)}`,
    );
  }
  const abortSteps: Step[] = [
    ...indexes.map((index) => ({
      transaction: false,
      statements: [`DROP INDEX CONCURRENTLY IF EXISTS ${quote(change.schema)}.${quote(index.name)}`],
    })),
    ...(abortSql.length > 0 ? [{ transaction: true, statements: abortSql }] : []),
  ];

  return {
    change: change.name,
    description: change.description,
    table,
    key: change.key,
    operations: change.operations.map((op) => op.summary),
    versionSchema,
    phases: {
      expand: expandSteps,
      tighten: tightenSteps,
      contract: contractSql.length > 0 ? [{ transaction: true, statements: contractSql }] : [],
      abort: abortSteps,
    },
    backfill: backfillOf(change),
  };
}

function collect(change: Change, info: TableInfo, expanded: boolean): Parts {
  const refuse = (message: string): never => {
    throw new InvalidStateError(`change ${change.name} on ${change.schema}.${change.table}: ${message}`);
  };
  const column = (name: string) => info.columns.find((c) => c.name === name);
  if (info.columns.length === 0) refuse('no such table');
  if (column(change.key) === undefined) refuse(`no key column ${change.key}`);
  const pairs = change.operations
    .flatMap((op) => op.pairs ?? [])
    .map((pair) => {
      const old = column(pair.old) ?? refuse(`no column ${pair.old}`);
      return { ...pair, tmp: tmpColumn(pair), oldNotNull: old.notNull, oldDefault: old.default };
    });
  const added = change.operations.flatMap((op) => op.added ?? []);
  const dropped = change.operations.flatMap((op) => op.dropped ?? []);
  for (const c of dropped) {
    const existing = column(c.name) ?? refuse(`no column ${c.name}`);
    if (existing.notNull && existing.default === null && c.down === undefined)
      refuse(`${c.name} is NOT NULL without a default: declare down, the value new-code inserts get`);
  }
  for (const name of [...pairs.map((p) => p.old), ...dropped.map((c) => c.name)]) {
    const users = info.usedBy[name] ?? [];
    if (users.length > 0) {
      refuse(
        `${name} is used by ${users.join(', ')}, which would go with it at contract; declare their replacements on the new column first`,
      );
    }
  }
  if (!expanded) {
    const taken = [...pairs.map((p) => p.tmp), ...added.map((c) => c.name)].filter((name) => column(name));
    const ours = change.operations.flatMap((op) => [...(op.constraints ?? []), ...(op.indexes ?? [])]);
    const names = [
      ...ours.map((item) => item.name),
      ...pairs.filter((p) => p.oldNotNull).map((p) => `${p.tmp}_not_null`),
      ...added.filter((c) => c.up !== undefined).map((c) => `${c.name}_not_null`),
    ];
    taken.push(...names.filter((name) => info.names.includes(name)));
    if (info.names.includes(`change_${change.ident}`)) taken.push(`change_${change.ident}`);
    if (taken.length > 0) refuse(`names the change adds exist already: ${taken.join(', ')}`);
  }
  const byFinal = new Map(pairs.map((p) => [p.final, p.tmp]));
  return {
    change,
    table: `${quote(change.schema)}.${quote(change.table)}`,
    pairs,
    added,
    dropped,
    physicalNew: (name) => {
      const renamedAway = pairs.some((p) => p.old === name && p.final !== name) && !byFinal.has(name);
      if (renamedAway || dropped.some((c) => c.name === name))
        throw new InvalidInputError(`change ${change.name}: the new version has no column ${name}`);
      return byFinal.get(name) ?? name;
    },
  };
}

/** The new version's columns, in the table's order: new values under their new names. */
function viewColumns(parts: Parts, info: TableInfo): string[] {
  const ours = new Set([...parts.pairs.map((p) => p.tmp), ...parts.added.map((c) => c.name)]);
  const columns: string[] = [];
  for (const { name } of info.columns) {
    if (ours.has(name) || parts.dropped.some((c) => c.name === name)) continue;
    const pair = parts.pairs.find((p) => p.old === name);
    if (pair === undefined || pair.tmp === pair.final) columns.push(quote(pair?.tmp ?? name));
    else columns.push(`${quote(pair.tmp)} AS ${quote(pair.final)}`);
  }
  return [...columns, ...parts.added.map((c) => quote(c.name))];
}

/**
 * The sync trigger's function. A write through the change's schema (the session's search_path
 * names it) is new code: the old columns are computed from the new ones. Any other write is old
 * code (or the backfill): the new columns are computed from the old ones.
 */
function syncFunction(fn: string, versionSchema: string, parts: Parts): string {
  const oldRow: Col = (name) => `NEW.${quote(name)}`;
  const newRow: Col = (name) => `NEW.${quote(parts.physicalNew(name))}`;
  const fromNew: string[] = [];
  const fromOld: string[] = [];
  for (const p of parts.pairs) {
    const [n, o] = [`NEW.${quote(p.tmp)}`, `NEW.${quote(p.old)}`];
    fromNew.push(
      `IF TG_OP = 'INSERT' OR ${n} IS DISTINCT FROM OLD.${quote(p.tmp)} THEN\n      ${o} := ${p.down(newRow)};\n    ELSIF ${n} IS NULL THEN\n      ${n} := ${p.up(oldRow)};\n    END IF;`,
    );
    fromOld.push(
      `IF TG_OP = 'INSERT' OR ${o} IS DISTINCT FROM OLD.${quote(p.old)} OR ${n} IS NULL THEN\n      ${n} := ${p.up(oldRow)};\n    END IF;`,
    );
  }
  for (const c of parts.added) {
    if (c.up === undefined) continue;
    const n = `NEW.${quote(c.name)}`;
    fromNew.push(`IF ${n} IS NULL THEN\n      ${n} := ${c.up(oldRow)};\n    END IF;`);
    fromOld.push(`${n} := ${c.up(oldRow)};`);
  }
  for (const c of parts.dropped) {
    if (c.down === undefined) continue;
    const o = `NEW.${quote(c.name)}`;
    fromNew.push(`IF TG_OP = 'INSERT' AND ${o} IS NULL THEN\n      ${o} := ${c.down(newRow)};\n    END IF;`);
  }
  const schema = versionSchema.replaceAll("'", "''");
  return `CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $sync$
BEGIN
  IF current_setting('search_path') ~ '(^|,)\\s*"?${schema}"?\\s*(,|$)' THEN
    ${fromNew.join('\n    ') || 'NULL;'}
  ELSE
    ${fromOld.join('\n    ') || 'NULL;'}
  END IF;
  RETURN NEW;
END
$sync$`;
}

function syncTrigger(trigger: string, table: string, fn: string): string {
  return `CREATE TRIGGER ${trigger} BEFORE INSERT OR UPDATE ON ${table}\n  FOR EACH ROW EXECUTE FUNCTION ${fn}()`;
}

/** The backfill of a change (no catalog needed: the backfill registry builds it at start-up). */
export function backfillOf(change: Change): BackfillSql | undefined {
  const row: Col = (name) => `t.${quote(name)}`;
  const set: string[] = [];
  const pending: string[] = [];
  for (const p of change.operations.flatMap((op) => op.pairs ?? [])) {
    const tmp = quote(tmpColumn(p));
    set.push(`${tmp} = ${p.up(row)}`);
    pending.push(`t.${tmp} IS DISTINCT FROM ${p.up(row)}`);
  }
  for (const c of change.operations.flatMap((op) => op.added ?? [])) {
    if (c.up === undefined) continue;
    set.push(`${quote(c.name)} = ${c.up(row)}`);
    pending.push(`t.${quote(c.name)} IS NULL`);
  }
  return set.length === 0 ? undefined : { set: set.join(', '), pending: pending.join(' OR ') };
}

/** The plan as a reviewer reads it: each phase's SQL, statements ending with `;`. */
export function formatPlan(plan: ChangePlan): string {
  const lines = [
    `-- change ${plan.change}: ${plan.description}`,
    ...plan.operations.map((op) => `--   ${op}`),
    plan.versionSchema === undefined
      ? '-- new code uses the table itself'
      : `-- new code: SET search_path TO ${plan.versionSchema}, public`,
  ];
  const steps = (phase: Phase) =>
    plan.phases[phase].flatMap((step) => [
      step.transaction ? '-- one transaction' : '-- outside a transaction',
      ...step.statements.map((s) => `${s};`),
    ]);
  for (const phase of ['expand', 'tighten', 'contract', 'abort'] as const) {
    lines.push('', `-- ${phase}`, ...(plan.phases[phase].length === 0 ? ['-- (nothing)'] : steps(phase)));
    if (phase === 'expand') {
      lines.push('', '-- backfill (batches by key)');
      lines.push(
        plan.backfill === undefined
          ? '-- (nothing)'
          : `UPDATE ${plan.table} AS t SET ${plan.backfill.set}\n WHERE <batch of ${plan.key}> AND (${plan.backfill.pending});`,
      );
    }
  }
  return lines.join('\n');
}
