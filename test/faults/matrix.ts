/**
 * The fault matrix: every workflow type x every fault of harness.ts x each of its side-effecting
 * activities, on one Temporal dev server against real local instances. A cell starts a run with
 * the fault armed at its activity call, applies the fault there, waits for the run to end and
 * checks what a user would: how it ended, exactly one snapshot / instance / export per intended
 * resource (found through the local provider, by owner tags), nothing left that should not be,
 * no advisory lock held, the migrations table equal to the deploy report, a backfill that re-ran
 * at most one batch and ends equal to a single UPDATE, retention's expired snapshots gone and its
 * kept ones there, a vector index VALID or gone, a rehearsal's copy gone and production untouched.
 * `fleet` and `vectorRecall` have no row: fleet's side effects are its child workflows, which have
 * rows of their own (its retried child is tested in test/workflows/fleet.test.ts); vectorRecall
 * only reads, and the rebuild it may start is a vectorIndex run.
 */
import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  CancelledFailure,
  TerminatedFailure,
  WorkflowFailedError,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { Client as PgClient } from 'pg';

import type { Endpoint } from '../../activities/control-plane/control-plane';
import { LocalControlPlane } from '../../activities/control-plane/local';
import { withClient } from '../../activities/postgres/connect';
import { appliedMigrations, ensureMigrationTables } from '../../activities/postgres/migrations';
import type { DeployMigrationResult } from '../../workflows/deploy-migration';
import { OWNER_TAGS } from '../../workflows/lib/owner-tags';
import type { RetentionReport } from '../../workflows/retention';
import type { VectorIndexResult } from '../../workflows/vector-index';
import { seedDemoData } from '../../workers/seed';
import { migrationsDir } from '../helpers/local-instance';
import {
  applyFault,
  connectClient,
  FaultWorker,
  placementFor,
  TemporalServer,
  writeWorkflowBundle,
  FAULTS,
  type Fault,
  type FaultContext,
} from './harness';

const KEEP = { [OWNER_TAGS.keep]: 'true' };

const FAST = { pollInterval: '1 second' };

const COUNTER_ROWS = 3000;
const COUNTER_BATCH = 100;
const EC_ROWS = 500;
const EC_BATCH = 100;
/** A run must end this long after its fault (a killed attempt waits out its activity's timeout). */
const RUN_TIMEOUT_MS = 420_000;

export interface Lab {
  dir: string;
  stateDir: string;
  server: TemporalServer;
  client: Client;
  plane: LocalControlPlane;
  /** One worker per workflow (its lane), started when first needed; replaced after a kill. */
  workers: Map<string, FaultWorker>;
  endpoints: Record<string, Endpoint>;
  workflowBundle: string;
  migrationsDir: string;
}

interface ActivitySpec {
  name: string;
  call?: number;
  /** The activity works in a database session (faults stop it there). */
  usesDatabase: boolean;
  /** Shown in the matrix instead of the name (e.g. `runMigrationStep down`). */
  label?: string;
  /** How long a killed attempt takes to be retried: its heartbeat or start-to-close timeout. */
  retryAfterKillSeconds: number;
  /** The cell needs the failing deploy (its down migration runs). */
  failingDeploy?: boolean;
  /** The cell's deploy rehearses on a copy first (the activity is the rehearsal's). */
  rehearse?: boolean;
  /** The cell's vectorIndex run rebuilds the index (the activity is the rebuild's). */
  rebuild?: boolean;
  /** The cell's run creates instances: after a terminate the orphan sweeper must remove them. */
  createsInstances?: boolean;
  /**
   * The activity does not heartbeat, so no cancel reaches its SQL once it runs: a cancel or
   * terminate meets it after its side effect, as it meets a control-plane call.
   */
  deafToCancel?: boolean;
}

type Ended =
  | { status: 'completed'; result: unknown }
  | { status: 'failed'; type: string | undefined; message: string; details: unknown }
  | { status: 'cancelled' }
  | { status: 'terminated' }
  | { status: 'timed-out'; message: string };

interface Resources {
  snapshots: { snapshotId: string; status: string; tags: Record<string, string> }[];
  instances: { instanceId: string; status: string; tags: Record<string, string> }[];
  exports: { exportId: string; snapshotId: string; status: string }[];
}

interface Intended {
  snapshots: number;
  instances: number;
  exports: number;
}

interface CellRun {
  lab: Lab;
  instanceId: string;
  workflowId: string;
  fault: Fault;
  activity: ActivitySpec;
  ended: Ended;
  created: Resources;
  /** What the cell's instance looked like before (for deploy: the applied migrations). */
  before: unknown;
  /** The lane's task queue (a check may start a follow-up run there). */
  taskQueue: string;
}

interface WorkflowSpec {
  /** The matrix's name for it (`backup+export` is the backup type with an export). */
  name: string;
  type: string;
  /** Its own instance: what a cell finds there (snapshots, copies named after it) is the cell's. */
  instanceId: string;
  /**
   * The instance needs an available snapshot before the first cell (restores, DR test), tagged
   * `dbops:keep` and with these tags.
   */
  baseSnapshot?: boolean | Record<string, string>;
  activities: ActivitySpec[];
  /** Puts the instance in the state the run starts from; returns what `check` compares with. */
  setup?(lab: Lab, activity: ActivitySpec, name: string, fault: Fault): Promise<unknown>;
  /** `name`: unique per cell, starts with the instance id (snapshot or copy to create). */
  input(name: string, activity: ActivitySpec): unknown;
  /** Signals sent with the start (expandContract's codeDeployed). */
  signalWithStart?: { signal: string; args: unknown[] };
  /** How the run ends without a fault, or after one the run must survive. */
  survives(activity: ActivitySpec): 'completed' | 'failed';
  /** Resources the run leaves when it completed; after cancel/terminate at most these. */
  intended: Intended;
  /** It creates instances: after a terminate the orphan sweeper must remove them. */
  createsInstances?: boolean;
  /** The workflow's own checks (report vs table, backfill batches); problems found. */
  check?(run: CellRun): Promise<string[]>;
}

const controlPlaneActivity = (name: string, extra: Partial<ActivitySpec> = {}): ActivitySpec => ({
  name,
  usesDatabase: false,
  retryAfterKillSeconds: 120,
  ...extra,
});

const NONE: Intended = { snapshots: 0, instances: 0, exports: 0 };

// ---- the instance's state, set and read by the cells ----

async function onInstance<T>(lab: Lab, instanceId: string, fn: (client: PgClient) => Promise<T>): Promise<T> {
  return withClient(lab.endpoints[instanceId]!, fn);
}

async function advisoryLocks(lab: Lab, instanceId: string): Promise<number> {
  return onInstance(lab, instanceId, async (client) => {
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'`,
    );
    return rows[0]!.n;
  });
}

/** counter_rows for the counter backfill, its single-UPDATE result, and a log of batch statements. */
async function resetCounter(client: PgClient): Promise<void> {
  await client.query(`DROP TABLE IF EXISTS counter_rows, counter_expected, counter_batches`);
  await client.query(
    `CREATE TABLE counter_rows (id bigint PRIMARY KEY, value int NOT NULL, applied int NOT NULL DEFAULT 0, done boolean NOT NULL DEFAULT false)`,
  );
  await client.query(
    `INSERT INTO counter_rows (id, value) SELECT g * 3, g % 97 FROM generate_series(1, $1) g`,
    [COUNTER_ROWS],
  );
  await client.query(`CREATE TABLE counter_expected AS SELECT * FROM counter_rows`);
  await client.query(
    `UPDATE counter_expected SET value = value * 3, applied = applied + 1, done = true WHERE NOT done`,
  );
  await countBatches(client, 'counter_rows', 'counter_batches');
  await client.query('ANALYZE counter_rows');
}

/** Every UPDATE statement on `table` (one per batch, re-runs included) adds a row to `log`. */
async function countBatches(client: PgClient, table: string, log: string): Promise<void> {
  await client.query(`CREATE TABLE ${log} (n serial PRIMARY KEY)`);
  await client.query(
    `CREATE OR REPLACE FUNCTION ${log}_add() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN INSERT INTO ${log} DEFAULT VALUES; RETURN NULL; END $$`,
  );
  await client.query(
    `CREATE TRIGGER ${log} AFTER UPDATE ON ${table} FOR EACH STATEMENT EXECUTE FUNCTION ${log}_add()`,
  );
}

async function count(client: PgClient, sql: string): Promise<number> {
  const { rows } = await client.query<{ n: number }>(sql);
  return rows[0]!.n;
}

/**
 * Batches beyond those the rows needed: statements logged minus one per full batch of rows done,
 * minus the closing batch that finds no more rows when all are done.
 */
function rerunBatches(statements: number, rowsDone: number, rows: number, batchSize: number): number {
  return statements - Math.floor(rowsDone / batchSize) - (rowsDone === rows ? 1 : 0);
}

async function counterCheck(run: CellRun): Promise<string[]> {
  return onInstance(run.lab, run.instanceId, async (client) => {
    const problems: string[] = [];
    const statements = await count(client, `SELECT count(*)::int AS n FROM counter_batches`);
    const done = await count(client, `SELECT count(*)::int AS n FROM counter_rows WHERE done`);
    const twice = await count(client, `SELECT count(*)::int AS n FROM counter_rows WHERE applied > 1`);
    const reruns = rerunBatches(statements, done, COUNTER_ROWS, COUNTER_BATCH);
    if (reruns > 1) problems.push(`${reruns} batches re-ran (at most 1 allowed)`);
    if (twice > 0) problems.push(`${twice} rows changed twice`);
    if (run.ended.status === 'completed') {
      const different = await count(
        client,
        `SELECT count(*)::int AS n FROM counter_rows r FULL JOIN counter_expected e USING (id)
          WHERE r.value IS DISTINCT FROM e.value OR r.done IS DISTINCT FROM e.done`,
      );
      if (different > 0) problems.push(`${different} rows differ from the single UPDATE`);
    }
    return problems;
  });
}

/** The matrix's migrations: none of 0090 and later applied, fault_switch as the cell needs. */
async function resetDeploy(lab: Lab, instanceId: string, failing: boolean): Promise<void> {
  await onInstance(lab, instanceId, async (client) => {
    await client.query(`DROP TABLE IF EXISTS fault_a, fault_b, fault_switch`);
    await client.query(`DELETE FROM pgmigrations WHERE name >= '0090'`);
    if (failing) await client.query(`CREATE TABLE fault_switch (on_ boolean)`);
  });
}

async function appliedOn(lab: Lab, instanceId: string): Promise<string[]> {
  return onInstance(lab, instanceId, appliedMigrations);
}

/** The deploy's report (result or failure details) against the migrations table. */
function deployReportProblems(ended: Ended, before: string[], after: string[]): string[] {
  const added = after.filter((name) => !before.includes(name));
  const removed = before.filter((name) => !after.includes(name));
  if (removed.length > 0) return [`migrations removed that were applied before: ${removed.join(', ')}`];
  const same = (a: string[], b: string[]) => a.join(',') === b.join(',');
  if (ended.status === 'completed') {
    const applied = (ended.result as { applied: string[] }).applied;
    return same(applied, added)
      ? []
      : [`report says applied [${applied.join(', ')}], the table gained [${added.join(', ')}]`];
  }
  if (ended.status === 'failed' && ended.type === 'DeployFailed') {
    const report = ended.details as { applied: string[]; reverted: string[] };
    const net = report.applied.filter((name) => !report.reverted.includes(name));
    return same(net, added)
      ? []
      : [
          `report says applied [${report.applied.join(', ')}] reverted [${report.reverted.join(', ')}], ` +
            `the table gained [${added.join(', ')}]`,
        ];
  }
  if (ended.status === 'terminated') return [];
  return added.length === 0
    ? []
    : [`ended ${ended.status} without a report, the table gained [${added.join(', ')}]`];
}

/**
 * conversations as before the runbook's change user-id-bigint (user_id integer), EC_ROWS rows, no
 * trace of an earlier cell's run; ec_expected holds every row's user_id, ec_batches counts UPDATEs.
 */
async function resetExpandContract(lab: Lab, instanceId: string): Promise<void> {
  await onInstance(lab, instanceId, async (client) => {
    await client.query(`DROP SCHEMA IF EXISTS change_user_id_bigint CASCADE`);
    await client.query(`DROP TABLE IF EXISTS ec_expected, ec_batches`);
    await client.query(`DROP TRIGGER IF EXISTS ec_batches ON conversations`);
    await client.query(`DROP FUNCTION IF EXISTS dbops_sync_user_id_bigint() CASCADE`);
    await client.query(`DROP FUNCTION IF EXISTS ec_batches_add()`);
    await client.query(`ALTER TABLE conversations DROP COLUMN IF EXISTS _new_user_id`);
    await client.query(`ALTER TABLE conversations ALTER COLUMN user_id TYPE integer`);
    await ensureMigrationTables(client);
    await client.query(`DELETE FROM dbops_migration_owners WHERE name LIKE 'change:%'`);
    await client.query(`DELETE FROM pgmigrations WHERE name LIKE 'change:%'`);
    await client.query(
      `INSERT INTO conversations (user_id, title)
       SELECT g % 100, 'ec ' || g FROM generate_series(1, $1 - (SELECT count(*) FROM conversations)) g`,
      [EC_ROWS],
    );
    await client.query(`CREATE TABLE ec_expected AS SELECT id, user_id FROM conversations`);
    await countBatches(client, 'conversations', 'ec_batches');
    await client.query('ANALYZE conversations');
  });
}

/**
 * What a user checks after the change: completed, user_id is a bigint holding every row's value
 * (no write lost), no constraint or index of the table left invalid, each phase a row of the
 * migrations table, at most one backfill batch re-run; cancelled, the table as before (an abort) or,
 * when the cancel came after the contract committed, the change complete.
 */
async function expandContractCheck(run: CellRun): Promise<string[]> {
  return onInstance(run.lab, run.instanceId, async (client) => {
    const problems: string[] = [];
    const { rows: columns } = await client.query<{ name: string; type: string }>(
      `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
        WHERE attrelid = 'conversations'::regclass AND attnum > 0 AND NOT attisdropped
          AND attname IN ('user_id', '_new_user_id') ORDER BY attname`,
    );
    const shape = columns.map((c) => `${c.name} ${c.type}`).join(', ');
    const different = await count(
      client,
      `SELECT count(*)::int AS n FROM conversations r FULL JOIN ec_expected e USING (id)
        WHERE r.user_id IS DISTINCT FROM e.user_id`,
    );
    if (different > 0) problems.push(`${different} rows lost or changed their user_id`);
    const invalid = await count(
      client,
      `SELECT (SELECT count(*) FROM pg_constraint WHERE conrelid = 'conversations'::regclass AND NOT convalidated)::int
            + (SELECT count(*) FROM pg_index WHERE indrelid = 'conversations'::regclass AND NOT indisvalid)::int AS n`,
    );
    if (invalid > 0) problems.push(`${invalid} constraints or indexes of conversations left invalid`);
    const { rows: recorded } = await client.query<{ name: string }>(
      `SELECT name FROM pgmigrations WHERE name LIKE 'change:%' ORDER BY id`,
    );
    const phases = recorded.map((row) => row.name).join(', ');
    const all = ['expand', 'tighten', 'contract'].map((p) => `change:user-id-bigint:${p}`).join(', ');
    if (run.ended.status === 'completed') {
      if (shape !== 'user_id bigint') problems.push(`completed, but the columns are (${shape})`);
      if (phases !== all) problems.push(`completed, but the migrations table records [${phases}]`);
      const statements = await count(client, `SELECT count(*)::int AS n FROM ec_batches`);
      const reruns = rerunBatches(statements, EC_ROWS, EC_ROWS, EC_BATCH);
      if (reruns > 1) problems.push(`${reruns} backfill batches re-ran (at most 1 allowed)`);
    }
    // Cancelled: aborted (the table as before, no phase row), or the contract had committed (complete).
    if (run.ended.status === 'cancelled' && phases !== all) {
      if (shape !== 'user_id integer')
        problems.push(`cancelled, but the columns are (${shape}), not as before`);
      if (phases !== '') problems.push(`cancelled, but the migrations table still records [${phases}]`);
    }
    if (run.ended.status === 'cancelled' && phases === all && shape !== 'user_id bigint')
      problems.push(`cancelled after its contract, but the columns are (${shape})`);
    return problems;
  });
}

/**
 * retention's cells: with this policy every backup snapshot of the instance expires except the
 * newest and those tagged `dbops:keep`.
 */
const RETENTION_POLICY = { keepNewest: 1, keepDays: 0 };

interface RetentionPlan {
  expired: string[];
  kept: string[];
}

/** Waits until the snapshot is available; one that failed throws with the provider's cause. */
async function snapshotAvailable(lab: Pick<Lab, 'plane' | 'stateDir'>, snapshotId: string): Promise<void> {
  if ((await waitSnapshotSettled(lab.plane, snapshotId)) === 'available') return;
  const record = path.join(lab.stateDir, 'snapshots', snapshotId, 'snapshot.json');
  const { failureCause } = JSON.parse(await readFile(record, 'utf8')) as { failureCause?: string };
  throw new Error(`snapshot ${snapshotId} did not become available: ${failureCause ?? 'no cause given'}`);
}

/**
 * Backups for this cell beside the lab's base snapshot (a backup tagged `dbops:keep`): one new
 * (the newest, kept) and older ones up to one to expire. What an earlier cell left (its newest,
 * what a cancel spared) counts among the older ones. Taken one at a time (the newest is the last),
 * as backups are. Returns what the policy expires and keeps, read from the provider's listing as a
 * user would.
 */
async function retentionSetup(lab: Lab, instanceId: string, name: string): Promise<RetentionPlan> {
  const backup = (id: string) => ({
    [OWNER_TAGS.purpose]: 'backup',
    [OWNER_TAGS.workflowId]: `${id}-backup`,
    [OWNER_TAGS.runId]: randomUUID(),
  });
  const present = await lab.plane.listSnapshots(instanceId);
  const unkept = present.filter(
    (s) => s.tags[OWNER_TAGS.purpose] === 'backup' && s.tags[OWNER_TAGS.keep] === undefined,
  ).length;
  for (let i = 0; i < Math.max(1, 2 - unkept); i++) {
    await lab.plane.createSnapshot(instanceId, `${name}-${i}`, backup(`${name}-${i}`));
    await snapshotAvailable(lab, `${name}-${i}`);
  }
  const snapshots = await lab.plane.listSnapshots(instanceId); // newest first
  const backups = snapshots.filter(
    (s) => s.type === 'manual' && s.status === 'available' && s.tags[OWNER_TAGS.purpose] === 'backup',
  );
  const expired = backups
    .slice(RETENTION_POLICY.keepNewest)
    .filter((s) => s.tags[OWNER_TAGS.keep] === undefined)
    .map((s) => s.snapshotId);
  const kept = snapshots.map((s) => s.snapshotId).filter((id) => !expired.includes(id));
  return { expired, kept };
}

/**
 * What a user checks after retention: every kept snapshot still there; completed, every expired
 * one gone and the report listing exactly those as deleted (after a lost reply, one of them as
 * found already gone), nothing failed.
 */
async function retentionCheck(run: CellRun): Promise<string[]> {
  const plan = run.before as RetentionPlan;
  const left = new Set((await run.lab.plane.listSnapshots(run.instanceId)).map((s) => s.snapshotId));
  const problems = plan.kept
    .filter((id) => !left.has(id))
    .map((id) => `${id} was to be kept, but it is gone`);
  if (run.ended.status !== 'completed') return problems;
  const report = run.ended.result as RetentionReport;
  const stillThere = plan.expired.filter((id) => left.has(id));
  if (stillThere.length > 0) problems.push(`completed, but expired ${stillThere.join(', ')} are still there`);
  const deleted = report.deleted.map((s) => s.snapshotId).sort();
  if (deleted.join(',') !== [...plan.expired].sort().join(','))
    problems.push(`the report deleted [${deleted.join(', ')}], expected [${plan.expired.join(', ')}]`);
  if (report.failed.length > 0)
    problems.push(`the report failed [${report.failed.map((s) => s.snapshotId).join(', ')}]`);
  if (run.fault === 'lost-reply' && !report.deleted.some((s) => s.reason.endsWith('(already gone)')))
    problems.push('after the lost reply, no deletion was found already gone');
  return problems;
}

/**
 * vectorIndex's cells: an HNSW index on a table of its own, built (m 16), or rebuilt with m 8 to
 * tell the new index from the old; the recall bar is off (a recall check is not what they test).
 */
const VECTOR_TABLE = 'fault_vectors';
const VECTOR_INDEX = `${VECTOR_TABLE}_embedding_hnsw_idx`;
const VECTOR_ROWS = 2000;
const REBUILT_M = 8;

/** The rebuild's swap and drop do not heartbeat. */
const DEAF = { deafToCancel: true };

function vectorInput(activity: ActivitySpec) {
  const base = { table: VECTOR_TABLE, column: 'embedding', method: 'hnsw' } as const;
  return activity.rebuild === true
    ? { ...base, action: 'rebuild', m: REBUILT_M, minRecall: 0 }
    : { ...base, action: 'build' };
}

interface VectorIndexRow {
  name: string;
  valid: boolean;
  options: string[];
}

/** A session holding an old snapshot: a concurrent build cannot become VALID while it is open. */
interface VectorCell {
  oldSnapshot: PgClient | undefined;
}

/**
 * The table with its rows and no index but its key (a rebuild's: with the index to rebuild, m 16);
 * for a cancel or terminate of a build (a rebuild's too), an old snapshot held.
 */
async function vectorSetup(
  lab: Lab,
  instanceId: string,
  activity: ActivitySpec,
  fault: Fault,
): Promise<VectorCell> {
  await onInstance(lab, instanceId, async (client) => {
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${VECTOR_TABLE} (id bigint PRIMARY KEY, embedding vector(32) NOT NULL)`,
    );
    await client.query(
      `INSERT INTO ${VECTOR_TABLE}
       SELECT g, (SELECT array_agg(random()) FROM generate_series(1, 32) WHERE g > 0)::vector
         FROM generate_series(1, $1) g ON CONFLICT DO NOTHING`,
      [VECTOR_ROWS],
    );
    for (const { name } of await vectorIndexes(client)) {
      await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${client.escapeIdentifier(name)}`);
    }
    if (activity.rebuild === true) {
      await client.query(
        `CREATE INDEX ${VECTOR_INDEX} ON ${VECTOR_TABLE} USING hnsw (embedding vector_cosine_ops) WITH (m = 16)`,
      );
    }
    await client.query(`ANALYZE ${VECTOR_TABLE}`);
  });
  // A cancel or terminate meets the build while it runs: it waits for this older snapshot (as it
  // would for a long report query) before it can mark its index VALID.
  if (activity.name !== 'buildVectorIndex' || (fault !== 'cancel' && fault !== 'terminate')) {
    return { oldSnapshot: undefined };
  }
  const oldSnapshot = new PgClient({ ...lab.endpoints[instanceId]!, application_name: 'fault-matrix' });
  await oldSnapshot.connect();
  await oldSnapshot.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  await oldSnapshot.query('SELECT 1');
  return { oldSnapshot };
}

async function vectorIndexes(client: PgClient): Promise<VectorIndexRow[]> {
  const { rows } = await client.query<VectorIndexRow>(
    `SELECT c.relname AS name, i.indisvalid AS valid, coalesce(c.reloptions, '{}') AS options
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE i.indrelid = $1::regclass AND NOT i.indisprimary ORDER BY c.relname`,
    [VECTOR_TABLE],
  );
  return rows;
}

async function buildsRunning(client: PgClient): Promise<number> {
  return count(
    client,
    `SELECT count(*)::int AS n FROM pg_stat_progress_create_index WHERE relid = '${VECTOR_TABLE}'::regclass`,
  );
}

const shownIndexes = (list: VectorIndexRow[]) =>
  list.map((i) => `${i.name}${i.valid ? '' : ' INVALID'} (${i.options.join(' ')})`).join(', ') || 'none';

/** One VALID index under the name and nothing else; with `m`, built with that m. */
function oneValid(list: VectorIndexRow[], m?: number): boolean {
  return (
    list.length === 1 &&
    list[0]!.name === VECTOR_INDEX &&
    list[0]!.valid &&
    (m === undefined || list[0]!.options.includes(`m=${m}`))
  );
}

/**
 * What a user checks after a build or rebuild: no backend still building; completed, one VALID
 * index under the name (a rebuild's: the new one) and nothing else; cancelled, a build leaves none
 * (the INVALID one the stopped build left is dropped), a rebuild one VALID index under the name
 * (the old or, once swapped, the new) and nothing else. A terminated run cannot clean up: a build
 * may leave an INVALID index under the name, a rebuild its new or old index beside the VALID one
 * under the name. The workflow's guarantee is that the next run clears them: a follow-up run must
 * complete with one VALID index and nothing else (a build: having dropped the INVALID one).
 */
async function vectorCheck(run: CellRun): Promise<string[]> {
  const { oldSnapshot } = run.before as VectorCell;
  const rebuild = run.activity.rebuild === true;
  const problems: string[] = [];
  const [indexes, builds] = await onInstance(run.lab, run.instanceId, (client) =>
    Promise.all([vectorIndexes(client), buildsRunning(client)]),
  );
  await oldSnapshot?.end();
  if (builds > 0) problems.push(`${builds} backends still build an index on ${VECTOR_TABLE}`);
  const { status } = run.ended;
  if (status === 'completed') {
    if (!oneValid(indexes, rebuild ? REBUILT_M : undefined))
      problems.push(`completed, but the table's indexes are [${shownIndexes(indexes)}]`);
    const reported = (run.ended.result as VectorIndexResult).index;
    if (reported !== `public.${VECTOR_INDEX}`) problems.push(`completed, but the result names ${reported}`);
  }
  if (status === 'cancelled' && (rebuild ? !oneValid(indexes) : indexes.length > 0))
    problems.push(`cancelled, but the table's indexes are [${shownIndexes(indexes)}]`);
  if (status === 'terminated') {
    const underName = indexes.find((i) => i.name === VECTOR_INDEX);
    const others = indexes.filter((i) => i.name !== VECTOR_INDEX);
    const allowed = rebuild
      ? underName?.valid === true && others.every((i) => i.name.startsWith(`${VECTOR_INDEX}_dbops_`))
      : others.length === 0 && underName?.valid !== true;
    if (!allowed) problems.push(`terminated, and the table's indexes are [${shownIndexes(indexes)}]`);
    const next = await run.lab.client.workflow.execute<(input: unknown) => Promise<VectorIndexResult>>(
      'vectorIndex',
      {
        taskQueue: run.taskQueue,
        workflowId: `${run.workflowId}-next`,
        args: [{ instanceId: run.instanceId, ...vectorInput(run.activity) }],
        workflowExecutionTimeout: '3 minutes',
      },
    );
    const after = await onInstance(run.lab, run.instanceId, vectorIndexes);
    if (!oneValid(after, rebuild ? REBUILT_M : undefined))
      problems.push(`the run after the terminated one left [${shownIndexes(after)}]`);
    const leftInvalid = indexes.some((i) => !i.valid);
    if (next.build.droppedInvalid !== leftInvalid)
      problems.push(`the run after the terminated one dropped an INVALID index: ${!leftInvalid}`);
  }
  return problems;
}

/** The rehearsal's activities: their deploy rehearses on a copy, which a terminate leaves to the sweeper. */
const REHEARSED = { rehearse: true, createsInstances: true };

/** The matrix's migrations (test/faults/migrations), in order. */
const FAULT_MIGRATIONS = ['0090_fault_a', '0091_fault_b'];

/**
 * What a user checks after a rehearsed deploy: the migrations table equal to the report;
 * completed, the rehearsal ran every migration on its copy and deleted it; otherwise production
 * as before (the copy gone is checked with every instance the run made).
 */
async function rehearsalCheck(run: CellRun): Promise<string[]> {
  const before = run.before as string[];
  const after = await appliedOn(run.lab, run.instanceId);
  const problems = deployReportProblems(run.ended, before, after);
  if (run.ended.status === 'completed') {
    const rehearsal = (run.ended.result as DeployMigrationResult).rehearsal;
    if (rehearsal === undefined) return [...problems, 'completed without a rehearsal'];
    // A retried rehearsal lists what an earlier attempt applied unreported as `unmeasured`.
    const rehearsed = rehearsal.migrations.filter((m) => m.status === 'applied' || m.status === 'unmeasured');
    const names = rehearsal.migrations.map((m) => `${m.name} ${m.status}`).join(', ');
    if (
      !rehearsal.ok ||
      !rehearsal.copyDeleted ||
      rehearsed.map((m) => m.name).join(',') !== FAULT_MIGRATIONS.join(',') ||
      rehearsal.migrations.length !== FAULT_MIGRATIONS.length
    )
      problems.push(
        `the rehearsal reports ok ${rehearsal.ok}, copy deleted ${rehearsal.copyDeleted}, [${names}]`,
      );
    return problems;
  }
  // Not completed: production as before (only the copy was ever migrated).
  const tables = await onInstance(run.lab, run.instanceId, (client) =>
    count(client, `SELECT count(*)::int AS n FROM pg_class WHERE relname IN ('fault_a', 'fault_b')`),
  );
  if (after.join(',') !== before.join(',') || tables > 0)
    problems.push(`ended ${run.ended.status}, but production changed (${tables} of fault_a, fault_b exist)`);
  return problems;
}

// ---- the workflows and their side-effecting activities ----

const backupSpec = (exported: boolean): WorkflowSpec => {
  const instanceId = exported ? 'fx-export' : 'fx-backup';
  return {
    name: exported ? 'backup+export' : 'backup',
    type: 'backup',
    instanceId,
    activities: exported
      ? [controlPlaneActivity('createSnapshot'), controlPlaneActivity('startExport')]
      : [controlPlaneActivity('createSnapshot')],
    input: (name) => ({
      instanceId,
      snapshotId: name,
      ...(exported ? { export: true } : {}),
      timeouts: FAST,
    }),
    survives: () => 'completed',
    intended: { snapshots: 1, instances: 0, exports: exported ? 1 : 0 },
  };
};

const migrationStep = (label: string, call = 1, extra: Partial<ActivitySpec> = {}): ActivitySpec => ({
  name: 'runMigrationStep',
  call,
  label: `runMigrationStep ${label}`,
  usesDatabase: true,
  retryAfterKillSeconds: 60,
  ...extra,
});

/** A phase of expandContract's declared change (the `call`-th runChangePhase of the run). */
const changePhase = (label: string, call = 1): ActivitySpec => ({
  name: 'runChangePhase',
  call,
  label: `runChangePhase ${label}`,
  usesDatabase: true,
  retryAfterKillSeconds: 40,
});

export const WORKFLOWS: WorkflowSpec[] = [
  backupSpec(false),
  backupSpec(true),
  {
    name: 'pitrRestore',
    type: 'pitrRestore',
    instanceId: 'fx-pitr',
    baseSnapshot: true,
    activities: [controlPlaneActivity('restoreToPointInTime')],
    input: (name) => ({
      instanceId: 'fx-pitr',
      restoreTime: 'latest',
      targetInstanceId: name,
      timeouts: FAST,
    }),
    survives: () => 'completed',
    intended: { snapshots: 0, instances: 1, exports: 0 },
    createsInstances: true,
  },
  {
    name: 'snapshotRestore',
    type: 'snapshotRestore',
    instanceId: 'fx-restore',
    baseSnapshot: true,
    activities: [controlPlaneActivity('restoreFromSnapshot')],
    input: (name) => ({ snapshotId: 'fx-restore-base', targetInstanceId: name, timeouts: FAST }),
    survives: () => 'completed',
    intended: { snapshots: 0, instances: 1, exports: 0 },
    createsInstances: true,
  },
  {
    name: 'drTest',
    type: 'drTest',
    instanceId: 'fx-dr',
    baseSnapshot: true,
    activities: [
      controlPlaneActivity('restoreFromSnapshot'),
      { name: 'runDrChecks', usesDatabase: true, retryAfterKillSeconds: 300 },
      controlPlaneActivity('deleteInstance'),
      controlPlaneActivity('writeDrReport'),
    ],
    input: () => ({ instanceId: 'fx-dr', sampleQueries: 5, timeouts: FAST }),
    survives: () => 'completed',
    intended: NONE,
    createsInstances: true,
  },
  {
    name: 'deployMigration',
    type: 'deployMigration',
    instanceId: 'fx-deploy',
    // A rehearsed deploy's cells fault its rehearsal: the copy's restore and the run on the copy.
    // In this order the sample puts a lost reply, a terminate and the worker kill on the
    // rehearsal, and the server restart, database restart and cancel where they were before.
    activities: [
      { name: 'rehearseMigrations', usesDatabase: true, retryAfterKillSeconds: 20, ...REHEARSED },
      controlPlaneActivity('restoreFromSnapshot', {
        label: 'restoreFromSnapshot (rehearsal copy)',
        retryAfterKillSeconds: 30,
        ...REHEARSED,
      }),
      migrationStep('down', 2, { failingDeploy: true }),
      controlPlaneActivity('createSnapshot'),
      migrationStep('up'),
    ],
    setup: async (lab, activity) => {
      await resetDeploy(lab, 'fx-deploy', activity.failingDeploy === true);
      return appliedOn(lab, 'fx-deploy');
    },
    input: (_name, activity) => ({
      instanceId: 'fx-deploy',
      target: '0091_fault_b',
      ...(activity.rehearse === true ? { rehearse: true } : {}),
    }),
    survives: (activity) => (activity.failingDeploy ? 'failed' : 'completed'),
    intended: { snapshots: 1, instances: 0, exports: 0 },
    check: async (run) => {
      if (run.activity.rehearse === true) return rehearsalCheck(run);
      const after = await appliedOn(run.lab, run.instanceId);
      const problems = deployReportProblems(run.ended, run.before as string[], after);
      if (run.activity.failingDeploy && run.ended.status === 'failed') {
        const reverted = (run.ended.details as { reverted?: string[] } | undefined)?.reverted ?? [];
        if (reverted.join(',') !== '0090_fault_a')
          problems.push(`the failed deploy reverted [${reverted.join(', ')}], expected [0090_fault_a]`);
      }
      return problems;
    },
  },
  {
    name: 'backfill',
    type: 'backfill',
    instanceId: 'fx-backfill',
    activities: [{ name: 'runBackfillChunk', usesDatabase: true, retryAfterKillSeconds: 10 }],
    setup: async (lab) => onInstance(lab, 'fx-backfill', resetCounter),
    input: () => ({
      instanceId: 'fx-backfill',
      name: 'counter',
      params: { factor: 3 },
      batchSize: COUNTER_BATCH,
      delayMs: 100,
    }),
    survives: () => 'completed',
    intended: NONE,
    check: counterCheck,
  },
  {
    name: 'expandContract',
    type: 'expandContract',
    instanceId: 'fx-ec',
    activities: [
      changePhase('expand'),
      { name: 'runBackfillChunk', usesDatabase: true, retryAfterKillSeconds: 10 },
      changePhase('tighten', 2),
      controlPlaneActivity('createSnapshot', { label: 'createSnapshot (pre-contract)' }),
      changePhase('contract', 3),
    ],
    setup: async (lab) => resetExpandContract(lab, 'fx-ec'),
    input: () => ({ instanceId: 'fx-ec', change: 'user-id-bigint', batchSize: EC_BATCH }),
    signalWithStart: { signal: 'codeDeployed', args: [{ by: 'fault-matrix' }] },
    survives: () => 'completed',
    intended: { snapshots: 1, instances: 0, exports: 0 },
    check: expandContractCheck,
  },
  {
    name: 'maintenance',
    type: 'maintenance',
    instanceId: 'fx-maintenance',
    activities: [{ name: 'vacuumTable', usesDatabase: true, retryAfterKillSeconds: 60 }],
    input: () => ({ instanceId: 'fx-maintenance', tables: ['conversations'] }),
    survives: () => 'completed',
    intended: NONE,
  },
  {
    name: 'healthCheck',
    type: 'healthCheck',
    instanceId: 'fx-health',
    activities: [{ name: 'measureHealth', usesDatabase: true, retryAfterKillSeconds: 120 }],
    input: () => ({ instanceId: 'fx-health' }),
    survives: () => 'completed',
    intended: NONE,
  },
  {
    name: 'retention',
    type: 'retention',
    instanceId: 'fx-retention',
    // A backup tagged dbops:keep, which every cell must find still there.
    baseSnapshot: { [OWNER_TAGS.purpose]: 'backup' },
    activities: [controlPlaneActivity('expireSnapshot', { retryAfterKillSeconds: 60 })],
    setup: (lab, _activity, name) => retentionSetup(lab, 'fx-retention', name),
    input: () => ({ instanceId: 'fx-retention', ...RETENTION_POLICY }),
    survives: () => 'completed',
    intended: NONE,
    check: retentionCheck,
  },
  // A build, and a rebuild: its new index built beside the old one (as a build is), the names
  // swapped, the old one dropped. In this order the sample puts the cancel on a build and the
  // terminate on a rebuild's build (each leaves an INVALID index to clear), and the server and
  // database restarts on the swap and the drop.
  {
    name: 'vectorIndex',
    type: 'vectorIndex',
    instanceId: 'fx-vector',
    activities: [
      { name: 'buildVectorIndex', usesDatabase: true, retryAfterKillSeconds: 60 },
      {
        name: 'buildVectorIndex',
        label: 'buildVectorIndex (rebuild)',
        usesDatabase: true,
        retryAfterKillSeconds: 60,
        rebuild: true,
      },
      { name: 'swapVectorIndex', usesDatabase: true, retryAfterKillSeconds: 60, rebuild: true, ...DEAF },
      {
        name: 'dropVectorIndex',
        label: 'dropVectorIndex (the old one)',
        usesDatabase: true,
        retryAfterKillSeconds: 60,
        rebuild: true,
        ...DEAF,
      },
    ],
    setup: (lab, activity, _name, fault) => vectorSetup(lab, 'fx-vector', activity, fault),
    input: (_name, activity) => ({ instanceId: 'fx-vector', ...vectorInput(activity) }),
    survives: () => 'completed',
    intended: NONE,
    check: vectorCheck,
  },
  // The sweeper: an orphan (a DR copy whose owning run Temporal does not know) is made before
  // the run; once the sweep has completed it is gone.
  {
    name: 'sweepOrphans',
    type: 'sweepOrphans',
    instanceId: 'fx-sweep',
    activities: [controlPlaneActivity('deleteInstance')],
    setup: async (lab, _activity, name) => {
      await lab.plane.createInstance(name, {
        tags: {
          [OWNER_TAGS.purpose]: 'dr-test',
          [OWNER_TAGS.workflowId]: `${name}-owner`,
          [OWNER_TAGS.runId]: randomUUID(), // a run that never was
        },
      });
      await waitAvailable(lab.plane, name);
      return name;
    },
    input: () => ({ timeouts: FAST }),
    survives: () => 'completed',
    intended: NONE,
    check: async (run) => {
      const orphan = run.before as string;
      const left = (await run.lab.plane.listInstances()).find((i) => i.instanceId === orphan);
      await run.lab.plane.deleteInstance(orphan, { skipFinalSnapshot: true }).catch(() => undefined);
      if (run.ended.status !== 'completed' || left === undefined || left.status === 'deleting') return [];
      return [`the orphan ${orphan} is still there (${left.status}) after the sweep completed`];
    },
  },
];

// ---- the lab: one dev server, a worker per workflow, an instance per workflow ----

async function waitAvailable(plane: LocalControlPlane, instanceId: string): Promise<Endpoint> {
  for (let i = 0; i < 1200; i++) {
    const description = await plane.describeInstance(instanceId);
    if (description.status === 'available' && description.endpoint !== undefined) return description.endpoint;
    if (description.status !== 'creating')
      throw new Error(`instance ${instanceId} is ${description.providerStatus}`);
    await sleep(100);
  }
  throw new Error(`instance ${instanceId} did not become available`);
}

async function waitSnapshotSettled(plane: LocalControlPlane, snapshotId: string): Promise<string> {
  for (let i = 0; i < 240; i++) {
    const { status } = await plane.describeSnapshot(snapshotId);
    if (status !== 'creating') return status;
    await sleep(500);
  }
  throw new Error(`snapshot ${snapshotId} is still being created`);
}

/** The lab for `cells`: the dev server, the workflow bundle, and each of their workflows' instance. */
export async function openLab(cells: Cell[]): Promise<Lab> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'dbops-faults-'));
  await chmod(dir, 0o755); // the postgres user must reach the clusters inside
  const stateDir = path.join(dir, 'state');
  const plane = new LocalControlPlane({ stateDir });
  const extra: Record<string, string> = {};
  const own = path.join(__dirname, 'migrations');
  for (const file of await readdir(own)) extra[file] = await readFile(path.join(own, file), 'utf8');
  const specs = [...new Set(cells.map((cell) => cell.workflow))];
  const [server, workflowBundle, migrations] = await Promise.all([
    TemporalServer.start(path.join(dir, 'temporal')),
    writeWorkflowBundle(dir),
    migrationsDir('0004_conversation_chunks_ivfflat_index', extra),
    (async () => {
      for (const spec of specs) await plane.createInstance(spec.instanceId, { tags: KEEP });
    })(),
  ]);
  const endpoints: Record<string, Endpoint> = {};
  for (const spec of specs) {
    const endpoint = await waitAvailable(plane, spec.instanceId);
    endpoints[spec.instanceId] = endpoint;
    await seedDemoData(endpoint, { conversations: 40, chunksPerConversation: 1 });
    if (spec.baseSnapshot) {
      const tags = spec.baseSnapshot === true ? {} : spec.baseSnapshot;
      await plane.createSnapshot(spec.instanceId, `${spec.instanceId}-base`, { ...KEEP, ...tags });
    }
  }
  for (const spec of specs.filter((s) => s.baseSnapshot)) {
    await snapshotAvailable({ plane, stateDir }, `${spec.instanceId}-base`);
  }
  return {
    dir,
    stateDir,
    server,
    client: await connectClient(server),
    plane,
    workers: new Map(),
    endpoints,
    workflowBundle,
    migrationsDir: migrations,
  };
}

/** The worker of the workflow's lane (its own task queue), started when first needed. */
async function laneWorker(lab: Lab, workflow: WorkflowSpec): Promise<FaultWorker> {
  let worker = lab.workers.get(workflow.name);
  if (worker === undefined) {
    const lane = workflow.name.replace(/[^a-zA-Z]/g, '-');
    worker = new FaultWorker({
      taskQueue: `faults-${lane}`,
      temporalAddress: lab.server.address,
      stateDir: lab.stateDir,
      endpoint: lab.endpoints[workflow.instanceId]!,
      migrationsDir: lab.migrationsDir,
      workflowBundle: lab.workflowBundle,
      logFile: path.join(lab.dir, `worker-${lane}.log`),
    });
    lab.workers.set(workflow.name, worker);
  }
  if (!worker.alive) await worker.start();
  return worker;
}

/** Removes the lab; with `keepLogs`, the server's and workers' logs stay (their directory is printed). */
export async function closeLab(lab: Lab | undefined, keepLogs = false): Promise<void> {
  if (lab === undefined) return;
  await Promise.all([...lab.workers.values()].map((worker) => worker.stop()));
  await lab.client.connection.close().catch(() => undefined);
  await lab.server.stop();
  for (const instance of await lab.plane.listInstances().catch(() => [])) {
    await lab.plane.deleteInstance(instance.instanceId, { skipFinalSnapshot: true }).catch(() => undefined);
  }
  for (let i = 0; i < 600 && (await lab.plane.listInstances().catch(() => [])).length > 0; i++)
    await sleep(100);
  if (keepLogs) {
    await rm(lab.stateDir, { recursive: true, force: true });
    console.log(`the worker and server logs are in ${lab.dir}`);
  } else {
    await rm(lab.dir, { recursive: true, force: true });
  }
}

// ---- cells ----

export interface Cell {
  workflow: WorkflowSpec;
  activity: ActivitySpec;
  fault: Fault;
}

export interface CellResult {
  cell: Cell;
  held: boolean;
  problems: string[];
  note: string;
  seconds: number;
}

export function cellName(cell: Cell): string {
  return `${cell.workflow.name} | ${cell.activity.label ?? cell.activity.name} | ${cell.fault}`;
}

/** Every cell of the matrix. */
export function allCells(): Cell[] {
  return WORKFLOWS.flatMap((workflow) =>
    workflow.activities.flatMap((activity) => FAULTS.map((fault) => ({ workflow, activity, fault }))),
  );
}

/**
 * One cell for every (workflow, fault) pair: the activities take turns across the faults; a worker
 * kill goes to the activity retried soonest after it (its timeout decides how long the cell takes).
 */
export function sampleCells(): Cell[] {
  return WORKFLOWS.flatMap((workflow) =>
    FAULTS.map((fault, i) => {
      const activity =
        fault === 'kill-worker'
          ? [...workflow.activities].sort((a, b) => a.retryAfterKillSeconds - b.retryAfterKillSeconds)[0]!
          : workflow.activities[i % workflow.activities.length]!;
      return { workflow, activity, fault };
    }),
  );
}

async function exportsOnDisk(stateDir: string): Promise<Resources['exports']> {
  const dir = path.join(stateDir, 'exports');
  const found: Resources['exports'] = [];
  for (const id of await readdir(dir).catch(() => [])) {
    const record = JSON.parse(
      await readFile(path.join(dir, id, 'export.json'), 'utf8').catch(() => '{}'),
    ) as {
      snapshotId?: string;
      status?: string;
    };
    if (record.snapshotId !== undefined)
      found.push({ exportId: id, snapshotId: record.snapshotId, status: record.status ?? '?' });
  }
  return found;
}

/**
 * What the workflow's instance has: its snapshots, the instances named after it (copies and
 * restores are `<instance>-...`) and the exports of its snapshots. Cells of other workflows, on
 * other instances, may run at the same time and are not counted.
 */
async function inventory(lab: Lab, instanceId: string): Promise<Resources> {
  const snapshots = (await lab.plane.listSnapshots(instanceId)).map((s) => ({
    snapshotId: s.snapshotId,
    status: s.status,
    tags: s.tags,
  }));
  const instances = (await lab.plane.listInstances())
    .filter((i) => i.instanceId.startsWith(`${instanceId}-`))
    .map((i) => ({ instanceId: i.instanceId, status: i.status, tags: i.tags }));
  const exports = (await exportsOnDisk(lab.stateDir)).filter((e) =>
    snapshots.some((s) => s.snapshotId === e.snapshotId),
  );
  return { snapshots, instances, exports };
}

function newSince(before: Resources, after: Resources): Resources {
  const has = <T>(list: T[], key: (item: T) => string, item: T) =>
    list.some((other) => key(other) === key(item));
  return {
    snapshots: after.snapshots.filter((s) => !has(before.snapshots, (x) => x.snapshotId, s)),
    // An instance still being deleted is gone for the user; the provider finishes it.
    instances: after.instances.filter(
      (i) => i.status !== 'deleting' && !has(before.instances, (x) => x.instanceId, i),
    ),
    exports: after.exports.filter((e) => !has(before.exports, (x) => x.exportId, e)),
  };
}

async function outcome(handle: WorkflowHandle): Promise<Ended> {
  try {
    return { status: 'completed', result: await handle.result() };
  } catch (error) {
    if (!(error instanceof WorkflowFailedError)) throw error;
    const cause = error.cause;
    if (cause instanceof CancelledFailure) return { status: 'cancelled' };
    if (cause instanceof TerminatedFailure) return { status: 'terminated' };
    if (cause instanceof ApplicationFailure) {
      return {
        status: 'failed',
        type: cause.type ?? undefined,
        message: cause.message,
        details: cause.details?.[0],
      };
    }
    // An activity's or a child's failure: the innermost cause says what went wrong.
    let root: Error | undefined = cause;
    while (root?.cause instanceof Error) root = root.cause;
    const rootType = root instanceof ApplicationFailure ? root.type : root?.name;
    return {
      status: 'failed',
      type: cause?.name,
      message: `${cause?.message ?? error.message}${root !== cause ? ` <- ${rootType}: ${root?.message}` : ''}`,
      details: undefined,
    };
  }
}

function describeEnd(ended: Ended): string {
  switch (ended.status) {
    case 'failed':
      return `failed (${ended.type ?? 'no type'}: ${ended.message.slice(0, 300)})`;
    case 'timed-out':
      return ended.message;
    default:
      return ended.status;
  }
}

/** Whether the run ended as documented for the fault. */
function endProblem(cell: Cell, ended: Ended): string | undefined {
  const { fault, workflow, activity } = cell;
  const wanted =
    fault === 'cancel' ? 'cancelled' : fault === 'terminate' ? 'terminated' : workflow.survives(activity);
  if (ended.status === wanted) {
    if (wanted === 'failed' && (ended as { type?: string }).type !== 'DeployFailed')
      return `ended ${describeEnd(ended)}, expected the deploy's DeployFailed report`;
    return undefined;
  }
  // A cancelled deploy may end with its report of what it applied (checked against the table).
  if (fault === 'cancel' && ended.status === 'failed' && ended.type === 'DeployFailed') return undefined;
  return `ended ${describeEnd(ended)}, expected ${wanted}`;
}

function resourceProblems(cell: Cell, workflowId: string, created: Resources): string[] {
  const problems: string[] = [];
  const intended = cell.workflow.intended;
  const exact = cell.fault !== 'cancel' && cell.fault !== 'terminate';
  const kinds: [keyof Intended, { id: string; tags?: Record<string, string> }[]][] = [
    ['snapshots', created.snapshots.map((s) => ({ id: s.snapshotId, tags: s.tags }))],
    ['instances', created.instances.map((i) => ({ id: i.instanceId, tags: i.tags }))],
    ['exports', created.exports.map((e) => ({ id: e.exportId }))],
  ];
  for (const [kind, items] of kinds) {
    // Instances a cancelled or terminated run made are temporary: none may be left.
    const allowed = kind === 'instances' && !exact ? 0 : intended[kind];
    const bad = exact ? items.length !== allowed : items.length > allowed;
    if (bad) {
      problems.push(
        `${items.length} ${kind} left (${items.map((i) => i.id).join(', ') || 'none'}), expected ${exact ? '' : 'at most '}${allowed}`,
      );
    }
    for (const item of items) {
      if (item.tags === undefined) continue;
      const owner = item.tags[OWNER_TAGS.workflowId];
      if (owner === undefined || !owner.startsWith(workflowId) || item.tags[OWNER_TAGS.runId] === undefined) {
        problems.push(`${item.id} lacks this run's owner tags (${OWNER_TAGS.workflowId}=${owner ?? 'none'})`);
      }
    }
  }
  return problems;
}

/** Runs the orphan sweeper once, when the worker has it; otherwise says so. */
async function sweep(lab: Lab, taskQueue: string, workflowId: string): Promise<string | undefined> {
  try {
    await lab.client.workflow.execute('sweepOrphans', {
      taskQueue,
      workflowId: `${workflowId}-sweep`,
      args: [{}],
      workflowExecutionTimeout: '3 minutes',
    });
    return undefined;
  } catch (error) {
    return `sweepOrphans did not run: ${(error as Error).message.slice(0, 200)}`;
  }
}

async function removeCreated(lab: Lab, created: Resources): Promise<void> {
  for (const instance of created.instances) {
    await lab.plane.deleteInstance(instance.instanceId, { skipFinalSnapshot: true }).catch(() => undefined);
  }
  for (const snapshot of created.snapshots) {
    await waitSnapshotSettled(lab.plane, snapshot.snapshotId).catch(() => undefined);
    await lab.plane.deleteSnapshot(snapshot.snapshotId).catch(() => undefined);
  }
  for (let i = 0; i < 600; i++) {
    const left = (await lab.plane.listInstances()).filter((x) =>
      created.instances.some((c) => c.instanceId === x.instanceId),
    );
    if (left.length === 0) break;
    await sleep(100);
  }
  // An export of a terminated run goes on in its job: removed once it has ended.
  for (const { exportId } of created.exports) {
    for (let i = 0; i < 1200; i++) {
      const { status } = await lab.plane.describeExport(exportId);
      if (status !== 'starting' && status !== 'in-progress') break;
      await sleep(100);
    }
    await rm(path.join(lab.stateDir, 'exports', exportId), { recursive: true, force: true });
  }
}

let serial = 0;

/** Runs one cell; a cell that cannot even be set up is a failed cell, with the reason. */
export async function runCell(lab: Lab, cell: Cell): Promise<CellResult> {
  const started = Date.now();
  try {
    return await runCellChecked(lab, cell);
  } catch (error) {
    const message = (error as Error).message;
    return {
      cell,
      held: false,
      problems: [`the cell could not run: ${message}`],
      note: '',
      seconds: (Date.now() - started) / 1000,
    };
  }
}

async function runCellChecked(lab: Lab, cell: Cell): Promise<CellResult> {
  const started = Date.now();
  const { workflow, activity, fault } = cell;
  serial += 1;
  const workflowId = `fm${serial}-${workflow.type.toLowerCase()}-${fault}`;
  const name = `${workflow.instanceId}-c${serial}`;
  const problems: string[] = [];
  let note = '';
  const worker = await laneWorker(lab, workflow);
  const taskQueue = worker.options.taskQueue;
  const before = await workflow.setup?.(lab, activity, name, fault);
  const resourcesBefore = await inventory(lab, workflow.instanceId);
  await worker.arm({
    workflowId,
    activity: activity.name,
    call: activity.call ?? 1,
    placement:
      activity.deafToCancel === true && (fault === 'cancel' || fault === 'terminate')
        ? 'after'
        : placementFor(fault, activity.usesDatabase),
    action: fault === 'lost-reply' ? 'throw' : 'pause',
  });
  const options = { taskQueue, workflowId, args: [workflow.input(name, activity)] };
  const handle = workflow.signalWithStart
    ? await lab.client.workflow.signalWithStart(workflow.type, {
        ...options,
        signal: workflow.signalWithStart.signal,
        signalArgs: workflow.signalWithStart.args,
      })
    : await lab.client.workflow.start(workflow.type, options);
  const result = outcome(handle);
  const context: FaultContext = {
    server: lab.server,
    worker,
    client: lab.client,
    plane: lab.plane,
    stateDir: lab.stateDir,
    instanceId: workflow.instanceId,
  };
  try {
    const applied = await applyFault(context, fault, handle, result);
    note = applied.note;
    if (!applied.reached) problems.push(`fault not applied: ${applied.note}`);
  } catch (error) {
    problems.push(`fault not applied: ${(error as Error).message}`);
  }
  worker.disarm();
  // Wait for the end; a worker that died on its own is a finding, and is replaced so the run can go on.
  let ended: Ended | undefined;
  const deadline = Date.now() + RUN_TIMEOUT_MS;
  void result.then(
    (value) => (ended = value),
    (error: Error) => (ended = { status: 'timed-out', message: error.message }),
  );
  while (ended === undefined && Date.now() < deadline) {
    if (!worker.alive) {
      problems.push(
        `the worker process died (${worker.exitCode ?? worker.exitSignal}); see ${path.basename(worker.options.logFile)}`,
      );
      await worker.start();
    }
    await sleep(200);
  }
  if (ended === undefined) {
    ended = { status: 'timed-out', message: `still running after ${RUN_TIMEOUT_MS / 1000} s` };
    await handle.terminate('fault matrix: the cell timed out').catch(() => undefined);
  }
  const endedProblem = endProblem(cell, ended);
  if (endedProblem !== undefined) problems.push(endedProblem);
  if (fault === 'terminate' && (workflow.createsInstances === true || activity.createsInstances === true)) {
    const missing = await sweep(lab, taskQueue, workflowId);
    if (missing !== undefined) problems.push(missing);
  }
  const created = newSince(resourcesBefore, await inventory(lab, workflow.instanceId));
  problems.push(...resourceProblems(cell, workflowId, created));
  const locks = await advisoryLocks(lab, workflow.instanceId);
  if (locks > 0) problems.push(`${locks} advisory locks held on ${workflow.instanceId}`);
  if (workflow.check) {
    const run = {
      lab,
      instanceId: workflow.instanceId,
      workflowId,
      fault,
      activity,
      ended,
      created,
      before,
      taskQueue,
    };
    problems.push(...(await workflow.check(run)));
  }
  await removeCreated(lab, created);
  return {
    cell,
    held: problems.length === 0,
    problems,
    note: `${note}; ${describeEnd(ended)}`,
    seconds: Math.round((Date.now() - started) / 100) / 10,
  };
}

/**
 * Cells whose fault is a worker kill mostly wait for the killed attempt's timeout: they run side
 * by side, one lane (worker, task queue, instance) per workflow, each lane's cells in turn.
 */
export async function runLanes(lab: Lab, cells: Cell[]): Promise<CellResult[]> {
  const lanes = new Map<string, Cell[]>();
  for (const cell of cells) lanes.set(cell.workflow.name, [...(lanes.get(cell.workflow.name) ?? []), cell]);
  const results: CellResult[] = [];
  await Promise.all(
    [...lanes.values()].map(async (lane) => {
      for (const cell of lane) results.push(await runCell(lab, cell));
    }),
  );
  return results;
}

export function formatMatrix(results: CellResult[]): string {
  const lines = results.map(
    (r) =>
      `${r.held ? 'held  ' : 'FAILED'} ${cellName(r.cell)} (${r.seconds} s)${r.held ? '' : `: ${r.problems.join('; ')} [${r.note}]`}`,
  );
  const held = results.filter((r) => r.held).length;
  lines.push(`cells ${results.length}, held ${held}, failed ${results.length - held}`);
  return lines.join('\n');
}
