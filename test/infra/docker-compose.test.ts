/**
 * docker-compose.yml and the Dockerfile, read as files: no Docker engine runs on the machines that
 * run this suite, so the stack is checked for its structure, not started.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import type { Duration } from '@temporalio/common';
import { msToNumber } from '@temporalio/common/lib/time';
import { parse } from 'yaml';

import { projectRoot } from '../../activities/config-types';
import { loadConfig } from '../../workers/config';

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  environment?: Record<string, string | number>;
  volumes?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  ports?: string[];
  stop_grace_period?: string;
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

/** Names under which a value must never be written into the compose file itself. */
const SECRET_NAME = /PASSWORD|PASSWD|PWD|SECRET|TOKEN|KEY/i;

describe('docker-compose.yml and Dockerfile (static check: no Docker engine runs here)', () => {
  let compose: Compose;
  let dockerfile: string;
  before(async () => {
    compose = parse(await readFile(path.join(projectRoot, 'docker-compose.yml'), 'utf8')) as Compose;
    dockerfile = await readFile(path.join(projectRoot, 'Dockerfile'), 'utf8');
  });

  it('has Temporal with its own Postgres, the Web UI, PostgreSQL 15 with pgvector, and the worker built from the Dockerfile', () => {
    const { services } = compose;
    assert.deepEqual(Object.keys(services).sort(), [
      'db',
      'temporal',
      'temporal-db',
      'temporal-ui',
      'worker',
    ]);
    assert.match(services.temporal!.image!, /^temporalio\/auto-setup:\d+\.\d+\.\d+$/);
    assert.equal(services.temporal!.environment!.POSTGRES_SEEDS, 'temporal-db');
    assert.match(services['temporal-db']!.image!, /^postgres:15/);
    assert.match(services['temporal-ui']!.image!, /^temporalio\/ui:\d+\.\d+\.\d+$/);
    assert.equal(services['temporal-ui']!.environment!.TEMPORAL_ADDRESS, 'temporal:7233');
    assert.match(services.db!.image!, /^pgvector\/pgvector:0\.8\.\d+-pg15$/);
    assert.deepEqual(services.worker!.build, { context: '.', dockerfile: 'Dockerfile' });
    assert.equal(services.worker!.environment!.TEMPORAL_ADDRESS, 'temporal:7233');
    assert.equal(services.worker!.environment!.PGHOST, 'db');
  });

  it('every service has a healthcheck, and dependants wait for their dependencies to be healthy', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      assert.ok(service.healthcheck?.test.length, `${name} has no healthcheck`);
      for (const [dependency, { condition }] of Object.entries(service.depends_on ?? {})) {
        assert.equal(condition, 'service_healthy', `${name} starts before ${dependency} is healthy`);
      }
    }
    assert.deepEqual(Object.keys(compose.services.worker!.depends_on ?? {}).sort(), ['db', 'temporal']);
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
