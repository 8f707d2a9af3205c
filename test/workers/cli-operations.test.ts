import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { Client as PgClient } from 'pg';

import { createActivities } from '../../activities';
import { localActivityDeps } from '../helpers/activity-deps';
import type { ScheduleListing } from '../../workers/schedules';
import type { HealthCheckResult } from '../../workflows/health-check';
import type { MaintenanceResult } from '../../workflows/maintenance';
import { runDbops, type CliRun } from '../helpers/cli';
import { startThrowawayCluster, type ThrowawayCluster } from '../helpers/postgres';
import { createDevServerEnv, workflowBundle } from '../helpers/temporal';

const TASK_QUEUE = 'cli-operations';

/** A valid maintenance window (RDS syntax) that opens two hours from now: now is outside it. */
function windowInTwoHours(): string {
  const days = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
  const at = (hours: number) => {
    const t = new Date(Date.now() + hours * 3600_000);
    const hh = String(t.getUTCHours()).padStart(2, '0');
    const mm = String(t.getUTCMinutes()).padStart(2, '0');
    return `${days[t.getUTCDay()]}:${hh}:${mm}`;
  };
  return `${at(2)}-${at(3)}`;
}

describe('dbops schedules / maintenance / health (dev server, worker, real Postgres with max_connections = 6)', () => {
  let env: TestWorkflowEnvironment;
  let cluster: ThrowawayCluster;
  let worker: Worker;
  let running: Promise<void>;
  let stateDir: string;
  const maintenanceWindow = windowInTwoHours();

  /** `bin/dbops ...args` as a user runs it, against the suite's Temporal server and task queue. */
  function dbops(...args: string[]): Promise<CliRun> {
    return runDbops({ address: env.address, taskQueue: TASK_QUEUE }, args);
  }

  before(async () => {
    [env, cluster] = await Promise.all([
      createDevServerEnv(),
      startThrowawayCluster({ max_connections: '6' }),
    ]);
    stateDir = await mkdtemp(path.join(os.tmpdir(), 'dbops-cli-ops-'));
    const sql = await cluster.connect();
    await sql.query('CREATE TABLE notes (id int PRIMARY KEY, body text)');
    await sql.end();
    worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: TASK_QUEUE,
      workflowBundle: await workflowBundle(),
      activities: createActivities({ ...localActivityDeps(cluster.database, stateDir), maintenanceWindow }),
    });
    running = worker.run();
  });
  after(async () => {
    worker?.shutdown();
    await running;
    await Promise.all([env?.teardown(), cluster?.stop(), rm(stateDir, { recursive: true, force: true })]);
  });

  it('`schedules apply` creates, then updates; `schedules list --json` shows the five', async () => {
    const first = await dbops('schedules', 'apply');
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /dbops-health-check-mcp-demo-prod +created/);
    const second = await dbops('schedules', 'apply');
    assert.match(second.stdout, /dbops-health-check-mcp-demo-prod +updated/);
    const list = await dbops('schedules', 'list', '--json');
    assert.equal(list.code, 0, list.stderr);
    const listed = JSON.parse(list.stdout) as ScheduleListing[];
    assert.deepEqual(
      listed.map((s) => s.workflowType),
      ['drTest', 'healthCheck', 'maintenance', 'retention', 'sweepOrphans'],
    );
  });

  it('`schedules` without apply or list is a usage error (exit 2)', async () => {
    const run = await dbops('schedules', 'delete');
    assert.equal(run.code, 2);
    assert.match(run.stderr, /dbops schedules: expected apply or list/);
  });

  it('`maintenance --table notes --json` vacuums the table and prints the report', async () => {
    const run = await dbops('maintenance', '--table', 'notes', '--json');
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as MaintenanceResult;
    assert.deepEqual(
      result.vacuumed.map((v) => v.table),
      ['notes'],
    );
    assert.notEqual(result.after.tables.find((t) => t.table === 'notes')?.lastVacuum, null);
  });

  it('`maintenance` with an unsafe table name exits 2 with the rule', async () => {
    const run = await dbops('maintenance', '--table', 'notes;DROP TABLE notes');
    assert.equal(run.code, 2);
    assert.match(run.stderr, /^dbops maintenance: tables: "notes;DROP TABLE notes" not allowed/);
  });

  it('`maintenance --full` outside the maintenance window fails (exit 1) naming the window', async () => {
    const run = await dbops('maintenance', '--table', 'notes', '--full');
    assert.equal(run.code, 1);
    assert.ok(
      run.stderr.includes(
        `VACUUM FULL is only allowed inside the maintenance window ${maintenanceWindow} (UTC)`,
      ),
      run.stderr,
    );
  });

  it('`health --json` prints the findings and exits 0 when nothing is critical', async () => {
    const run = await dbops('health', '--json');
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as HealthCheckResult;
    assert.notEqual(result.status, 'critical');
    assert.ok(result.findings.some((f) => f.check === 'knn' && f.severity === 'info'));
  });

  it('`health --instance` names an instance the provider does not know: exit 1 with the reason', async () => {
    const run = await dbops('health', '--instance', 'no-such-db');
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^dbops health failed: .*no-such-db/);
  });

  it('`health --instance` with an invalid identifier is a usage error (exit 2)', async () => {
    const run = await dbops('health', '--instance', 'db;drop');
    assert.equal(run.code, 2);
    assert.match(run.stderr, /--instance "db;drop" is not valid/);
  });

  it('`health` exits 3 and prints the critical finding when connections are exhausted', async () => {
    const held: PgClient[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        const client = new PgClient({ ...cluster.database });
        await client.connect();
        held.push(client);
      }
      const run = await dbops('health');
      assert.equal(run.code, 3, run.stderr);
      assert.match(run.stdout, /critical +connections-saturated +6 of max_connections 6 in use \(100%\)/);
    } finally {
      await Promise.all(held.map((client) => client.end()));
    }
  });
});
