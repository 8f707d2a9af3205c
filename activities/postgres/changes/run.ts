/**
 * Runs a declared change's phases on a database: reads the table from the catalog for the plan,
 * lints the generated SQL with squawk, runs a phase's steps with lock_timeout and retries, and
 * records each phase as a row `change:<change>:<phase>` of the migrations table, with its owner
 * (workflow id and run) beside it as for any migration. The record is written in the phase's last
 * transaction, holding the migration lock so no deploy interleaves, so a retried phase after a
 * lost reply finds its record and does nothing; an abort deletes the change's rows with its last
 * transaction.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import type { Client } from 'pg';

import { InvalidStateError } from '../../../workflows/lib/errors';
import {
  changePhaseName,
  ensureMigrationTables,
  lintMigrations,
  MIGRATIONS_TABLE,
  OWNERS_TABLE,
  type LintViolation,
  type MigrationFile,
} from '../migrations';
import { quote, type Change } from './definition';
import { planChange, type ChangePlan, type Phase, type TableInfo } from './plan';

export interface PhaseOwner {
  workflowId: string;
  runId: string;
}

export interface PhaseRecord {
  /** Its row in the migrations table, `change:<change>:<phase>`. */
  name: string;
  phase: Phase;
  workflowId: string;
  appliedAt: string;
}

export interface LockSettings {
  lockTimeoutMs: number;
  /** Attempts of a transaction that hit lock_timeout, with exponential backoff and jitter. */
  attempts: number;
  retryBaseMs: number;
}

export const DEFAULT_LOCK_SETTINGS: LockSettings = { lockTimeoutMs: 2_000, attempts: 8, retryBaseMs: 250 };

/** The table as the plan needs it; no columns when the table does not exist. */
export async function readTable(client: Client, change: Change): Promise<TableInfo> {
  const relation = `${quote(change.schema)}.${quote(change.table)}`;
  const { rows: columns } = await client.query<TableInfo['columns'][number]>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS "notNull",
            CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END AS default
       FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [relation],
  );
  const { rows: used } = await client.query<{ column: string; users: string[] }>(
    `SELECT a.attname AS column, array_agg(DISTINCT u.name ORDER BY u.name) AS users
       FROM pg_attribute a
       JOIN (SELECT i.indexrelid::regclass::text AS name, k.attnum
               FROM pg_index i, unnest(i.indkey) AS k(attnum)
              WHERE i.indrelid = to_regclass($1) AND NOT i.indisprimary
             UNION ALL
             SELECT c.conname, k.attnum
               FROM pg_constraint c, unnest(c.conkey) AS k(attnum)
              WHERE c.conrelid = to_regclass($1) AND c.contype NOT IN ('p')
             UNION ALL
             SELECT c.conname, k.attnum
               FROM pg_constraint c, unnest(c.confkey) AS k(attnum)
              WHERE c.confrelid = to_regclass($1)) u ON u.attnum = a.attnum
      WHERE a.attrelid = to_regclass($1)
      GROUP BY a.attname`,
    [relation],
  );
  const { rows: names } = await client.query<{ name: string }>(
    `SELECT relname AS name FROM pg_class WHERE relnamespace = $1::regnamespace
     UNION SELECT conname FROM pg_constraint WHERE connamespace = $1::regnamespace
     UNION SELECT nspname FROM pg_namespace`,
    [change.schema],
  );
  return {
    columns,
    usedBy: Object.fromEntries(used.map((row) => [row.column, row.users])),
    names: names.map((row) => row.name),
  };
}

/** The phases of `change` recorded in the migrations table, by any workflow, in the order applied. */
export async function phasesOf(client: Client, change: string): Promise<PhaseRecord[]> {
  await ensureMigrationTables(client);
  const prefix = changePhaseName(change, '');
  const { rows } = await client.query<{ name: string; workflowId: string; appliedAt: string }>(
    `SELECT m.name, o.workflow_id AS "workflowId", m.run_on::text AS "appliedAt"
       FROM ${MIGRATIONS_TABLE} m JOIN ${OWNERS_TABLE} o USING (name)
      WHERE starts_with(m.name, $1) ORDER BY m.run_on, m.id`,
    [prefix],
  );
  return rows.map((row) => ({ ...row, phase: row.name.slice(prefix.length) as Phase }));
}

/**
 * The plan for `workflowId`'s run of `change` (its `phase`). Refuses when the change was completed
 * (its contract is recorded) or another run has it in progress (a second run would fight the
 * first over the same columns).
 */
export async function planFor(
  client: Client,
  change: Change,
  workflowId: string,
  phase?: Phase,
): Promise<ChangePlan> {
  const records = await phasesOf(client, change.name);
  const contract = records.find((record) => record.phase === 'contract');
  if (contract !== undefined) {
    throw new InvalidStateError(
      `change ${change.name} was completed by ${contract.workflowId} (its contract applied at ${contract.appliedAt})` +
        (phase === 'abort'
          ? ': too late to abort; to undo it, restore the snapshot taken before the contract'
          : ''),
    );
  }
  const other = records.find((record) => record.workflowId !== workflowId);
  if (other !== undefined)
    throw new InvalidStateError(
      `change ${change.name} is in progress in ${other.workflowId}; abort it or let it finish`,
    );
  // An abort drops only what exists: it needs no free names, whatever expand left.
  const expanded = phase === 'abort' || records.some((record) => record.phase === 'expand');
  return planChange(change, await readTable(client, change), expanded);
}

/** squawk's verdict on each phase's SQL (transactional steps linted as running in a transaction). */
export async function lintPlan(plan: ChangePlan, squawkConfig: string): Promise<LintViolation[]> {
  const dir = path.join(await mkdtemp(path.join(os.tmpdir(), 'dbops-change-')), 'changes');
  try {
    await mkdir(dir);
    const files: MigrationFile[] = [];
    for (const [phase, steps] of Object.entries(plan.phases)) {
      for (const [i, step] of steps.entries()) {
        const name = `${plan.change}.${phase}.${i + 1}`;
        const file = path.join(dir, `${name}.sql`);
        const up = step.statements.map((statement) => `${statement};`).join('\n\n');
        await writeFile(file, `${up}\n`);
        files.push({ name, file, up, down: undefined, noTransaction: !step.transaction });
      }
    }
    return await lintMigrations(files, squawkConfig);
  } finally {
    await rm(path.dirname(dir), { recursive: true, force: true });
  }
}

export interface PhaseControl {
  settings: LockSettings;
  signal: AbortSignal;
  progress: (what: string) => void;
}

/**
 * Runs `phase` of `plan` for `owner`, unless its record says it ran. Each transactional step is
 * retried from the start when it hits lock_timeout; the last one also writes the record (an
 * abort: deletes the change's rows). Returns false when the phase had run already.
 */
export async function runPhase(
  client: Client,
  plan: ChangePlan,
  phase: Phase,
  owner: PhaseOwner,
  control: PhaseControl,
): Promise<boolean> {
  const done = await phasesOf(client, plan.change);
  if (done.some((record) => record.phase === phase && record.workflowId === owner.workflowId)) return false;
  const { PG_MIGRATE_LOCK_ID } = await import('node-pg-migrate');
  const name = changePhaseName(plan.change, phase);
  // In the phase's last transaction, under the migration lock (no deploy runs meanwhile; taken
  // first, so the table's locks are not held while waiting for it).
  const lock = () => client.query(`SELECT pg_advisory_xact_lock($1)`, [PG_MIGRATE_LOCK_ID]);
  const record = async () => {
    if (phase === 'abort') {
      const names = done.map((r) => r.name);
      await client.query(`DELETE FROM ${OWNERS_TABLE} WHERE name = ANY($1)`, [names]);
      await client.query(`DELETE FROM ${MIGRATIONS_TABLE} WHERE name = ANY($1)`, [names]);
      return;
    }
    await client.query(`INSERT INTO ${MIGRATIONS_TABLE} (name, run_on) VALUES ($1, now())`, [name]);
    await client.query(
      `INSERT INTO ${OWNERS_TABLE} (name, workflow_id, run_id) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET workflow_id = EXCLUDED.workflow_id, run_id = EXCLUDED.run_id, applied_at = now()`,
      [name, owner.workflowId, owner.runId],
    );
  };
  // A killed worker's session notices within seconds that its client is gone and stops its SQL
  // (a VALIDATE or an index build would otherwise run on, holding its lock against the retry).
  await client.query(
    `SELECT set_config('lock_timeout', $1, false), set_config('client_connection_check_interval', '5s', false)`,
    [`${control.settings.lockTimeoutMs}ms`],
  );
  const steps = plan.phases[phase];
  const transaction = (what: string, body: () => Promise<void>) =>
    withLockRetries(control, what, async () => {
      await client.query('BEGIN');
      try {
        await body();
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      }
    });
  for (const [i, step] of steps.entries()) {
    control.signal.throwIfAborted();
    const last = i === steps.length - 1;
    control.progress(`${plan.change} ${phase}: step ${i + 1} of ${steps.length}`);
    if (step.transaction) {
      await transaction(`${phase} step ${i + 1}`, async () => {
        if (last) await lock();
        for (const statement of step.statements) {
          control.signal.throwIfAborted();
          await client.query(statement);
        }
        if (last) await record();
      });
    } else {
      if (step.index !== undefined) await dropInvalidIndex(client, plan, step.index);
      for (const statement of step.statements) {
        control.signal.throwIfAborted();
        await withLockRetries(control, `${phase} step ${i + 1}`, () => client.query(statement));
      }
      if (step.index !== undefined) await assertValidIndex(client, plan, step.index);
    }
  }
  if (steps.length === 0 || !steps.at(-1)!.transaction) {
    await transaction(`${phase} record`, async () => {
      await lock();
      await record();
    });
  }
  return true;
}

async function withLockRetries(
  control: PhaseControl,
  what: string,
  fn: () => Promise<unknown>,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await fn();
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== '55P03' || attempt >= control.settings.attempts) throw error;
      const backoff = control.settings.retryBaseMs * 2 ** (attempt - 1) * (0.5 + Math.random());
      control.progress(`${what}: lock_timeout on attempt ${attempt}; retrying in ${Math.round(backoff)} ms`);
      await sleep(backoff, undefined, { signal: control.signal });
    }
  }
}

const indexState = `SELECT i.indisvalid AS valid FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1 AND c.relnamespace = $2::regnamespace`;

/** A failed concurrent build leaves an INVALID index behind; IF NOT EXISTS would keep it. */
async function dropInvalidIndex(client: Client, plan: ChangePlan, index: string): Promise<void> {
  const schema = plan.table.split('.')[0]!.replaceAll('"', '');
  const { rows } = await client.query<{ valid: boolean }>(indexState, [index, schema]);
  if (rows[0]?.valid === false) {
    await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${quote(schema)}.${quote(index)}`);
  }
}

async function assertValidIndex(client: Client, plan: ChangePlan, index: string): Promise<void> {
  const schema = plan.table.split('.')[0]!.replaceAll('"', '');
  const { rows } = await client.query<{ valid: boolean }>(indexState, [index, schema]);
  if (rows[0]?.valid !== true) throw new InvalidStateError(`index ${index} was not built valid`);
}
