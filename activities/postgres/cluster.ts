/**
 * Primitives for real PostgreSQL 15 clusters on this machine: initdb, start, stop. Postgres refuses
 * to run as root, so when we are root every server-side command runs as the `postgres` user.
 */
import { execFile } from 'node:child_process';
import { appendFile, chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Server binaries of the pinned major version (Debian's layout). */
export const pgBinDir = process.env.DBOPS_PG_BINDIR ?? '/usr/lib/postgresql/15/bin';

const runningAsRoot = process.getuid?.() === 0;

export interface ClusterSettings {
  port: number;
  /**
   * Directory for the Unix socket (kept short: socket paths are limited to ~100 bytes). Without
   * it the cluster listens on TCP loopback only.
   */
  socketDir?: string;
  /** Extra `postgresql.conf` lines, e.g. archive settings. */
  extraConf?: Record<string, string>;
}

/** Runs a Postgres server binary, as the postgres user when we are root. */
export async function runPgBinary(
  name: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  const binary = path.join(pgBinDir, name);
  const [file, argv] = runningAsRoot
    ? ['runuser', ['-u', 'postgres', '--', binary, ...args]]
    : [binary, args];
  try {
    return await execFileAsync(file, argv, {
      env: { ...process.env, LC_ALL: 'C.UTF-8', ...options.env },
      timeout: options.timeoutMs ?? 120_000,
      maxBuffer: 16 * 1024 * 1024,
      cwd: '/',
    });
  } catch (error) {
    const failure = error as { stderr?: string; message: string };
    throw new Error(`${name} ${args.join(' ')} failed: ${(failure.stderr ?? '').trim() || failure.message}`);
  }
}

let postgresIds: Promise<{ uid: number; gid: number }> | undefined;

/** Hands a file or directory to the postgres user when we are root (no-op otherwise). */
export async function chownToPostgres(file: string): Promise<void> {
  if (!runningAsRoot) return;
  postgresIds ??= Promise.all([
    execFileAsync('id', ['-u', 'postgres']),
    execFileAsync('id', ['-g', 'postgres']),
  ]).then(([uid, gid]) => ({ uid: Number(uid.stdout), gid: Number(gid.stdout) }));
  const { uid, gid } = await postgresIds;
  await chown(file, uid, gid);
}

/** Creates `dir` (mode 700) for the postgres user; parents we create stay traversable (755). */
export async function makePostgresDir(dir: string): Promise<void> {
  await mkdir(path.dirname(dir), { recursive: true, mode: 0o755 });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chownToPostgres(dir);
}

/** initdb with data checksums and trust auth on loopback only, then our settings appended to postgresql.conf. */
export async function initCluster(dataDir: string, settings: ClusterSettings): Promise<void> {
  await makePostgresDir(dataDir);
  if (settings.socketDir !== undefined) await makePostgresDir(settings.socketDir);
  await runPgBinary('initdb', [
    '--pgdata',
    dataDir,
    '--username',
    'postgres',
    '--auth-local',
    'trust',
    '--auth-host',
    'trust',
    '--encoding',
    'UTF8',
    '--locale',
    'C.UTF-8',
    // Damaged pages fail their read instead of returning wrong rows (or crashing a backend).
    '--data-checksums',
    '--no-sync',
  ]);
  await writeClusterSettings(dataDir, settings);
  // Our settings live in their own file, included last so they win over initdb's defaults.
  await appendFile(path.join(dataDir, 'postgresql.conf'), "\ninclude 'dbops.conf'\n");
}

/**
 * (Re)writes our own settings file `dbops.conf` of a cluster made by initCluster, e.g. for a copy
 * of a cluster (a restored base backup) that must get its own port and archive.
 */
export async function writeClusterSettings(dataDir: string, settings: ClusterSettings): Promise<void> {
  const conf = {
    listen_addresses: "'127.0.0.1'",
    port: String(settings.port),
    unix_socket_directories: `'${settings.socketDir ?? ''}'`,
    shared_preload_libraries: "'pg_stat_statements'",
    ...settings.extraConf,
  };
  const ours = path.join(dataDir, 'dbops.conf');
  const lines = Object.entries(conf).map(([key, value]) => `${key} = ${value}`);
  await writeFile(ours, `# written by dbops\n${lines.join('\n')}\n`, { mode: 0o600 });
  await chownToPostgres(ours);
}

/** Starts a cluster and waits until it accepts connections (a standby: until it is consistent). */
export async function startCluster(dataDir: string, logFile: string, timeoutSeconds = 60): Promise<void> {
  await runPgBinary(
    'pg_ctl',
    ['start', '--pgdata', dataDir, '--log', logFile, '--wait', '--timeout', String(timeoutSeconds)],
    { timeoutMs: (timeoutSeconds + 10) * 1000 },
  );
}

/** Stops a running cluster; a cluster that is not running is left as it is. */
export async function stopCluster(dataDir: string, mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
  if (!(await isClusterRunning(dataDir))) return;
  await runPgBinary('pg_ctl', ['stop', '--pgdata', dataDir, '--mode', mode, '--wait', '--timeout', '60']);
}

/**
 * Whether the cluster's postmaster runs: the pid in its `postmaster.pid` is a live postgres process
 * (read directly rather than through `pg_ctl status`: describe calls this often).
 */
export async function isClusterRunning(dataDir: string): Promise<boolean> {
  let pid: number;
  try {
    pid = Number((await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 0) return false;
  // A stale pid file can name a pid that another program has since been given.
  const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return command.split('\0')[0]?.endsWith('postgres') ?? false;
}
