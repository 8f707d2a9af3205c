/**
 * Hostile input at every edge: each workflow (started on the dev server) and each `bin/dbops`
 * command is given SQL injection, oversize strings, wrong types, look-alike unicode, negative and
 * zero numbers, impossible restore times and unknown instances or snapshots. Each must be refused
 * with a message naming the field and the rule, and afterwards nothing has changed: the same
 * snapshots, the same instances, the same rows, no advisory lock held.
 */
import assert from 'node:assert/strict';

import { WorkflowFailedError } from '@temporalio/client';
import { Client } from 'pg';

import * as workflows from '../../workflows';
import { runDbops, type CliRun } from '../helpers/cli';
import { startRecoveryStack, type RecoveryStack } from '../helpers/recovery';

const SOURCE = 'hostile-src';
const DROP = "x'; DROP TABLE conversations;--";
const SLEEP = '"; select pg_sleep(10)--';
const HUGE = 'a'.repeat(10_000);
const CYRILLIC = 'mcp-demo-pr\u043ed'; // the "о" is Cyrillic
const ZERO_WIDTH = 'mcp\u200ddemo';
const FULLWIDTH_TIME = '\uff12\uff10\uff12\uff16-01-01T00:00:00Z';
const TABLE_RULE = /^tables: .* not allowed: `table` or `schema\.table`, each part a letter or underscore/s;
const ID_RULE = /a letter first, then letters, digits or hyphens, at most 63 characters/;

type WorkflowName = keyof typeof workflows;

interface Case {
  /** What was tried, as the test title says it. */
  title: string;
  /** A workflow started with this input, or a `dbops` command line. */
  workflow?: [WorkflowName, unknown];
  cli?: string[];
  /** The refusal: names the field and the rule. */
  message: RegExp;
  /** dbops exit status: 2 for bad arguments; 1 when the provider refuses (unknown, out of range). */
  exit?: 1 | 2;
}

const wf = (title: string, name: WorkflowName, input: unknown, message: RegExp): Case => ({
  title: `${name}: ${title}`,
  workflow: [name, input],
  message,
});
const cli = (title: string, args: string[], message: RegExp, exit: 1 | 2 = 2): Case => ({
  title: `dbops ${args[0]}: ${title}`,
  cli: args,
  message,
  exit,
});
const idRefused = (field: string) =>
  new RegExp(`^(dbops [a-z-]+: )?${field}:? .*(is not valid: |is not )${ID_RULE.source}`, 's');

const CASES: Case[] = [
  // Identifiers: injection, oversize, wrong type, look-alikes, unknown.
  ...(
    [
      ['SQL injection', DROP],
      ['pg_sleep injection', SLEEP],
      ['10k characters', HUGE],
      ['a number', 42],
      ['Cyrillic look-alike', CYRILLIC],
      ['zero-width joiner', ZERO_WIDTH],
    ] as const
  ).flatMap(([what, value]) => [
    wf(`instanceId ${what}`, 'backup', { instanceId: value }, idRefused('instanceId')),
    wf(
      `instanceId ${what}`,
      'pitrRestore',
      { instanceId: value, restoreTime: 'latest' },
      idRefused('instanceId'),
    ),
    wf(`instanceId ${what}`, 'drTest', { instanceId: value }, idRefused('instanceId')),
    wf(`instanceId ${what}`, 'deployMigration', { instanceId: value }, idRefused('instanceId')),
    wf(
      `instanceId ${what}`,
      'backfill',
      { instanceId: value, name: 'user-id-bigint' },
      idRefused('instanceId'),
    ),
    wf(`instanceId ${what}`, 'expandContract', { instanceId: value }, idRefused('instanceId')),
    wf(
      `instanceId ${what}`,
      'planChange',
      { instanceId: value, change: 'user-id-bigint' },
      idRefused('instanceId'),
    ),
    wf(`instanceId ${what}`, 'healthCheck', { instanceId: value }, idRefused('instanceId')),
    wf(`instanceId ${what}`, 'maintenance', { instanceId: value }, idRefused('instanceId')),
    wf(`snapshotId ${what}`, 'snapshotRestore', { snapshotId: value }, idRefused('snapshotId')),
    wf(`snapshotId ${what}`, 'backup', { instanceId: SOURCE, snapshotId: value }, idRefused('snapshotId')),
    wf(
      `targetInstanceId ${what}`,
      'pitrRestore',
      { instanceId: SOURCE, restoreTime: 'latest', targetInstanceId: value },
      idRefused('targetInstanceId'),
    ),
  ]),
  wf('unknown instance', 'backup', { instanceId: 'no-such-instance' }, /instance no-such-instance not found/),
  wf(
    'unknown instance (fails with its report)',
    'drTest',
    { instanceId: 'no-such-instance' },
    /^DR test of no-such-instance FAILED .*instance no-such-instance has no available snapshot to test/,
  ),
  wf(
    'unknown snapshot',
    'snapshotRestore',
    { snapshotId: 'no-such-snapshot' },
    /snapshot no-such-snapshot not found/,
  ),
  wf(
    'unknown instance',
    'healthCheck',
    { instanceId: 'no-such-instance' },
    /instance no-such-instance not found/,
  ),
  // Names: tables, migrations, backfills, hooks.
  wf('table SQL injection', 'maintenance', { tables: [DROP] }, TABLE_RULE),
  wf(
    'tables an object, not an array',
    'maintenance',
    { tables: { conversations: true } },
    /^tables must be a list of table names/,
  ),
  wf('table of 10k characters', 'maintenance', { tables: [HUGE] }, TABLE_RULE),
  wf(
    'target SQL injection',
    'deployMigration',
    { instanceId: SOURCE, target: DROP },
    /^target: .* is not a migration name like \d{4}_\w+/,
  ),
  // 40 characters: a valid instance id, too long to carry its pre-migration snapshot's suffix.
  wf(
    'instanceId too long for its snapshot',
    'deployMigration',
    { instanceId: `a${'b'.repeat(39)}` },
    /^instanceId "a?b+" is too long: "a?b+-pre-migration-\d{8}-\d{6}" must be an RDS identifier/,
  ),
  wf(
    'instanceId too long for its snapshot',
    'expandContract',
    { instanceId: `a${'b'.repeat(39)}` },
    /^instanceId "a?b+" is too long: "a?b+-pre-migration-\d{8}-\d{6}" must be an RDS identifier/,
  ),
  wf(
    'rolloutHook SQL injection',
    'deployMigration',
    { instanceId: SOURCE, rolloutHook: SLEEP },
    /^rolloutHook: .* is not a hook name: lowercase letters, digits and hyphens/,
  ),
  wf(
    'backfill name SQL injection',
    'backfill',
    { instanceId: SOURCE, name: DROP },
    /^name: no backfill named .*; known: user-id-bigint/,
  ),
  wf(
    'backfill name a number',
    'backfill',
    { instanceId: SOURCE, name: 7 },
    /^name: 7 is not a backfill name/,
  ),
  wf(
    'expandMigration SQL injection (a field of the migration-file version)',
    'expandContract',
    { instanceId: SOURCE, expandMigration: DROP },
    /^expandMigration: expandContract no longer runs migration files .* the declaration user-id-bigint/,
  ),
  wf(
    'change SQL injection',
    'expandContract',
    { instanceId: SOURCE, change: DROP },
    /^change: .* is not a change name like user-id-bigint/,
  ),
  wf(
    'change unknown',
    'planChange',
    { instanceId: SOURCE, change: 'drop-everything' },
    /^change: no change named "drop-everything"; known: user-id-bigint/,
  ),
  wf(
    'an unknown field',
    'expandContract',
    { instanceId: SOURCE, change: 'user-id-bigint', batchsize: DROP },
    /^unknown input field batchsize: expected only instanceId, change, batchSize/,
  ),
  cli(
    'change name SQL injection',
    ['plan', DROP, '--instance', SOURCE],
    /change: .* is not a change name like user-id-bigint/,
  ),
  // Numbers: negative, zero, wrong type.
  ...([0, -5, '100'] as const).map((value) =>
    wf(
      `batchSize ${JSON.stringify(value)}`,
      'backfill',
      { instanceId: SOURCE, name: 'user-id-bigint', batchSize: value },
      new RegExp(`^batchSize: ${JSON.stringify(value)} is not an integer from 1 to 100000`),
    ),
  ),
  wf(
    'params an array, not an object',
    'backfill',
    { instanceId: SOURCE, name: 'user-id-bigint', params: [DROP] },
    /^params of backfill user-id-bigint: expected an object, got \["x'; DROP TABLE conversations;--"\]/,
  ),
  wf(
    'delayMs -1',
    'backfill',
    { instanceId: SOURCE, name: 'user-id-bigint', delayMs: -1 },
    /^delayMs: -1 is not an integer from 0 to 600000/,
  ),
  wf(
    'batchSize 0',
    'expandContract',
    { instanceId: SOURCE, batchSize: 0 },
    /^batchSize: 0 is not an integer from 1 to 100000/,
  ),
  wf(
    'codeDeployedTimeout -1 seconds',
    'expandContract',
    { instanceId: SOURCE, codeDeployedTimeout: '-1 seconds' },
    /^codeDeployedTimeout: "-1 seconds" is not a duration longer than zero/,
  ),
  wf(
    'lockTimeoutMs -1',
    'deployMigration',
    { instanceId: SOURCE, lockTimeoutMs: -1 },
    /^lockTimeoutMs: -1 is not a positive integer/,
  ),
  wf(
    'statementTimeoutMs 0',
    'deployMigration',
    { instanceId: SOURCE, statementTimeoutMs: 0 },
    /^statementTimeoutMs: 0 is not a positive integer/,
  ),
  wf(
    'lockTimeoutAttempts 0',
    'deployMigration',
    { instanceId: SOURCE, lockTimeoutAttempts: 0 },
    /^lockTimeoutAttempts: 0 is not a positive integer/,
  ),
  wf(
    'rehearse "yes"',
    'deployMigration',
    { instanceId: SOURCE, rehearse: 'yes' },
    /^rehearse: "yes"; expected true or false/,
  ),
  wf(
    'thresholds.slowStatementMs -1',
    'healthCheck',
    { thresholds: { slowStatementMs: -1 } },
    /^thresholds\.slowStatementMs is -1; expected a number >= 0/,
  ),
  wf(
    'thresholds.cacheHitRatio a string',
    'healthCheck',
    { thresholds: { cacheHitRatio: '0.9' } },
    /^thresholds\.cacheHitRatio is "0.9"; expected a number >= 0/,
  ),
  wf(
    'minRecall -1',
    'drTest',
    { instanceId: SOURCE, minRecall: -1 },
    /^minRecall -1 is not valid: a number from 0 to 1/,
  ),
  wf(
    'sampleQueries 0',
    'drTest',
    { instanceId: SOURCE, sampleQueries: 0 },
    /^sampleQueries 0 is not valid: a number from 1 to 1000/,
  ),
  wf(
    'efSearch -5',
    'drTest',
    { instanceId: SOURCE, efSearch: -5 },
    /^efSearch -5 is not valid: a number from 1 to 1000/,
  ),
  wf(
    'timeouts.snapshot 0',
    'backup',
    { instanceId: SOURCE, timeouts: { snapshot: 0 } },
    /^timeouts\.snapshot 0 is not valid: a duration such as/,
  ),
  wf(
    'timeouts.restore "-1 hours"',
    'pitrRestore',
    { instanceId: SOURCE, restoreTime: 'latest', timeouts: { restore: '-1 hours' } },
    /^timeouts\.restore "-1 hours" is not valid: a duration such as/,
  ),
  // Timeouts above their documented bounds: a typo must not keep a run waiting for weeks.
  wf(
    'timeouts.snapshot "300 hours"',
    'backup',
    { instanceId: SOURCE, timeouts: { snapshot: '300 hours' } },
    /^timeouts\.snapshot "300 hours" is too long: at most 3 days$/,
  ),
  wf(
    'timeouts.restore "3 days"',
    'snapshotRestore',
    { snapshotId: 'hostile-src-manual-20260101-000000', timeouts: { restore: '3 days' } },
    /^timeouts\.restore "3 days" is too long: at most 2 days$/,
  ),
  wf(
    'timeouts.deletion "1 day"',
    'drTest',
    { instanceId: SOURCE, timeouts: { deletion: '1 day' } },
    /^timeouts\.deletion "1 day" is too long: at most 6 hours$/,
  ),
  wf(
    'codeDeployedTimeout "60 days"',
    'expandContract',
    { instanceId: SOURCE, codeDeployedTimeout: '60 days' },
    /^codeDeployedTimeout "60 days" is too long: at most 30 days$/,
  ),
  wf(
    'timeouts.pollInterval "20 minutes"',
    'sweepOrphans',
    { timeouts: { pollInterval: '20 minutes' } },
    /^timeouts\.pollInterval "20 minutes" is too long: at most 15 minutes$/,
  ),
  wf(
    'timeouts.pollInterval "10 minutes" over maxPollInterval "5 minutes"',
    'pitrRestore',
    {
      instanceId: SOURCE,
      restoreTime: 'latest',
      timeouts: { pollInterval: '10 minutes', maxPollInterval: '5 minutes' },
    },
    /^timeouts\.pollInterval "10 minutes" is longer than timeouts\.maxPollInterval "5 minutes"/,
  ),
  // Restore times.
  wf(
    'restoreTime in the future',
    'pitrRestore',
    { instanceId: SOURCE, restoreTime: '2999-01-01T00:00:00Z' },
    /^restoreTime 2999-01-01T00:00:00\.000Z is outside the restorable range/,
  ),
  wf(
    'restoreTime in 1970',
    'pitrRestore',
    { instanceId: SOURCE, restoreTime: '1970-01-01T00:00:00Z' },
    /^restoreTime 1970-01-01T00:00:00\.000Z is outside the restorable range/,
  ),
  wf(
    'restoreTime in fullwidth digits',
    'pitrRestore',
    { instanceId: SOURCE, restoreTime: FULLWIDTH_TIME },
    /^restoreTime ".*" is not valid: an ISO-8601 time with a zone/,
  ),
  wf(
    'restoreTime a number',
    'pitrRestore',
    { instanceId: SOURCE, restoreTime: 0 },
    /^restoreTime 0 is not valid: an ISO-8601 time with a zone/,
  ),
  // The command line.
  cli('--instance SQL injection', ['backup', '--instance', DROP], idRefused('--instance')),
  cli('--instance Cyrillic look-alike', ['snapshots', '--instance', CYRILLIC], idRefused('instanceId')),
  cli('--instance zero-width joiner', ['health', '--instance', ZERO_WIDTH], idRefused('--instance')),
  cli('--instance of 10k characters', ['deploy', '--instance', HUGE], idRefused('--instance')),
  cli(
    '--instance unknown',
    ['dr-test', '--instance', 'no-such-instance'],
    /instance no-such-instance has no available snapshot to test/,
    1,
  ),
  cli(
    '--to 1970',
    ['restore', '--instance', SOURCE, '--to', '1970-01-01T00:00:00Z'],
    /restoreTime 1970-01-01T00:00:00\.000Z is outside the restorable range of instance hostile-src/,
    1,
  ),
  cli(
    '--to in the future',
    ['restore', '--instance', SOURCE, '--to', '2999-01-01T00:00:00Z'],
    /restoreTime 2999-01-01T00:00:00\.000Z is outside the restorable range of instance hostile-src/,
    1,
  ),
  cli(
    '--to in fullwidth digits',
    ['restore', '--instance', SOURCE, '--to', FULLWIDTH_TIME],
    /restoreTime ".*" is not valid: an ISO-8601 time with a zone/,
  ),
  cli(
    '--snapshot unknown',
    ['restore', '--instance', SOURCE, '--snapshot', 'no-such-snapshot'],
    /snapshot no-such-snapshot not found/,
    1,
  ),
  cli(
    '--snapshot SQL injection',
    ['restore', '--instance', SOURCE, '--snapshot', SLEEP],
    /snapshotId .* is not valid: a letter first/,
  ),
  cli(
    '--table SQL injection',
    ['maintenance', '--instance', SOURCE, '--table', DROP],
    /^dbops maintenance: tables: .* not allowed: `table` or `schema\.table`/,
  ),
  cli(
    'backfill name SQL injection',
    ['backfill', 'start', DROP, '--instance', SOURCE],
    /name: no backfill named .*; known: user-id-bigint/,
  ),
  cli(
    '--batch-size 0',
    ['backfill', 'start', 'user-id-bigint', '--instance', SOURCE, '--batch-size', '0'],
    /batchSize: 0 is not an integer from 1 to 100000/,
  ),
  cli(
    '--batch-size -5',
    ['backfill', 'start', 'user-id-bigint', '--instance', SOURCE, '--batch-size', '-5'],
    /^dbops backfill start: Option '--batch-size' argument is ambiguous/,
  ),
  cli(
    '--batch-size in fullwidth digits',
    ['backfill', 'start', 'user-id-bigint', '--instance', SOURCE, '--batch-size', '\uff11\uff10'],
    /^dbops backfill start: --batch-size "１０" is not an integer/,
  ),
  cli(
    '--delay-ms -1',
    ['backfill', 'start', 'user-id-bigint', '--instance', SOURCE, '--delay-ms', '-1'],
    /^dbops backfill start: Option '--delay-ms' argument is ambiguous/,
  ),
  cli(
    '--params a JSON array',
    ['backfill', 'start', 'user-id-bigint', '--instance', SOURCE, '--params', '[1]'],
    /params of backfill user-id-bigint: expected an object, got \[1\]/,
  ),
  // Vector indexes: SQL in a table or column name, a column that is no vector, parameters out of range.
  wf(
    'SQL in the table name',
    'vectorIndex',
    {
      instanceId: SOURCE,
      action: 'build',
      table: 'conversation_chunks; DROP TABLE conversations',
      column: 'embedding',
      method: 'hnsw',
    },
    /^table "conversation_chunks; DROP TABLE conversations" is not valid: `table` or `schema\.table`/,
  ),
  wf(
    'a quote in the column name',
    'vectorIndex',
    {
      instanceId: SOURCE,
      action: 'build',
      table: 'conversation_chunks',
      column: 'embedding") --',
      method: 'hnsw',
    },
    /^column "embedding\\"\) --" is not valid: a plain identifier/,
  ),
  wf(
    'a column that is no vector',
    'vectorIndex',
    {
      instanceId: SOURCE,
      action: 'build',
      table: 'conversation_chunks',
      column: 'content',
      method: 'ivfflat',
    },
    /^column public\.conversation_chunks\.content is of type text, not vector/,
  ),
  cli(
    '--m 0',
    ['index', 'build', 'conversation_chunks.embedding', '--method', 'hnsw', '--m', '0', '--instance', SOURCE],
    /\ndbops index: m is 0; expected an integer from 2 to 100\n$/,
  ),
  wf(
    'SQL in the filter column',
    'vectorRecall',
    { instanceId: SOURCE, filterColumn: 'conversation_id; DROP TABLE conversations' },
    /^filterColumn "conversation_id; DROP TABLE conversations" is not valid: a plain identifier/,
  ),
];

describe('hostile input is refused at the edge and changes nothing (dev server, local instance)', function () {
  this.timeout(600_000);
  let stack: RecoveryStack;
  let sql: Client;
  let runs = 0;

  function dbops(args: string[]): Promise<CliRun> {
    return runDbops(
      {
        address: stack.env.address,
        taskQueue: stack.taskQueue,
        stateDir: stack.stateDir,
        extra: { PGHOST: stack.source.endpoint.host, PGPORT: String(stack.source.endpoint.port) },
      },
      args,
    );
  }

  async function snapshotIds(instances: string[]): Promise<string[]> {
    const ids: string[] = [];
    for (const id of instances) ids.push(...(await stack.plane.listSnapshots(id)).map((s) => s.snapshotId));
    return ids.sort();
  }

  /** What must not change: snapshots, instances, every row of every table, advisory locks. */
  async function state() {
    const { rows: tables } = await sql.query<{ name: string }>(
      `SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables
        WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
    );
    const sums: Record<string, string> = {};
    for (const { name } of tables) {
      const { rows } = await sql.query<{ sum: string }>(
        `SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS sum FROM ${name} t`,
      );
      sums[name] = rows[0]!.sum;
    }
    const { rows: locks } = await sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'`,
    );
    const instances = await stack.instanceIds();
    return {
      snapshots: await snapshotIds(instances),
      instances,
      tables: sums,
      advisoryLocks: locks[0]!.n,
    };
  }

  before(async () => {
    stack = await startRecoveryStack({
      name: 'hostile',
      sourceInstanceId: SOURCE,
      conversations: 30,
      chunksPerConversation: 1,
    });
    sql = new Client({ ...stack.source.endpoint });
    await sql.connect();
  });
  after(async () => {
    await sql?.end();
    await stack?.teardown();
  });

  for (const c of CASES) {
    it(`refuses ${c.title}`, async () => {
      const before = await state();
      assert.ok(Object.keys(before.tables).includes('public.conversations'));
      let message: string;
      if (c.workflow !== undefined) {
        const [name, input] = c.workflow;
        const handle = await stack.env.client.workflow.start(name, {
          taskQueue: stack.taskQueue,
          workflowId: `hostile-${++runs}`,
          args: [input],
        });
        const error = await handle.result().then(
          () => assert.fail('the workflow succeeded'),
          (e: unknown) => e,
        );
        assert.ok(error instanceof WorkflowFailedError, String(error));
        let cause: unknown = error.cause;
        while (cause instanceof Error && cause.cause instanceof Error) cause = cause.cause;
        message = (cause as Error).message;
      } else {
        const run = await dbops(c.cli!);
        assert.equal(run.code, c.exit, `exit ${run.code}: ${run.stderr}${run.stdout}`);
        message = run.stderr + run.stdout; // a failed DR test prints its report
      }
      assert.match(message, c.message);
      assert.deepEqual(await state(), before);
    });
  }
});
