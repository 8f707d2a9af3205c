import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import type { InstanceDescription, SnapshotDescription } from '../../activities/control-plane/control-plane';
import { LocalControlPlane } from '../../activities/control-plane/local';
import { runDbops, type CliRun } from '../helpers/cli';

describe('dbops CLI (against a real local instance)', () => {
  let stateDir: string;
  let plane: LocalControlPlane;

  /** `bin/dbops ...args` as a user runs it, with the suite's state directory. */
  function dbops(...args: string[]): Promise<CliRun> {
    return runDbops({ stateDir: stateDir }, args);
  }

  before(async () => {
    stateDir = await mkdtemp(path.join(os.tmpdir(), 'dbops-cli-'));
    await chmod(stateDir, 0o755);
    plane = new LocalControlPlane({ stateDir });
    await plane.createInstance('cli-db', { tags: { team: 'search' } });
    while ((await plane.describeInstance('cli-db')).status === 'creating') await sleep(100);
    await plane.createSnapshot('cli-db', 'cli-snap');
    while ((await plane.describeSnapshot('cli-snap')).status === 'creating') await sleep(100);
  });

  after(async () => {
    await plane?.deleteInstance('cli-db', { skipFinalSnapshot: true });
    await rm(stateDir, { recursive: true, force: true });
  });

  it('`dbops instances --json` prints the instance descriptions as a JSON array', async () => {
    const run = await dbops('instances', '--json');
    assert.equal(run.code, 0, run.stderr);
    const list = JSON.parse(run.stdout) as InstanceDescription[];
    // The same objects as the provider's (latest restorable time is "now" on a running instance).
    const withoutNow = (i: InstanceDescription) => ({ ...i, latestRestorableTime: undefined });
    assert.deepEqual(list.map(withoutNow), (await plane.listInstances()).map(withoutNow));
    assert.match(list[0]!.latestRestorableTime!, /^\d{4}-\d\d-\d\dT[\d:.]+Z$/);
    assert.equal(list.length, 1);
    assert.deepEqual(Object.keys(list[0]!).sort(), [
      'createdAt',
      'earliestRestorableTime',
      'endpoint',
      'engineVersion',
      'instanceId',
      'latestRestorableTime',
      'multiAz',
      'providerStatus',
      'status',
      'tags',
    ]);
    assert.equal(list[0]!.status, 'available');
    assert.deepEqual(list[0]!.tags, { team: 'search' });
  });

  it('`dbops instances` prints a table with status and endpoint', async () => {
    const run = await dbops('instances');
    assert.equal(run.code, 0, run.stderr);
    const { port } = (await plane.describeInstance('cli-db')).endpoint!;
    const [header, row, ...rest] = run.stdout.trim().split('\n');
    assert.match(header!, /^INSTANCE +STATUS +ENDPOINT +ENGINE +LATEST RESTORABLE$/);
    assert.match(
      row!,
      new RegExp(`^cli-db +available +dbops@127\\.0\\.0\\.1:${port}/mcp_db +15\\.\\d+ +\\d{4}-`),
    );
    assert.deepEqual(rest, []);
  });

  it('`dbops snapshots --instance ID --json` lists manual and automated snapshots, newest first', async () => {
    const run = await dbops('snapshots', '--instance', 'cli-db', '--json');
    assert.equal(run.code, 0, run.stderr);
    const list = JSON.parse(run.stdout) as SnapshotDescription[];
    assert.deepEqual(
      list.map((s) => `${s.snapshotId}:${s.type}:${s.status}`),
      ['cli-snap:manual:available', `${list[1]!.snapshotId}:automated:available`],
    );
    assert.deepEqual(Object.keys(list[0]!).sort(), [
      'createdAt',
      'engineVersion',
      'instanceId',
      'percentProgress',
      'sizeBytes',
      'snapshotId',
      'status',
      'tableContentHashes',
      'tableRowCounts',
      'tags',
      'type',
    ]);
  });

  it('`dbops snapshots --instance ID` prints a table', async () => {
    const run = await dbops('snapshots', '--instance', 'cli-db');
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trim().split('\n');
    assert.match(lines[0]!, /^SNAPSHOT +TYPE +STATUS +CREATED +SIZE$/);
    assert.match(lines[1]!, /^cli-snap +manual +available +\d{4}-\S+ +\d+\.\d MiB$/);
    assert.match(lines[2]!, /^rds:cli-db-\S+ +automated +available/);
  });

  it('an unknown command, an unknown flag or a missing or invalid argument exits 2 with the reason', async () => {
    const cases: [string[], RegExp][] = [
      [['instancez'], /unknown command "instancez"/],
      [['instances', '--verbose'], /Unknown option '--verbose'/],
      [['instances', 'extra'], /Unexpected argument 'extra'/],
      [['snapshots'], /--instance ID is required/],
      [['snapshots', '--instance', 'not_an_id'], /instanceId "not_an_id" is not valid/],
      [[], /usage: dbops <command>/],
    ];
    for (const [args, reason] of cases) {
      const run = await dbops(...args);
      assert.equal(run.code, 2, `dbops ${args.join(' ')}: exit ${run.code}`);
      assert.match(run.stderr + run.stdout, reason, `dbops ${args.join(' ')}`);
    }
  });
});
