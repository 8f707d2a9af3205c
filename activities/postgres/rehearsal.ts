/**
 * The measuring run of a rehearsed deploy: on a copy restored from production's pre-migration
 * snapshot, applies exactly the deploy's planned migrations, one at a time, with the runner and
 * settings production's apply uses (runMigrations), and measures what each did, so the approver
 * sees how long it runs and whom it would block before saying yes:
 *
 * - duration: wall time of the migration's apply, from the worker;
 * - locks: a second session samples `pg_locks` for the migration's backend every SAMPLE_EVERY_MS;
 *   for each table or index that existed before, the strongest mode granted and how long it was
 *   seen held (first to last sample: accurate to the sample interval; a lock held for less than
 *   one interval may go unseen). The copy has no other sessions, so nothing is measured waiting;
 * - rewrites: tables whose storage was replaced (relfilenode changed: ALTER TYPE, a volatile
 *   default, VACUUM FULL, CLUSTER), with their rows (counted after) and size before and after;
 * - rows inserted / updated / deleted per table: `pg_stat_user_tables` deltas;
 * - index builds: new indexes, with the time `pg_stat_progress_create_index` showed the backend
 *   building (sampled as the locks);
 * - WAL written: `pg_current_wal_lsn()` before and after (nobody else writes on the copy);
 * - the failure: the migration's error, which ends the rehearsal (later ones are not run).
 *
 * Only the copy is ever connected to. Retried, the activity goes on from its last heartbeat, which
 * carries the migrations measured so far; a migration an earlier attempt applied without
 * reporting it is listed as applied, unmeasured. Cancelled, it cancels the migration's statement
 * (as production's apply does) and stops.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { Context } from '@temporalio/activity';
import type { Client } from 'pg';

import { heartbeatWhile } from '../heartbeat';
import { workflowRunOf } from '../workflow-run';
import { failFast } from './deploy';
import type { WithInstance } from './instance';
import {
  appliedMigrations,
  DEFAULT_MIGRATE_SETTINGS,
  MIGRATIONS_TABLE,
  MigrationRunError,
  OWNERS_TABLE,
  runMigrations,
  type MigrateSettings,
} from './migrations';

/** How often the second session looks at the migration's locks and index builds. */
export const SAMPLE_EVERY_MS = 100;

/**
 * A backend flushes its table statistics at most once a second: after a migration, the rehearsal
 * waits this long and sends one statement on the migration's session, so its counts are flushed.
 */
const STATS_FLUSH_MS = 1_100;

/** PostgreSQL's table lock modes, weakest first. */
export const LOCK_MODES = [
  'AccessShareLock',
  'RowShareLock',
  'RowExclusiveLock',
  'ShareUpdateExclusiveLock',
  'ShareLock',
  'ShareRowExclusiveLock',
  'ExclusiveLock',
  'AccessExclusiveLock',
] as const;

export interface RehearsalInput {
  /** The copy restored from the pre-migration snapshot: the only instance this connects to. */
  copyInstanceId: string;
  /** The deploy's plan: exactly these, in order. */
  names: string[];
  /** The deploy's own migrate settings (production's apply runs with the same). */
  settings?: Partial<MigrateSettings>;
}

export interface LockHeld {
  /** The table or index, as `regclass` prints it. */
  relation: string;
  /** The strongest mode granted on it, as `pg_locks` names it (e.g. `AccessExclusiveLock`). */
  mode: string;
  /** First to last sample that saw it held; 0 when seen once. */
  heldMs: number;
}

export interface TableRewrite {
  table: string;
  rows: number;
  bytesBefore: number;
  bytesAfter: number;
}

export interface RowChanges {
  table: string;
  inserted: number;
  updated: number;
  deleted: number;
}

export interface IndexBuild {
  index: string;
  table: string;
  /** Time the backend was seen building it; 0 when the build was shorter than a sample. */
  ms: number;
}

export interface MigrationRehearsal {
  name: string;
  /** `unmeasured`: found applied on the copy, by an attempt that died before it reported. */
  status: 'applied' | 'failed' | 'not-run' | 'unmeasured';
  durationMs: number;
  /** Per relation that existed before, the strongest lock, strongest first. */
  locks: LockHeld[];
  rewrites: TableRewrite[];
  rowChanges: RowChanges[];
  indexBuilds: IndexBuild[];
  walBytes: number;
  /** The migration's error when it failed. */
  error?: string;
}

export interface RehearsalRun {
  migrations: MigrationRehearsal[];
  /** The migration that failed, if one did. */
  failed?: { name: string; error: string };
  sampleEveryMs: number;
}

export interface RehearsalDeps {
  withInstance: WithInstance;
  migrationsDir: string;
}

export function createRehearsalActivities(deps: RehearsalDeps) {
  return {
    /**
     * Applies `names` on the copy, measuring each (see the file's header). Heartbeats the
     * migrations measured so far; a retry starts from them.
     */
    async rehearseMigrations(input: RehearsalInput): Promise<RehearsalRun> {
      const context = Context.current();
      const settings = { ...DEFAULT_MIGRATE_SETTINGS, ...input.settings };
      const owner = workflowRunOf(context, 'a rehearsal');
      const earlier = context.info.heartbeatDetails as { migrations?: MigrationRehearsal[] } | undefined;
      const run: RehearsalRun = {
        migrations: (earlier?.migrations ?? []).filter((m) => m.status === 'applied'),
        sampleEveryMs: SAMPLE_EVERY_MS,
      };
      let status = `rehearsing ${input.names.join(', ')} on ${input.copyInstanceId}`;
      return failFast(() =>
        heartbeatWhile(
          (signal) =>
            deps.withInstance(input.copyInstanceId, (client) =>
              deps.withInstance(input.copyInstanceId, async (observer) => {
                const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
                const pid = rows[0]!.pid;
                const measured = new Set(run.migrations.map((m) => m.name));
                for (const name of input.names) {
                  if (measured.has(name)) continue;
                  if (run.failed !== undefined) {
                    run.migrations.push(notRun(name));
                    continue;
                  }
                  if ((await appliedMigrations(client)).includes(name)) {
                    run.migrations.push({ ...notRun(name), status: 'unmeasured' });
                    continue;
                  }
                  status = `rehearsing ${name} on ${input.copyInstanceId}`;
                  context.log.info(status);
                  const apply = () =>
                    runMigrations(client, deps.migrationsDir, 'up', [name], settings, {
                      owner,
                      signal,
                      progress: (what) => {
                        status = `rehearsal: ${what}`;
                      },
                      cancelRunning: async () => {
                        await observer.query('SELECT pg_cancel_backend($1)', [pid]);
                      },
                    });
                  const result = await measure(client, observer, pid, name, apply);
                  run.migrations.push(result);
                  if (result.error !== undefined) run.failed = { name, error: result.error };
                }
                return run;
              }),
            ),
          { details: () => ({ status, migrations: run.migrations }) },
        ),
      );
    },
  };
}

function notRun(name: string): MigrationRehearsal {
  return {
    name,
    status: 'not-run',
    durationMs: 0,
    locks: [],
    rewrites: [],
    rowChanges: [],
    indexBuilds: [],
    walBytes: 0,
  };
}

interface Relation {
  oid: number;
  name: string;
  kind: string;
  table: string | null;
  filenode: string;
  bytes: number;
  inserted: number;
  updated: number;
  deleted: number;
}

/** The user's tables and indexes (not the migration bookkeeping): storage, size, row counters. */
async function relations(observer: Client): Promise<Map<number, Relation>> {
  await observer.query('SELECT pg_stat_clear_snapshot()');
  const { rows } = await observer.query<Relation>(
    `SELECT c.oid::int AS oid, c.oid::regclass::text AS name, c.relkind::text AS kind,
            i.indrelid::regclass::text AS table, c.relfilenode::text AS filenode,
            pg_relation_size(c.oid)::float8 AS bytes,
            COALESCE(s.n_tup_ins, 0)::float8 AS inserted, COALESCE(s.n_tup_upd, 0)::float8 AS updated,
            COALESCE(s.n_tup_del, 0)::float8 AS deleted
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_index i ON i.indexrelid = c.oid
       LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
      WHERE c.relkind IN ('r', 'm', 'i')
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
        AND c.oid NOT IN (to_regclass($1), to_regclass($2))
        AND (i.indrelid IS NULL OR i.indrelid NOT IN (to_regclass($1), to_regclass($2)))`,
    [MIGRATIONS_TABLE, OWNERS_TABLE],
  );
  return new Map(rows.map((row) => [row.oid, row]));
}

async function walLsn(observer: Client): Promise<string> {
  const { rows } = await observer.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  return rows[0]!.lsn;
}

/** Runs `apply` (one migration) while a second session samples its backend, and reports. */
async function measure(
  client: Client,
  observer: Client,
  pid: number,
  name: string,
  apply: () => Promise<unknown>,
): Promise<MigrationRehearsal> {
  const before = await relations(observer);
  const walBefore = await walLsn(observer);
  const sampler = startSampler(observer, pid, before);
  const started = performance.now();
  let error: string | undefined;
  try {
    await apply();
  } catch (failure) {
    // A failed migration is the rehearsal's finding; anything else (cancel, lost connection) is not.
    if (!(failure instanceof MigrationRunError)) throw failure;
    error = failure.message;
  } finally {
    await sampler.stop();
  }
  const durationMs = Math.round(performance.now() - started);
  const { rows: wal } = await observer.query<{ bytes: number }>(
    'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::float8 AS bytes',
    [walBefore],
  );
  // The migration session's row counters reach the shared statistics at its next flush.
  await sleep(STATS_FLUSH_MS);
  await client.query('SELECT 1');
  const after = await relations(observer);

  const rewrites: TableRewrite[] = [];
  const rowChanges: RowChanges[] = [];
  for (const [oid, old] of before) {
    const now = after.get(oid);
    if (now === undefined || now.kind === 'i') continue;
    if (now.filenode !== old.filenode) {
      // regclass prints the name quoted where SQL needs it: it comes from the catalog, not from input.
      const { rows } = await observer.query<{ n: number }>(`SELECT count(*)::float8 AS n FROM ${now.name}`);
      rewrites.push({ table: now.name, rows: rows[0]!.n, bytesBefore: old.bytes, bytesAfter: now.bytes });
    }
    const changes = {
      table: now.name,
      inserted: now.inserted - old.inserted,
      updated: now.updated - old.updated,
      deleted: now.deleted - old.deleted,
    };
    if (changes.inserted + changes.updated + changes.deleted > 0) rowChanges.push(changes);
  }
  const indexBuilds = [...after.values()]
    .filter((rel) => rel.kind === 'i' && (before.get(rel.oid)?.filenode ?? '') !== rel.filenode)
    .map((rel) => ({ index: rel.name, table: rel.table ?? '', ms: sampler.buildMs(rel) }));
  return {
    name,
    status: error === undefined ? 'applied' : 'failed',
    durationMs,
    locks: sampler.locks(),
    rewrites,
    rowChanges,
    indexBuilds,
    walBytes: wal[0]!.bytes,
    ...(error === undefined ? {} : { error }),
  };
}

interface Seen {
  first: number;
  last: number;
}

interface SeenLock extends Seen {
  relation: string;
  table: boolean;
  mode: string;
}

/**
 * Samples the backend's granted relation locks and its index builds every SAMPLE_EVERY_MS until
 * `stop()`. Locks on relations created by the migration itself block nobody and are left out.
 */
function startSampler(observer: Client, pid: number, existing: Map<number, Relation>) {
  const held = new Map<string, SeenLock>();
  const builds = new Map<string, Seen>();
  let stopped = false;
  const see = <T extends Seen>(map: Map<string, T>, key: string, now: number, init: Omit<T, keyof Seen>) => {
    const seen = map.get(key);
    if (seen === undefined) map.set(key, { ...init, first: now, last: now } as T);
    else seen.last = now;
  };
  const loop = (async () => {
    while (!stopped) {
      const { rows } = await observer.query<{ locks: { oid: number; mode: string }[]; builds: string[] }>(
        `SELECT (SELECT COALESCE(json_agg(json_build_object('oid', l.relation::int, 'mode', l.mode)), '[]')
                   FROM pg_locks l
                  WHERE l.pid = $1 AND l.granted AND l.locktype = 'relation') AS locks,
                (SELECT COALESCE(json_agg(CASE WHEN p.index_relid::int <> 0 THEN 'index:' || p.index_relid::int
                                               ELSE 'table:' || p.relid::int END), '[]')
                   FROM pg_stat_progress_create_index p WHERE p.pid = $1) AS builds`,
        [pid],
      );
      const now = performance.now();
      for (const { oid, mode } of rows[0]!.locks) {
        const relation = existing.get(oid);
        if (relation !== undefined) {
          see(held, `${oid}:${mode}`, now, { relation: relation.name, table: relation.kind !== 'i', mode });
        }
      }
      for (const key of rows[0]!.builds) see(builds, key, now, {});
      await sleep(SAMPLE_EVERY_MS);
    }
  })();
  return {
    async stop(): Promise<void> {
      stopped = true;
      await loop;
    },
    /** Per relation its strongest mode seen: strongest first, a table before its indexes. */
    locks(): LockHeld[] {
      const strongest = new Map<string, SeenLock>();
      for (const seen of held.values()) {
        const current = strongest.get(seen.relation);
        if (current === undefined || strength(seen.mode) > strength(current.mode)) {
          strongest.set(seen.relation, seen);
        }
      }
      return [...strongest.values()]
        .sort(
          (a, b) =>
            strength(b.mode) - strength(a.mode) ||
            Number(b.table) - Number(a.table) ||
            b.last - b.first - (a.last - a.first),
        )
        .map((seen) => ({
          relation: seen.relation,
          mode: seen.mode,
          heldMs: Math.round(seen.last - seen.first),
        }));
    },
    /**
     * How long the backend was seen building `index`: by its oid, or by its table's (a plain CREATE
     * INDEX shows no index oid; two built on one table in one migration then share the time).
     */
    buildMs(index: Relation): number {
      const tableKeys = [...existing.values()]
        .filter((rel) => rel.name === index.table)
        .map((rel) => `table:${rel.oid}`);
      const spans = [`index:${index.oid}`, ...tableKeys]
        .map((key) => builds.get(key))
        .filter((seen): seen is Seen => seen !== undefined);
      return Math.round(spans.reduce((sum, seen) => sum + (seen.last - seen.first), 0));
    },
  };
}

function strength(mode: string): number {
  return LOCK_MODES.indexOf(mode as (typeof LOCK_MODES)[number]);
}
