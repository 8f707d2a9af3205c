/**
 * docker-compose.yml and the Dockerfile, read as files: no Docker engine runs on the machines that
 * run this suite, so the stack is checked for its structure, not started. Two parts are checked
 * against the real thing instead: the Temporal versions are those the set-up builds and
 * `npm run start:cluster` runs, and the schema job's script runs against a throwaway PostgreSQL
 * with the same SQL schema tool and schemas.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import type { Duration } from '@temporalio/common';
import { msToNumber } from '@temporalio/common/lib/time';
import { Client } from 'pg';
import { parse } from 'yaml';

import { projectRoot } from '../../activities/config-types';
import { loadConfig } from '../../workers/config';
import { requireTool, tools } from '../../workers/tools';
import { searchAttributeKeys } from '../../workflows/lib/search-attributes';
import { startThrowawayCluster } from '../helpers/postgres';

const execFileAsync = promisify(execFile);

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  environment?: Record<string, string | number>;
  volumes?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  ports?: string[];
  stop_grace_period?: string;
  entrypoint?: string[];
  command?: string[];
  restart?: string;
  container_name?: string;
  hostname?: string;
}

interface Compose {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
}

/** A Docker duration (`1m30s`, `90s`, `6m`) in milliseconds. */
function dockerDurationMs(value: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  assert.equal(parts.map((part) => part[0]).join(''), value, `${value} is not a Docker duration`);
  return parts.reduce((total, [, amount, unit]) => total + Number(amount) * units[unit!]!, 0);
}

/** A version pinned in infra/local/versions.env, without its leading `v`. */
async function pinnedVersion(name: string): Promise<string> {
  const env = await readFile(path.join(projectRoot, 'infra', 'local', 'versions.env'), 'utf8');
  const match = new RegExp(`^${name}=v?(\\S+)$`, 'm').exec(env);
  assert.ok(match, `${name} is not in versions.env`);
  return match[1]!;
}

/** The shell script of a one-shot job (`sh -ec <script>`), with compose's `$$` turned into `$`. */
function jobScript(service: Service): string {
  assert.deepEqual(service.entrypoint, ['/bin/sh', '-ec']);
  assert.equal(service.command?.length, 1);
  return service.command[0]!.replace(/\$\$/g, '$');
}

/** One-shot jobs: they run to completion and are never restarted. */
const JOBS = ['temporal-schema', 'temporal-namespace'];

/** Names under which a value must never be written into the compose file itself. */
const SECRET_NAME = /PASSWORD|PASSWD|PWD|SECRET|TOKEN|KEY/i;

describe('docker-compose.yml and Dockerfile (static check: no Docker engine runs here)', () => {
  let compose: Compose;
  let dockerfile: string;
  before(async () => {
    compose = parse(await readFile(path.join(projectRoot, 'docker-compose.yml'), 'utf8')) as Compose;
    dockerfile = await readFile(path.join(projectRoot, 'Dockerfile'), 'utf8');
  });

  it('has the Temporal server with its own PostgreSQL 15, its schema and namespace jobs, the Web UI, PostgreSQL 15 with pgvector, and the worker built from the Dockerfile', () => {
    const { services } = compose;
    assert.deepEqual(Object.keys(services).sort(), [
      'db',
      'temporal',
      'temporal-db',
      'temporal-namespace',
      'temporal-schema',
      'temporal-ui',
      'worker',
    ]);
    assert.equal(services.temporal!.environment!.DB, 'postgres12');
    assert.equal(services.temporal!.environment!.POSTGRES_SEEDS, 'temporal-db');
    assert.equal(services['temporal-schema']!.environment!.SQL_HOST, 'temporal-db');
    assert.match(services['temporal-db']!.image!, /^postgres:15/);
    assert.equal(services['temporal-ui']!.environment!.TEMPORAL_ADDRESS, 'temporal:7233');
    assert.match(services.db!.image!, /^pgvector\/pgvector:0\.8\.\d+-pg15$/);
    assert.deepEqual(services.worker!.build, { context: '.', dockerfile: 'Dockerfile' });
    assert.equal(services.worker!.environment!.TEMPORAL_ADDRESS, 'temporal:7233');
    assert.equal(services.worker!.environment!.PGHOST, 'db');
  });

  it('runs the Temporal server and Web UI versions that the set-up builds for npm run start:cluster, with admin tools of the same server version', async () => {
    const server = await pinnedVersion('TEMPORAL_SERVER_VERSION');
    const ui = await pinnedVersion('TEMPORAL_UI_SERVER_VERSION');
    assert.equal(compose.services.temporal!.image, `temporalio/server:${server}`);
    assert.equal(compose.services['temporal-ui']!.image, `temporalio/ui:${ui}`);
    for (const job of JOBS) {
      assert.ok(
        compose.services[job]!.image!.startsWith(`temporalio/admin-tools:${server}-`),
        `${job} runs ${compose.services[job]!.image}, not the admin tools of server ${server}`,
      );
    }
  });

  it("the schema job's script sets up both databases with the server's SQL schema tool, and a second run changes nothing", async function () {
    this.timeout(120_000);
    const script = jobScript(compose.services['temporal-schema']!);
    // The same tool and schemas as the image's, where the set-up put them.
    const bin = await mkdtemp(path.join(os.tmpdir(), 'dbops-compose-'));
    await symlink(requireTool('temporalSqlTool'), path.join(bin, 'temporal-sql-tool'));
    const local = script.replaceAll('/etc/temporal/schema/postgresql/v12', tools.temporalSchema);
    const postgres = await startThrowawayCluster();
    try {
      const run = () =>
        execFileAsync('/bin/sh', ['-ec', local], {
          env: {
            ...process.env,
            PATH: `${bin}:${process.env.PATH ?? ''}`,
            SQL_PLUGIN: String(compose.services['temporal-schema']!.environment!.SQL_PLUGIN),
            SQL_HOST: '127.0.0.1',
            SQL_PORT: String(postgres.database.port),
            SQL_USER: 'postgres',
            SQL_PASSWORD: '',
          },
        });
      const versions = async () => {
        const found: Record<string, string> = {};
        for (const database of ['temporal', 'temporal_visibility']) {
          const client = new Client({ ...postgres.database, database });
          await client.connect();
          try {
            const { rows } = await client.query<{ v: string }>(
              'SELECT curr_version AS v FROM schema_version',
            );
            found[database] = rows[0]!.v;
          } finally {
            await client.end();
          }
        }
        return found;
      };
      await run();
      const first = await versions();
      assert.ok(Number(first.temporal) > 1 && Number(first.temporal_visibility) > 1, JSON.stringify(first));
      await run();
      assert.deepEqual(await versions(), first);
    } finally {
      await postgres.stop();
      await rm(bin, { recursive: true, force: true });
    }
  });

  it('the namespace job registers every search attribute the workflows set, as Keyword, each only when missing', () => {
    const script = jobScript(compose.services['temporal-namespace']!);
    const loop = /for name in ([^;]+); do/.exec(script);
    assert.ok(loop, 'no loop over the search attribute names');
    assert.deepEqual(loop[1]!.trim().split(/\s+/).sort(), searchAttributeKeys.map((key) => key.name).sort());
    assert.match(script, /search-attribute list [^|]*\| grep -qw "\$name" \|\|/);
    assert.match(script, /search-attribute create [^\n]*--name "\$name" --type Keyword/);
    assert.match(script, /namespace describe [^\n]*\|\|\s*temporal operator namespace create /);
  });

  it('the worker scales with --scale worker=N: no container name, host name or published port of its own', () => {
    const worker = compose.services.worker!;
    assert.equal(worker.container_name, undefined);
    assert.equal(worker.hostname, undefined);
    assert.deepEqual(worker.ports ?? [], []);
    assert.equal(worker.environment!.DBOPS_TASK_QUEUE, 'dbops');
  });

  it('every long-running service has a healthcheck, jobs run once, and dependants wait for healthy services and completed jobs', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      if (JOBS.includes(name)) assert.equal(service.restart, 'no', `${name} is a job: it must not restart`);
      else assert.ok(service.healthcheck?.test.length, `${name} has no healthcheck`);
      for (const [dependency, { condition }] of Object.entries(service.depends_on ?? {})) {
        const wanted = JOBS.includes(dependency) ? 'service_completed_successfully' : 'service_healthy';
        assert.equal(condition, wanted, `${name} does not wait for ${dependency}`);
      }
    }
    assert.deepEqual(Object.keys(compose.services.temporal!.depends_on ?? {}), ['temporal-schema']);
    assert.deepEqual(Object.keys(compose.services['temporal-namespace']!.depends_on ?? {}), ['temporal']);
    assert.deepEqual(Object.keys(compose.services.worker!.depends_on ?? {}).sort(), [
      'db',
      'temporal-namespace',
    ]);
  });

  it("the worker's stop grace period outlasts its shutdown grace by at least 30 s, so running SQL is cancelled cleanly, never cut off", () => {
    const worker = compose.services.worker!;
    const env = Object.fromEntries(
      Object.entries(worker.environment ?? {}).map(([key, value]) => [key, String(value)]),
    );
    const graceMs = msToNumber(loadConfig(env).temporal.shutdownGraceTime as Duration);
    assert.ok(worker.stop_grace_period, 'the worker has no stop_grace_period: Docker kills it after 10 s');
    const stopMs = dockerDurationMs(worker.stop_grace_period);
    assert.ok(
      stopMs >= graceMs + 30_000,
      `stop_grace_period ${worker.stop_grace_period} leaves less than 30 s after the worker's shutdown grace (${graceMs / 1000} s)`,
    );
  });

  it('data lives in named volumes declared at the top level', () => {
    const stateful = {
      'temporal-db': '/var/lib/postgresql/data',
      db: '/var/lib/postgresql/data',
      worker: '/var/lib/dbops',
    };
    for (const [name, target] of Object.entries(stateful)) {
      const mounts = compose.services[name]!.volumes ?? [];
      const mount = mounts.find((m) => m.endsWith(`:${target}`));
      assert.ok(mount, `${name} does not keep ${target} in a volume`);
      const source = mount.split(':')[0]!;
      assert.match(
        source,
        /^[a-z][a-z0-9_-]*$/,
        `${name} mounts a host path (${source}), not a named volume`,
      );
      assert.ok(source in compose.volumes, `volume ${source} is not declared under volumes:`);
    }
  });

  it('no secret is written in the file: every password comes from the environment and is required', () => {
    const literal: string[] = [];
    for (const [name, service] of Object.entries(compose.services)) {
      for (const [key, value] of Object.entries(service.environment ?? {})) {
        if (!SECRET_NAME.test(key)) continue;
        if (!/^\$\{[A-Z0-9_]+:\?[^}]*\}$/.test(String(value)))
          literal.push(`${name}.${key}=${String(value)}`);
      }
    }
    assert.deepEqual(literal, [], 'secrets must be ${VAR:?message} references to .env');
    const published = Object.values(compose.services).flatMap((s) => s.ports ?? []);
    for (const port of published)
      assert.match(port, /^127\.0\.0\.1:/, `${port} is published on every interface`);
  });

  it('the Dockerfile is multi-stage, installs production dependencies only in the final stage, and runs as a non-root user', () => {
    const stages = dockerfile.split(/^FROM\s+/m).slice(1);
    assert.ok(stages.length >= 2, 'the Dockerfile has a single stage');
    const final = stages[stages.length - 1]!;
    assert.match(
      final,
      /^RUN npm install --omit=dev/m,
      'the final stage does not install production dependencies only',
    );
    const users = [...final.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1]);
    assert.ok(users.length > 0, 'the final stage has no USER line: it runs as root');
    assert.ok(
      !['root', '0', '0:0'].includes(users[users.length - 1]!),
      `the final stage runs as ${users.at(-1)}`,
    );
    assert.match(final, /^HEALTHCHECK /m);
    assert.match(final, /^CMD \["node", "--require", "tsx\/cjs", "workers\/worker-main\.ts"\]/m);
  });

  it('the build context leaves out local state, dependencies and .env', async () => {
    const ignored = (await readFile(path.join(projectRoot, '.dockerignore'), 'utf8'))
      .split('\n')
      .map((l) => l.trim());
    for (const entry of ['.env', 'node_modules', '.tools', '.dbops', '.git']) {
      assert.ok(ignored.includes(entry), `.dockerignore does not list ${entry}`);
    }
  });
});
