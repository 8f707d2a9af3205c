/**
 * The real Temporal server (not the dev server) on a PostgreSQL 15 cluster of its own: persistence
 * in the database `temporal`, SQL visibility in `temporal_visibility`, both created and brought up
 * to the server's schema version by its SQL schema tool (idempotent: a later start applies only
 * newer versions). Our namespace and search attributes are registered once the server answers, and
 * the Web UI server runs beside it when a port is given. This is the topology a team runs for real
 * (`npm run start:cluster`, the cluster tests): the history survives a restart of the server and
 * several workers share the task queue.
 *
 * Everything lives in one directory: `postgres/` (the cluster, run as the postgres user), `config/`
 * (written at each start), `ports.json` (the ports chosen at the first start, kept while free), the
 * logs and the pid files that let the next start stop what a crashed one left running.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';

import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';

import {
  initCluster,
  makePostgresDir,
  startCluster,
  stopCluster,
  writeClusterSettings,
} from '../activities/postgres/cluster';
import { freePort, isPortOpen, waitForPort } from '../activities/ports';
import { searchAttributeKeys } from '../workflows/lib/search-attributes';
import { stopOrphan, terminate } from './dev-server';
import { requireTool, tools } from './tools';

const execFileAsync = promisify(execFile);

export interface ClusterOptions {
  /** Directory of the cluster's database, configuration, logs and pid files. */
  dir: string;
  /** The frontend's gRPC port: clients and workers connect to 127.0.0.1:<port>. */
  port: number;
  /** The Web UI's port; none: no Web UI. */
  uiPort?: number;
  namespace: string;
}

export interface TemporalCluster {
  /** host:port of the frontend. */
  address: string;
  /** Kills the Temporal server process (SIGKILL, as a crash) and starts it again on the same database and ports. */
  restartServer: () => Promise<void>;
  /** Stops the Web UI, the server, then the database; the directory stays for the next start. */
  stop: () => Promise<void>;
}

/** Ports the cluster uses besides the frontend's and the UI's, chosen once and kept while free. */
interface ClusterPorts {
  postgres: number;
  http: number;
  /** Internal gRPC ports of the history, matching and worker services. */
  history: number;
  matching: number;
  worker: number;
  /** Membership (ringpop) ports; the schema stores them as smallint, so each is below 32768. */
  membership: { frontend: number; history: number; matching: number; worker: number };
}

/** How long the server keeps closed runs (their history) before deleting them: a month of DR tests. */
const RETENTION = '30 days';

/** The databases the schema tool sets up, with the schema directory of each. */
const DATABASES = { temporal: 'temporal', temporal_visibility: 'visibility' } as const;

export async function startTemporalCluster(options: ClusterOptions): Promise<TemporalCluster> {
  const server = requireTool('temporalServer');
  requireTool('temporalSqlTool');
  requireTool('temporalSchema');
  const ui = options.uiPort === undefined ? undefined : requireTool('temporalUiServer');
  await mkdir(options.dir, { recursive: true, mode: 0o755 });
  const serverPidFile = path.join(options.dir, 'temporal-server.pid');
  const uiPidFile = path.join(options.dir, 'temporal-ui.pid');
  const dataDir = path.join(options.dir, 'postgres', 'data');
  // What a crashed start left running: stopped, so it comes back with this start's settings.
  await stopOrphan(uiPidFile, 'the Temporal Web UI', 'temporal-ui-server');
  await stopOrphan(serverPidFile, 'the Temporal server', 'temporal-server');
  await stopCluster(dataDir);
  for (const port of [options.port, options.uiPort]) {
    if (port !== undefined && (await isPortOpen(port))) {
      throw new Error(
        `port ${port} is already in use: stop what listens there or set TEMPORAL_ADDRESS / DBOPS_UI_PORT`,
      );
    }
  }
  const ports = await clusterPorts(options.dir);
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  };
  try {
    await startDatabase(dataDir, ports.postgres);
    stops.push(() => stopCluster(dataDir));
    await setUpSchemas(options.dir, ports.postgres);
    const configDir = path.join(options.dir, 'config');
    await writeServerConfig(configDir, options.port, ports);

    const startServer = async () => {
      const child = await startProcess(server, serverArgs(options.dir), options.dir, 'temporal');
      await writeFile(serverPidFile, String(child.pid));
      await waitForPort(options.port, 'temporal server', { timeoutMs: 60_000, stillAlive: exitOf(child) });
      return child.pid;
    };
    let serverPid = await startServer();
    stops.push(() => terminate(serverPid));
    const address = `127.0.0.1:${options.port}`;
    await registerNamespace(address, options.namespace);

    if (ui !== undefined && options.uiPort !== undefined) {
      await writeUiConfig(options.dir, address, options.uiPort, options.namespace);
      const child = await startProcess(ui, uiArgs(options.dir), options.dir, 'temporal-ui');
      stops.push(() => terminate(child.pid));
      await writeFile(uiPidFile, String(child.pid));
      await waitForPort(options.uiPort, 'temporal web UI', { stillAlive: exitOf(child) });
    }
    return {
      address,
      async restartServer() {
        process.kill(-serverPid, 'SIGKILL');
        await waitForExit(serverPid);
        serverPid = await startServer();
      },
      async stop() {
        await stopAll();
        await rm(serverPidFile, { force: true });
        await rm(uiPidFile, { force: true });
      },
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** The ports of an earlier start when they are still free; new ones otherwise. */
async function clusterPorts(dir: string): Promise<ClusterPorts> {
  const file = path.join(dir, 'ports.json');
  const earlier = JSON.parse(await readFile(file, 'utf8').catch(() => 'null')) as ClusterPorts | null;
  if (earlier !== null) {
    const all = [earlier.postgres, earlier.http, earlier.history, earlier.matching, earlier.worker];
    all.push(...Object.values(earlier.membership));
    const open = await Promise.all(all.map((port) => isPortOpen(port)));
    if (!open.includes(true)) return earlier;
  }
  const taken = new Set<number>();
  const pick = async (next: () => Promise<number>) => {
    for (;;) {
      const port = await next();
      if (!taken.has(port)) {
        taken.add(port);
        return port;
      }
    }
  };
  const ports: ClusterPorts = {
    postgres: await pick(freePort),
    http: await pick(freePort),
    history: await pick(freePort),
    matching: await pick(freePort),
    worker: await pick(freePort),
    membership: {
      frontend: await pick(freeSmallPort),
      history: await pick(freeSmallPort),
      matching: await pick(freeSmallPort),
      worker: await pick(freeSmallPort),
    },
  };
  await writeFile(file, JSON.stringify(ports, null, 2));
  return ports;
}

/** A free loopback port from 20000 to 32767 (the OS hands out ephemeral ports above 32767). */
async function freeSmallPort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_768);
    const free = await new Promise<boolean>((resolve) => {
      const probe = createServer();
      probe.once('error', () => resolve(false));
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

/** Makes the cluster on the first start; afterwards starts it on its port. */
async function startDatabase(dataDir: string, port: number): Promise<void> {
  // The server opens up to 20 + 10 connections per service (frontend, history, matching, worker).
  const settings = { port, extraConf: { max_connections: '200' } };
  // The postgres user owns the cluster's folder: its log goes beside the data directory.
  await makePostgresDir(path.dirname(dataDir));
  if (existsSync(path.join(dataDir, 'PG_VERSION'))) await writeClusterSettings(dataDir, settings);
  else await initCluster(dataDir, settings);
  await startCluster(dataDir, path.join(path.dirname(dataDir), 'server.log'));
}

/**
 * Creates the persistence and visibility databases and brings them to the server's schema
 * version with its SQL schema tool. Each command is idempotent: an existing database is kept,
 * `setup-schema -v 0.0` leaves a newer version as it is, `update-schema` applies only newer ones.
 */
async function setUpSchemas(dir: string, port: number): Promise<void> {
  const log = path.join(dir, 'schema.log');
  await writeFile(log, '');
  for (const [database, schema] of Object.entries(DATABASES)) {
    const base = ['--plugin', 'postgres12', '--ep', '127.0.0.1', '-p', String(port), '-u', 'postgres'];
    const steps = [
      ['create-database'],
      ['setup-schema', '-v', '0.0'],
      ['update-schema', '-d', path.join(tools.temporalSchema, schema, 'versioned')],
    ];
    for (const step of steps) {
      const args = [...base, '--db', database, ...step];
      try {
        const { stdout, stderr } = await execFileAsync(tools.temporalSqlTool, args, {
          maxBuffer: 16 * 1024 * 1024,
        });
        await writeFile(log, `$ temporal-sql-tool ${args.join(' ')}\n${stdout}${stderr}`, { flag: 'a' });
      } catch (error) {
        const failure = error as { stderr?: string; message: string };
        throw new Error(
          `temporal-sql-tool ${step[0]} of ${database} failed: ${lastLine(failure.stderr) ?? failure.message}`,
        );
      }
    }
  }
}

function lastLine(text: string | undefined): string | undefined {
  return text
    ?.trim()
    .split('\n')
    .filter((line) => line !== '')
    .at(-1);
}

/**
 * The server's configuration (YAML is a superset of JSON: written as JSON) and its dynamic
 * configuration: no version check calls out to the network.
 */
async function writeServerConfig(configDir: string, port: number, ports: ClusterPorts): Promise<void> {
  await mkdir(configDir, { recursive: true });
  const datastore = (databaseName: string, maxConns: number) => ({
    sql: {
      pluginName: 'postgres12',
      databaseName,
      connectAddr: `127.0.0.1:${ports.postgres}`,
      connectProtocol: 'tcp',
      user: 'postgres',
      maxConns,
      maxIdleConns: maxConns,
      maxConnLifetime: '1h',
    },
  });
  const rpc = (grpcPort: number, membershipPort: number) => ({
    grpcPort,
    membershipPort,
    bindOnIP: '127.0.0.1',
  });
  const dynamicConfig = path.join(configDir, 'dynamicconfig.yaml');
  const config = {
    log: { stdout: true, level: 'warn' },
    persistence: {
      defaultStore: 'default',
      visibilityStore: 'visibility',
      numHistoryShards: 4,
      datastores: { default: datastore('temporal', 20), visibility: datastore('temporal_visibility', 10) },
    },
    global: { membership: { maxJoinDuration: '30s', broadcastAddress: '127.0.0.1' } },
    services: {
      frontend: { rpc: { ...rpc(port, ports.membership.frontend), httpPort: ports.http } },
      history: { rpc: rpc(ports.history, ports.membership.history) },
      matching: { rpc: rpc(ports.matching, ports.membership.matching) },
      worker: { rpc: rpc(ports.worker, ports.membership.worker) },
    },
    clusterMetadata: {
      enableGlobalNamespace: false,
      failoverVersionIncrement: 10,
      masterClusterName: 'active',
      currentClusterName: 'active',
      clusterInformation: {
        active: {
          enabled: true,
          initialFailoverVersion: 1,
          rpcName: 'frontend',
          rpcAddress: `127.0.0.1:${port}`,
        },
      },
    },
    dcRedirectionPolicy: { policy: 'noop' },
    dynamicConfigClient: { filepath: dynamicConfig, pollInterval: '10s' },
  };
  await writeFile(path.join(configDir, 'development.yaml'), JSON.stringify(config, null, 2));
  await writeFile(
    dynamicConfig,
    JSON.stringify({ 'frontend.enableServerVersionCheck': [{ value: false }] }, null, 2),
  );
}

function serverArgs(dir: string): string[] {
  return ['--root', dir, '--config', 'config', '--env', 'development', '--allow-no-auth', 'start'];
}

async function writeUiConfig(dir: string, address: string, port: number, namespace: string): Promise<void> {
  const configDir = path.join(dir, 'ui-config');
  await mkdir(configDir, { recursive: true });
  const config = {
    temporalGrpcAddress: address,
    host: '127.0.0.1',
    port,
    enableUi: true,
    defaultNamespace: namespace,
    notifyOnNewVersion: false,
    hideLogs: true,
    // Served over plain HTTP on loopback, as the dev server's UI.
    cors: { cookieInsecure: true },
  };
  await writeFile(path.join(configDir, 'development.yaml'), JSON.stringify(config, null, 2));
}

function uiArgs(dir: string): string[] {
  return ['--root', dir, '--config', 'ui-config', '--env', 'development', 'start'];
}

/** Starts `binary` in its own process group, its output appended to `<dir>/<name>.log`. */
async function startProcess(
  binary: string,
  args: string[],
  dir: string,
  name: string,
): Promise<{ pid: number; child: ChildProcess; log: string }> {
  const log = path.join(dir, `${name}.log`);
  const fd = openSync(log, 'a');
  const child = spawn(binary, args, { detached: true, stdio: ['ignore', fd, fd], cwd: dir });
  closeSync(fd);
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  return { pid: child.pid!, child, log };
}

/** For waitForPort: says why the process stopped, once it has. */
function exitOf(started: { child: ChildProcess; log: string }): () => string | undefined {
  return () => {
    const { exitCode, signalCode } = started.child;
    if (exitCode === null && signalCode === null) return undefined;
    return `exit ${exitCode ?? signalCode}, see ${started.log}`;
  };
}

async function waitForExit(pid: number): Promise<void> {
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await sleep(50);
  }
}

/**
 * Registers the namespace unless it exists, and our search attributes (Keyword) unless they
 * exist; retried while the server is still starting its services.
 */
async function registerNamespace(address: string, namespace: string): Promise<void> {
  const connection = await Connection.connect({ address });
  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        await registerOnce(connection, namespace);
        return;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(500);
      }
    }
  } finally {
    await connection.close();
  }
}

const ALREADY_EXISTS = 6;

async function registerOnce(connection: Connection, namespace: string): Promise<void> {
  try {
    await connection.workflowService.registerNamespace({
      namespace,
      workflowExecutionRetentionPeriod: msToTs(RETENTION),
    });
  } catch (error) {
    if ((error as { code?: number }).code !== ALREADY_EXISTS) throw error;
  }
  const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
  const missing = searchAttributeKeys.filter((key) => !(key.name in (customAttributes ?? {})));
  if (missing.length === 0) return;
  await connection.operatorService.addSearchAttributes({
    namespace,
    searchAttributes: Object.fromEntries(
      missing.map((key) => [key.name, temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD]),
    ),
  });
}
