/**
 * Schema migrations: SQL files in `migrations/` run by node-pg-migrate, linted by squawk.
 *
 * A migration file is plain SQL with node-pg-migrate's `-- Up Migration` / `-- Down Migration`
 * sections (no down section: irreversible) and optional directives on their own comment line:
 * - `-- dbops:no-transaction`: run outside a transaction, one statement at a time (needed by
 *   CREATE INDEX CONCURRENTLY). Each statement must end with `;` at the end of a line.
 * - `-- dbops:only-in <workflow>`: held back from a plain deploy; only that workflow applies it
 *   (the tighten and contract phases of an expand/contract change).
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import type { MigrationBuilder, RunnerOption } from 'node-pg-migrate' with {
  'resolution-mode': 'import',
};
import type { Client } from 'pg';

import { InvalidInputError, InvalidStateError } from '../../workflows/lib/errors';

/** The table node-pg-migrate records applied migrations in. */
export const MIGRATIONS_TABLE = 'pgmigrations';

export interface MigrationFile {
  /** File name without `.sql`: what node-pg-migrate records as applied. */
  name: string;
  file: string;
  up: string;
  /** Undefined when the file has no down section: the migration cannot be reversed. */
  down: string | undefined;
  noTransaction: boolean;
  onlyIn: string | undefined;
}

const UP_MARKER = /^\s*--\s*up migration\s*$/im;
const DOWN_MARKER = /^\s*--\s*down migration\s*$/im;

export function parseMigration(file: string, text: string): MigrationFile {
  const name = path.basename(file, '.sql');
  const up = UP_MARKER.exec(text);
  if (!up) throw new InvalidInputError(`${file}: no "-- Up Migration" line`);
  const down = DOWN_MARKER.exec(text);
  if (down && down.index < up.index)
    throw new InvalidInputError(`${file}: "-- Down Migration" comes before "-- Up Migration"`);
  const onlyIn = /^\s*--\s*dbops:only-in\s+(\S+)\s*$/m.exec(text)?.[1];
  return {
    name,
    file,
    up: text.slice(up.index + up[0].length, down?.index).trim(),
    down: down ? text.slice(down.index + down[0].length).trim() || undefined : undefined,
    noTransaction: /^\s*--\s*dbops:no-transaction\s*$/m.test(text),
    onlyIn,
  };
}

/** The migrations in `dir`, in the order node-pg-migrate applies them (by file name). */
export async function readMigrations(dir: string): Promise<MigrationFile[]> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.sql')).sort();
  return Promise.all(
    names.map(async (name) => {
      const file = path.join(dir, name);
      return parseMigration(file, await readFile(file, 'utf8'));
    }),
  );
}

/**
 * Splits a section into statements for non-transactional migrations: a multi-statement query
 * would run as one implicit transaction, where CREATE INDEX CONCURRENTLY is refused.
 */
export function splitStatements(sql: string): string[] {
  return sql
    .split(/;[ \t]*$/m)
    .map((part) => part.trim())
    .filter((part) => part.split('\n').some((line) => line.trim() !== '' && !line.trim().startsWith('--')));
}

type MigrationLoader = Exclude<
  NonNullable<RunnerOption['migrationLoaderStrategies']>[number]['loader'],
  string
>;
type MigrationUnit = Awaited<ReturnType<MigrationLoader>>[number];

/** A node-pg-migrate loader for our SQL format (the built-in one has no non-transactional mode). */
export async function loadSqlMigrations(filePaths: string[]): Promise<MigrationUnit[]> {
  return Promise.all(
    filePaths.map(async (file): Promise<MigrationUnit> => {
      const migration = parseMigration(file, await readFile(file, 'utf8'));
      const action = (sql: string) => (pgm: MigrationBuilder) => {
        if (!migration.noTransaction) return void pgm.sql(sql);
        pgm.noTransaction();
        for (const statement of splitStatements(sql)) pgm.sql(statement);
      };
      return {
        id: file,
        filePaths: [file],
        actions: {
          up: action(migration.up),
          down: migration.down === undefined ? false : action(migration.down),
        },
      };
    }),
  );
}

export async function appliedMigrations(client: Client): Promise<string[]> {
  const { rows } = await client.query<{ exists: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS exists`, [
    MIGRATIONS_TABLE,
  ]);
  if (!rows[0]?.exists) return [];
  const applied = await client.query<{ name: string }>(
    `SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY run_on, id`,
  );
  return applied.rows.map((row) => row.name);
}

export interface MigrationPlan {
  /** Applied before this deploy, in order. */
  alreadyApplied: string[];
  /** What this deploy applies, in order. */
  toApply: string[];
  /** Pending, but held back (a later phase, or after the target). */
  heldBack: string[];
  /** Of `toApply`, those without a down section. */
  irreversible: string[];
}

export interface PlanOptions {
  /** Apply up to and including this migration (default: every pending one). */
  target?: string | undefined;
  /** The workflow planning: `dbops:only-in` migrations of other workflows are held back. */
  workflow: string;
}

export function planMigrations(
  files: MigrationFile[],
  applied: string[],
  options: PlanOptions,
): MigrationPlan {
  const known = new Set(files.map((file) => file.name));
  const unknown = applied.filter((name) => !known.has(name));
  if (unknown.length > 0) {
    throw new InvalidStateError(
      `applied migrations missing from the migrations directory: ${unknown.join(', ')}`,
    );
  }
  if (options.target !== undefined && !known.has(options.target)) {
    throw new InvalidInputError(`target: no migration named ${JSON.stringify(options.target)}`);
  }
  const pending = files.filter((file) => !applied.includes(file.name));
  // Files after the target wait, even when the target itself was applied already.
  const last =
    options.target === undefined ? files.length - 1 : files.findIndex((file) => file.name === options.target);
  const toApply: MigrationFile[] = [];
  for (const file of pending) {
    if (files.indexOf(file) > last) break;
    if (file.onlyIn !== undefined && file.onlyIn !== options.workflow) break;
    toApply.push(file);
  }
  return {
    alreadyApplied: applied,
    toApply: toApply.map((file) => file.name),
    heldBack: pending.slice(toApply.length).map((file) => file.name),
    irreversible: toApply.filter((file) => file.down === undefined).map((file) => file.name),
  };
}

export interface LintViolation {
  /** Relative to the migrations directory's parent, e.g. `migrations/0005_x.sql`. */
  file: string;
  /** 1-based. */
  line: number;
  rule: string;
  message: string;
}

interface SquawkReport {
  file: string;
  line: number;
  rule_name: string;
  message: string;
}

const squawkBin = path.join(path.dirname(require.resolve('squawk-cli/package.json')), 'js', 'bin', 'squawk');

/**
 * Lints migration files with squawk. Transactional migrations are linted as running inside a
 * transaction (which they do), non-transactional ones as not; any violation blocks a deploy.
 */
export async function lintMigrations(files: MigrationFile[], configFile: string): Promise<LintViolation[]> {
  const groups = [
    { files: files.filter((file) => !file.noTransaction), args: ['--assume-in-transaction'] },
    { files: files.filter((file) => file.noTransaction), args: [] },
  ];
  const violations: LintViolation[] = [];
  for (const group of groups) {
    if (group.files.length === 0) continue;
    const args = [squawkBin, '--reporter', 'json', '--config', configFile, ...group.args];
    const reports = await runSquawk([...args, ...group.files.map((file) => file.file)]);
    for (const report of reports) {
      violations.push({
        file: path.relative(path.dirname(path.dirname(report.file)), report.file),
        line: report.line + 1, // squawk's JSON lines are 0-based
        rule: report.rule_name,
        message: report.message,
      });
    }
  }
  return violations;
}

function runSquawk(args: string[]): Promise<SquawkReport[]> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      // Exit status 1 means "violations found"; the report is on stdout either way.
      if (error && error.code !== 1)
        return reject(new Error(`squawk failed: ${stderr.trim() || error.message}`));
      try {
        resolve(JSON.parse(stdout) as SquawkReport[]);
      } catch {
        reject(new Error(`squawk printed no JSON report: ${(stderr || stdout).trim()}`));
      }
    });
  });
}

export interface MigrateSettings {
  lockTimeoutMs: number;
  statementTimeoutMs: number;
  /** When another deploy holds the migration lock: wait for it (up to lockWaitMs) or fail at once. */
  whenLocked: 'wait' | 'fail';
  lockWaitMs: number;
  /** Attempts when a statement hits lock_timeout, with exponential backoff and jitter. */
  lockTimeoutAttempts: number;
  lockRetryBaseMs: number;
}

export const DEFAULT_MIGRATE_SETTINGS: MigrateSettings = {
  lockTimeoutMs: 5_000,
  statementTimeoutMs: 30 * 60_000,
  whenLocked: 'wait',
  lockWaitMs: 30 * 60_000,
  lockTimeoutAttempts: 5,
  lockRetryBaseMs: 500,
};

/** Called while waiting or retrying, so the activity can heartbeat what it is doing. */
export type Progress = (what: string) => void;

/**
 * Applies (`up`) or reverts (`down`) exactly `names`, in order, on `client`, holding
 * node-pg-migrate's advisory lock for the whole run so no other deploy interleaves. Each
 * migration commits on its own (single transaction is impossible with CONCURRENTLY, and lets a
 * failed deploy revert precisely what it applied). Returns the names it applied or reverted, in
 * order; on failure throws MigrationRunError with those.
 */
export async function runMigrations(
  client: Client,
  dir: string,
  direction: 'up' | 'down',
  names: string[],
  settings: MigrateSettings,
  progress: Progress = () => undefined,
): Promise<string[]> {
  const { PG_MIGRATE_LOCK_ID } = await import('node-pg-migrate');
  await acquireMigrationLock(client, PG_MIGRATE_LOCK_ID, settings, progress);
  await client.query(
    `SELECT set_config('lock_timeout', $1, false), set_config('statement_timeout', $2, false)`,
    [`${settings.lockTimeoutMs}ms`, `${settings.statementTimeoutMs}ms`],
  );
  try {
    return await migrateHoldingLock(client, dir, direction, names, settings, progress);
  } finally {
    // Releases our hold and any re-entrant one node-pg-migrate could not release after a failure.
    await client.query('SELECT pg_advisory_unlock_all()');
  }
}

async function migrateHoldingLock(
  client: Client,
  dir: string,
  direction: 'up' | 'down',
  names: string[],
  settings: MigrateSettings,
  progress: Progress,
): Promise<string[]> {
  const { runner } = await import('node-pg-migrate');
  const before = await appliedMigrations(client);
  // What this run changed, read back from the migrations table (we hold the lock: nobody else).
  const changed = async () => {
    const after = await appliedMigrations(client);
    return direction === 'up'
      ? after.filter((name) => !before.includes(name))
      : before.filter((name) => !after.includes(name)).reverse();
  };
  for (let attempt = 1; ; attempt++) {
    const applied = await appliedMigrations(client);
    const remaining = names.filter((name) =>
      direction === 'up' ? !applied.includes(name) : applied.includes(name),
    );
    if (remaining.length === 0) return changed();
    if (direction === 'up') {
      // node-pg-migrate applies pending migrations in file order: ours must come first.
      const files = await readMigrations(dir);
      const next = files.filter((file) => !applied.includes(file.name)).slice(0, remaining.length);
      if (next.map((file) => file.name).join() !== remaining.join()) {
        throw new InvalidInputError(
          `cannot apply ${remaining.join(', ')} before the pending ${next.map((file) => file.name).join(', ')}`,
        );
      }
    } else {
      const last = applied.slice(-remaining.length).reverse();
      if (last.join() !== [...remaining].reverse().join()) {
        throw new InvalidStateError(
          `cannot revert ${remaining.join(', ')}: the last applied migrations are ${last.join(', ')}`,
        );
      }
    }
    const options: RunnerOption = {
      dbClient: client,
      dir,
      ignorePattern: '.*(?<!\\.sql)',
      migrationsTable: MIGRATIONS_TABLE,
      direction,
      count: remaining.length,
      singleTransaction: false,
      checkOrder: true,
      // Re-entrant: this session already holds the lock (acquired above with a clear wait).
      advisoryLockMode: 'fail',
      migrationLoaderStrategies: [{ extensions: ['.sql'], loader: loadSqlMigrations }],
      logger: {
        debug: () => undefined,
        info: () => undefined,
        warn: () => undefined,
        error: () => undefined,
      },
    };
    try {
      await runner(options);
      return await changed();
    } catch (error) {
      // node-pg-migrate leaves a failed per-migration transaction open.
      await client.query('ROLLBACK');
      if (!isLockTimeout(error) || attempt >= settings.lockTimeoutAttempts) {
        throw new MigrationRunError(describeFailure(error), await changed());
      }
      const backoff = settings.lockRetryBaseMs * 2 ** (attempt - 1) * (0.5 + Math.random());
      progress(`lock_timeout on attempt ${attempt}; retrying in ${Math.round(backoff)} ms`);
      await new Promise((resolve) => setTimeout(resolve, backoff));
    }
  }
}

function isLockTimeout(error: unknown): boolean {
  return (error as { code?: string }).code === '55P03';
}

function describeFailure(error: unknown): string {
  const failure = error as Error & { code?: string };
  return failure.code ? `${failure.message} (SQLSTATE ${failure.code})` : failure.message;
}

/** A migration run failed; `changed` lists what it applied (or reverted) before failing. */
export class MigrationRunError extends Error {
  constructor(
    message: string,
    readonly changed: string[],
  ) {
    super(message);
    this.name = 'MigrationRunError';
  }
}

/** Who holds the migration lock, for a message that tells the operator what to look at. */
async function lockHolder(client: Client, lockId: number): Promise<string> {
  const { rows } = await client.query<{ pid: number; application_name: string; backend_start: Date }>(
    `SELECT a.pid, a.application_name, a.backend_start
       FROM pg_locks l JOIN pg_stat_activity a USING (pid)
      WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
        AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295)`,
    [lockId],
  );
  const holder = rows[0];
  if (!holder) return 'another session';
  return `session pid ${holder.pid} (${holder.application_name || 'no application_name'}, connected ${holder.backend_start.toISOString()})`;
}

async function acquireMigrationLock(
  client: Client,
  lockId: number,
  settings: MigrateSettings,
  progress: Progress,
): Promise<void> {
  const deadline = Date.now() + settings.lockWaitMs;
  for (;;) {
    const { rows } = await client.query<{ locked: boolean }>(`SELECT pg_try_advisory_lock($1) AS locked`, [
      lockId,
    ]);
    if (rows[0]?.locked) return;
    const holder = await lockHolder(client, lockId);
    if (settings.whenLocked === 'fail' || Date.now() >= deadline) {
      const waited = settings.whenLocked === 'fail' ? '' : ` after waiting ${settings.lockWaitMs} ms`;
      throw new InvalidStateError(
        `another deploy is migrating this database: the migration lock is held by ${holder}${waited}`,
      );
    }
    progress(`waiting for the migration lock held by ${holder}`);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
}

export interface VerifyResult {
  invalidIndexes: string[];
  analyzedTables: string[];
}

/**
 * After migrating: the applied list must equal `expected`, no index may be left INVALID (a failed
 * concurrent build), and the tables the migrations touched get fresh planner statistics.
 */
export async function verifyMigrations(
  client: Client,
  expected: string[],
  touched: MigrationFile[],
): Promise<VerifyResult> {
  const applied = await appliedMigrations(client);
  if (applied.join() !== expected.join()) {
    throw new InvalidStateError(
      `applied migrations are [${applied.join(', ')}], expected [${expected.join(', ')}]`,
    );
  }
  const invalid = await client.query<{ index: string }>(
    `SELECT indexrelid::regclass::text AS index FROM pg_index WHERE NOT indisvalid ORDER BY 1`,
  );
  const tables = await existingTables(
    client,
    touched.flatMap((migration) => tablesIn(migration.up)),
  );
  for (const table of tables) await client.query(`ANALYZE ${table}`);
  return { invalidIndexes: invalid.rows.map((row) => row.index), analyzedTables: tables };
}

/** Table names a migration's SQL names after ALTER TABLE, CREATE TABLE or (index) ON. */
export function tablesIn(sql: string): string[] {
  const pattern =
    /\b(?:ALTER\s+TABLE|CREATE\s+TABLE(?:\s+IF\s+NOT\s+EXISTS)?|\bON)\s+(?:ONLY\s+)?([A-Za-z_][\w.]*)/gi;
  return [...sql.matchAll(pattern)].map((match) => match[1]!.toLowerCase());
}

/** Keeps the names that are existing tables, returned quoted and schema-qualified. */
async function existingTables(client: Client, names: string[]): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT DISTINCT c.oid::regclass::text AS name
       FROM unnest($1::text[]) AS n(name)
       JOIN pg_class c ON c.oid = to_regclass(n.name)
      WHERE c.relkind IN ('r', 'p')
      ORDER BY 1`,
    [names],
  );
  return rows.map((row) => row.name);
}
