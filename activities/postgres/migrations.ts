/**
 * Schema migrations: SQL files in `migrations/` run by node-pg-migrate, linted by squawk.
 *
 * A migration file is plain SQL with node-pg-migrate's `-- Up Migration` / `-- Down Migration`
 * sections (no down section: irreversible) and optional directives on their own comment line:
 * - `-- dbops:no-transaction`: run outside a transaction, one statement at a time (needed by
 *   CREATE INDEX CONCURRENTLY). Each statement must end with `;` at the end of a line.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import type { MigrationBuilder, RunnerOption } from 'node-pg-migrate' with {
  'resolution-mode': 'import',
};
import type { Client } from 'pg';

import { InvalidInputError, InvalidStateError } from '../../workflows/lib/errors';

/**
 * The table node-pg-migrate records applied migrations in, schema-qualified as it writes it: a
 * `dbops` schema ahead in the search_path (the user's own) must not hide it.
 */
export const MIGRATIONS_TABLE = 'public.pgmigrations';
const [MIGRATIONS_SCHEMA, MIGRATIONS_TABLE_NAME] = MIGRATIONS_TABLE.split('.') as [string, string];

/**
 * A row of the migrations table that is a phase of a declared change (expandContract), not a
 * file: `change:<change>:<phase>`, e.g. `change:user-id-bigint:expand`. Deploys leave these rows
 * alone; the change records and (on abort) removes them itself.
 */
export function changePhaseName(change: string, phase: string): string {
  return `${CHANGE_PHASE_PREFIX}${change}:${phase}`;
}

const CHANGE_PHASE_PREFIX = 'change:';

function isChangePhase(name: string): boolean {
  return name.startsWith(CHANGE_PHASE_PREFIX);
}

export interface MigrationFile {
  /** File name without `.sql`: what node-pg-migrate records as applied. */
  name: string;
  file: string;
  up: string;
  /** Undefined when the file has no down section: the migration cannot be reversed. */
  down: string | undefined;
  noTransaction: boolean;
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
  return {
    name,
    file,
    up: text.slice(up.index + up[0].length, down?.index).trim(),
    down: down ? text.slice(down.index + down[0].length).trim() || undefined : undefined,
    noTransaction: /^\s*--\s*dbops:no-transaction\s*$/m.test(text),
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

/** CREATE [UNIQUE] INDEX CONCURRENTLY, REINDEX ... CONCURRENTLY. */
export function isConcurrentIndexBuild(statement: string): boolean {
  const code = statement.replace(/--[^\n]*/g, ' ');
  return /\bINDEX\s+CONCURRENTLY\b/i.test(code) || /\bREINDEX\b[\s\S]*\bCONCURRENTLY\b/i.test(code);
}

/**
 * The session's settings for a concurrent index build, the one kind of build that runs while the
 * application writes: its sort in memory (maintenance_work_mem raised to one shared_buffers' worth,
 * a quarter of the memory the server is sized for, at most 1 GB, never below the server's own
 * setting) so it spills no temporary files, and no parallel workers, so it takes one core, not
 * every core the application needs; it is slower, but it blocks no one while it runs. Reset after
 * the statement.
 */
const CONCURRENT_BUILD_SETTINGS = `SELECT set_config('maintenance_work_mem', (greatest(
    least((SELECT setting::bigint * pg_size_bytes(coalesce(unit, 'B')) FROM pg_settings WHERE name = 'shared_buffers'),
          pg_size_bytes('1GB')),
    pg_size_bytes(current_setting('maintenance_work_mem'))) / 1024)::text || 'kB', false),
  set_config('max_parallel_maintenance_workers', '0', false)`;
const CONCURRENT_BUILD_RESET = 'RESET maintenance_work_mem; RESET max_parallel_maintenance_workers';

type MigrationLoader = Exclude<
  NonNullable<RunnerOption['migrationLoaderStrategies']>[number]['loader'],
  string
>;
type MigrationUnit = Awaited<ReturnType<MigrationLoader>>[number];

/**
 * A node-pg-migrate loader for our SQL format (the built-in one has no non-transactional mode).
 * Each migration also records its owner: `owner` after an up step (nobody known without one),
 * removed after a down step. The record is written in the migration's own transaction, or right
 * after the last statement of a non-transactional one, just before node-pg-migrate's own record.
 */
function sqlMigrationLoader(client: Client, owner: MigrationOwner | undefined): MigrationLoader {
  const literal = (value: string) => client.escapeLiteral(value);
  return (filePaths) =>
    Promise.all(
      filePaths.map(async (file): Promise<MigrationUnit> => {
        const migration = parseMigration(file, await readFile(file, 'utf8'));
        const forget = `DELETE FROM ${OWNERS_TABLE} WHERE name = ${literal(migration.name)}`;
        const record = {
          up:
            owner === undefined
              ? forget
              : `INSERT INTO ${OWNERS_TABLE} (name, workflow_id, run_id)
                 VALUES (${literal(migration.name)}, ${literal(owner.workflowId)}, ${literal(owner.runId)})
                 ON CONFLICT (name) DO UPDATE
                   SET workflow_id = EXCLUDED.workflow_id, run_id = EXCLUDED.run_id, applied_at = now()`,
          down: forget,
        };
        const action = (sql: string, direction: 'up' | 'down') => (pgm: MigrationBuilder) => {
          if (migration.noTransaction) {
            pgm.noTransaction();
            for (const statement of splitStatements(sql)) {
              if (!isConcurrentIndexBuild(statement)) {
                pgm.sql(statement);
                continue;
              }
              pgm.sql(CONCURRENT_BUILD_SETTINGS);
              pgm.sql(statement);
              pgm.sql(CONCURRENT_BUILD_RESET);
            }
          } else {
            pgm.sql(sql);
          }
          pgm.sql(record[direction]);
        };
        return {
          id: file,
          filePaths: [file],
          actions: {
            up: action(migration.up, 'up'),
            down: migration.down === undefined ? false : action(migration.down, 'down'),
          },
        };
      }),
    );
}

/** The migration files applied, in the order applied (the phases of declared changes left out). */
export async function appliedMigrations(client: Client): Promise<string[]> {
  return (await recordedMigrations(client)).filter((name) => !isChangePhase(name));
}

/** Every row of the migrations table, declared changes' phases included, in the order applied. */
async function recordedMigrations(client: Client): Promise<string[]> {
  const { rows } = await client.query<{ exists: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS exists`, [
    MIGRATIONS_TABLE,
  ]);
  if (!rows[0]?.exists) return [];
  const applied = await client.query<{ name: string }>(
    `SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY run_on, id`,
  );
  return applied.rows.map((row) => row.name);
}

/** The migrations table (as node-pg-migrate makes it) and the owners table beside it, if missing. */
export async function ensureMigrationTables(client: Client): Promise<void> {
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
       id SERIAL PRIMARY KEY,
       name varchar(255) NOT NULL,
       run_on timestamp NOT NULL)`,
  );
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${OWNERS_TABLE} (
       name varchar(255) PRIMARY KEY,
       workflow_id text NOT NULL,
       run_id text NOT NULL,
       applied_at timestamptz NOT NULL DEFAULT now())`,
  );
}

/** The workflow run that applies or reverts migrations: recorded as the owner of what it applies. */
export interface MigrationOwner {
  workflowId: string;
  runId: string;
}

/**
 * Which workflow run applied each migration, one row per applied migration, beside
 * node-pg-migrate's table (which says what is applied, not by whom). A deploy reads it to report
 * and revert exactly what it applied, also after its worker died between two migrations or when
 * another deploy applied some of its plan first.
 */
export const OWNERS_TABLE = 'dbops_migration_owners';

/** Of `names`, those applied now and recorded as applied by `owner`'s run, in the order given. */
export async function appliedBy(client: Client, names: string[], owner: MigrationOwner): Promise<string[]> {
  const { rows: tables } = await client.query<{ exists: boolean }>(
    `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AS exists`,
    [MIGRATIONS_TABLE, OWNERS_TABLE],
  );
  if (!tables[0]?.exists) return [];
  // One statement: both tables read in the same snapshot.
  const { rows } = await client.query<{ name: string }>(
    `SELECT m.name FROM ${MIGRATIONS_TABLE} m JOIN ${OWNERS_TABLE} o USING (name)
      WHERE o.workflow_id = $1 AND o.run_id = $2`,
    [owner.workflowId, owner.runId],
  );
  const owned = new Set(rows.map((row) => row.name));
  return names.filter((name) => owned.has(name));
}

export interface MigrationPlan {
  /** Applied before this deploy, in order. */
  alreadyApplied: string[];
  /** What this deploy applies, in order. */
  toApply: string[];
  /** Pending, but after the target. */
  heldBack: string[];
  /** Why each of `heldBack` waits, in the same order. */
  whyHeldBack: HeldBack[];
  /** Of `toApply`, those without a down section. */
  irreversible: string[];
}

export interface HeldBack {
  name: string;
  reason: string;
}

export interface PlanOptions {
  /** Apply up to and including this migration (default: every pending one). */
  target?: string | undefined;
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
  const toApply = pending.filter((file) => files.indexOf(file) <= last);
  const held = pending.slice(toApply.length);
  return {
    alreadyApplied: applied,
    toApply: toApply.map((file) => file.name),
    heldBack: held.map((file) => file.name),
    whyHeldBack: held.map((file) => ({ name: file.name, reason: `after the target ${options.target}` })),
    irreversible: toApply.filter((file) => file.down === undefined).map((file) => file.name),
  };
}

export interface LintViolation {
  /** Relative to the migrations directory's parent, e.g. `migrations/0004_x.sql`. */
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

/** Called while waiting or retrying and as each migration starts, so the activity can heartbeat it. */
export type Progress = (what: string) => void;

export interface MigrationControl {
  /** The run applying: recorded as the owner of each migration it applies. */
  owner?: MigrationOwner | undefined;
  progress?: Progress | undefined;
  /**
   * Once aborted, no further statement starts, the running one is cancelled with `cancelRunning`,
   * and when it has stopped and the lock is released the run throws the signal's reason.
   */
  signal?: AbortSignal | undefined;
  /** Cancels the statement running on the migration session (`pg_cancel_backend` from another session). */
  cancelRunning?: (() => Promise<void>) | undefined;
}

/** A killed worker's session notices its client is gone within this, and stops its SQL. */
const CLIENT_CHECK_INTERVAL = '5s';

/**
 * Applies (`up`) or reverts (`down`) exactly `names`, in order and one at a time, on `client`,
 * holding node-pg-migrate's advisory lock for the whole run so no other deploy interleaves. Each
 * migration commits on its own (single transaction is impossible with CONCURRENTLY, and lets a
 * failed deploy revert precisely what it applied) together with the record of its owner. Starts
 * from what the migrations table says is applied, so a retry applies only what is still missing.
 * Returns the names this call applied or reverted, in order.
 */
export async function runMigrations(
  client: Client,
  dir: string,
  direction: 'up' | 'down',
  names: string[],
  settings: MigrateSettings,
  control: MigrationControl = {},
): Promise<string[]> {
  const { PG_MIGRATE_LOCK_ID } = await import('node-pg-migrate');
  const signal = control.signal ?? new AbortController().signal;
  const progress = control.progress ?? (() => undefined);
  const canceller = cancelOnAbort(signal, control.cancelRunning, progress);
  try {
    await acquireMigrationLock(client, PG_MIGRATE_LOCK_ID, settings, progress, signal);
    await client.query(
      `SELECT set_config('lock_timeout', $1, false), set_config('statement_timeout', $2, false),
              set_config('client_connection_check_interval', $3, false)`,
      [`${settings.lockTimeoutMs}ms`, `${settings.statementTimeoutMs}ms`, CLIENT_CHECK_INTERVAL],
    );
    await ensureMigrationTables(client);
    const steps = { client, migrating: stopsOnAbort(client, signal), signal, progress };
    return await migrateHoldingLock(steps, dir, direction, names, settings, control.owner);
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    throw error;
  } finally {
    // The cancel, if one was sent, has reached the backend before the clean-up statements run.
    await canceller.stop();
    // A cancelled statement leaves its migration's transaction open.
    if (signal.aborted) await client.query('ROLLBACK');
    // Releases our hold and any re-entrant one node-pg-migrate could not release after a failure.
    await client.query('SELECT pg_advisory_unlock_all()');
  }
}

/**
 * On abort: cancels the running statement, and again every few seconds until `stop()` (a
 * statement sent just before the abort may reach the server after the first cancel). `stop()`
 * returns once no cancel is in flight.
 */
function cancelOnAbort(
  signal: AbortSignal,
  cancelRunning: (() => Promise<void>) | undefined,
  progress: Progress,
): { stop: () => Promise<void> } {
  let stopped = false;
  let wake = () => undefined as void;
  let loop: Promise<void> = Promise.resolve();
  const start = () => {
    loop = (async () => {
      while (!stopped && cancelRunning !== undefined) {
        try {
          await cancelRunning();
        } catch (error) {
          progress(`could not cancel the running statement (${(error as Error).message}); trying again`);
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 2_000);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    })();
  };
  if (signal.aborted) start();
  else signal.addEventListener('abort', start, { once: true });
  return {
    stop: async () => {
      stopped = true;
      signal.removeEventListener('abort', start);
      wake();
      await loop;
    },
  };
}

/** `client` as node-pg-migrate gets it: once `signal` is aborted, no further statement starts. */
function stopsOnAbort(client: Client, signal: AbortSignal): Client {
  const query = (...args: unknown[]): unknown => {
    signal.throwIfAborted();
    return (client.query as (...queryArgs: unknown[]) => unknown)(...args);
  };
  return new Proxy(client, {
    get: (target, property, receiver) =>
      property === 'query' ? query : (Reflect.get(target, property, receiver) as unknown),
  });
}

interface MigrationSession {
  /** Our own statements (reads, ROLLBACK). */
  client: Client;
  /** node-pg-migrate's: refuses to start a statement once cancelled. */
  migrating: Client;
  signal: AbortSignal;
  progress: Progress;
}

async function migrateHoldingLock(
  { client, migrating, signal, progress }: MigrationSession,
  dir: string,
  direction: 'up' | 'down',
  names: string[],
  settings: MigrateSettings,
  owner: MigrationOwner | undefined,
): Promise<string[]> {
  const { runner } = await import('node-pg-migrate');
  const before = await appliedMigrations(client);
  // What this call changed, read back from the migrations table (we hold the lock: nobody else).
  const changed = async () => {
    const after = await appliedMigrations(client);
    return direction === 'up'
      ? after.filter((name) => !before.includes(name))
      : before.filter((name) => !after.includes(name)).reverse();
  };
  const options: RunnerOption = {
    dbClient: migrating,
    dir,
    ignorePattern: '.*(?<!\\.sql)',
    migrationsSchema: MIGRATIONS_SCHEMA,
    migrationsTable: MIGRATIONS_TABLE_NAME,
    direction,
    // One at a time: a cancellation stops between two migrations at the latest.
    count: 1,
    singleTransaction: false,
    // Its check would count the rows of declared changes' phases, which have no file: ours below
    // is the same check without them.
    checkOrder: false,
    // Re-entrant: this session already holds the lock (acquired above with a clear wait).
    advisoryLockMode: 'fail',
    migrationLoaderStrategies: [{ extensions: ['.sql'], loader: sqlMigrationLoader(client, owner) }],
    logger: {
      debug: () => undefined,
      info: () => undefined,
      warn: () => undefined,
      error: () => undefined,
    },
  };
  let attempt = 1;
  for (;;) {
    signal.throwIfAborted();
    const applied = await appliedMigrations(client);
    const remaining = names.filter((name) =>
      direction === 'up' ? !applied.includes(name) : applied.includes(name),
    );
    if (remaining.length === 0) return changed();
    const files = await readMigrations(dir);
    const misplaced = applied.findIndex((name, i) => i < files.length && files[i]!.name !== name);
    if (misplaced !== -1) {
      throw new MigrationRunError(
        `Not run migration ${files[misplaced]!.name} is preceding already run migration ${applied[misplaced]}`,
      );
    }
    if (direction === 'up') {
      // node-pg-migrate applies pending migrations in file order: ours must come first.
      const next = files.filter((file) => !applied.includes(file.name)).slice(0, remaining.length);
      if (next.map((file) => file.name).join() !== remaining.join()) {
        throw new InvalidInputError(
          `cannot apply ${remaining.join(', ')} before the pending ${next.map((file) => file.name).join(', ')}`,
        );
      }
    } else {
      // node-pg-migrate reverts the last row of its table, whatever it is.
      const latest = (await recordedMigrations(client)).at(-1)!;
      if (isChangePhase(latest)) {
        throw new InvalidStateError(
          `cannot revert ${remaining.at(-1)}: ${latest}, a phase of a declared change, was applied after it; finish or abort that change first`,
        );
      }
      const last = applied.slice(-remaining.length).reverse();
      if (last.join() !== [...remaining].reverse().join()) {
        throw new InvalidStateError(
          `cannot revert ${remaining.join(', ')}: the last applied migrations are ${last.join(', ')}`,
        );
      }
    }
    progress(direction === 'up' ? `applying ${remaining[0]}` : `reverting ${remaining.at(-1)}`);
    try {
      const ran = await runner(options);
      // Never again with nothing done: the runner and we would disagree on the table for ever.
      if (ran.length === 0)
        throw new InvalidStateError(`node-pg-migrate found nothing to run for ${remaining.join(', ')}`);
      attempt = 1;
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      // node-pg-migrate leaves a failed per-migration transaction open.
      await client.query('ROLLBACK');
      if (!isLockTimeout(error) || attempt >= settings.lockTimeoutAttempts) {
        throw new MigrationRunError(describeFailure(error));
      }
      const backoff = settings.lockRetryBaseMs * 2 ** (attempt - 1) * (0.5 + Math.random());
      progress(`lock_timeout on attempt ${attempt}; retrying in ${Math.round(backoff)} ms`);
      await sleep(backoff, undefined, { signal });
      attempt++;
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

/** A migration failed (its statement's error, final); what is applied is in the migrations table. */
export class MigrationRunError extends Error {
  constructor(message: string) {
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
  signal: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + settings.lockWaitMs;
  for (;;) {
    signal.throwIfAborted();
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
    await sleep(1_000, undefined, { signal });
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
