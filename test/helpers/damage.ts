/**
 * Damage done to real PostgreSQL files, as disks, copies and backup tools do it: a byte changed
 * inside a tuple (or its header), a backup manifest rewritten to agree with damaged files, a
 * backup rebuilt from a changed copy of itself. The DR tests use these to show which check
 * catches what.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

import type { Endpoint } from '../../activities/control-plane/control-plane';
import {
  makePostgresDir,
  runPgBinary,
  startCluster,
  stopCluster,
  writeClusterSettings,
} from '../../activities/postgres/cluster';
import { freePort } from '../../activities/ports';

const execFileAsync = promisify(execFile);

const PAGE = 8192;

/** Byte offset in a relation file of the first tuple on `block` (its line pointer 1). */
export async function firstTupleOffset(
  file: string,
  block = 0,
): Promise<{ tuple: number; dataStart: number }> {
  const handle = await open(file, 'r');
  try {
    const page = Buffer.alloc(PAGE);
    await handle.read(page, 0, PAGE, block * PAGE);
    const linePointer = page.readUInt32LE(24);
    const offset = linePointer & 0x7fff;
    if (offset === 0 || (linePointer >>> 15) % 4 !== 1)
      throw new Error(`${file} block ${block}: no tuple at item 1`);
    // t_hoff: where the tuple's data begins, after its header.
    const headerLength = page.readUInt8(offset + 22);
    return { tuple: block * PAGE + offset, dataStart: block * PAGE + offset + headerLength };
  } finally {
    await handle.close();
  }
}

/** Overwrites bytes of a file in place (as root: the file keeps its owner and mode). */
export async function writeBytes(file: string, offset: number, bytes: number[]): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    await handle.write(Buffer.from(bytes), 0, bytes.length, offset);
  } finally {
    await handle.close();
  }
}

/** Adds 1 to the byte at `offset` (mod 256): it is changed, whatever it was. */
export async function changeByte(file: string, offset: number): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offset);
    await handle.write(Buffer.from([(byte[0]! + 1) % 256]), 0, 1, offset);
  } finally {
    await handle.close();
  }
}

const CRC32C_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  return c >>> 0;
});

/** CRC-32C as a backup manifest writes it: the checksum's bytes in little-endian order, as hex. */
export function manifestCrc32c(data: Buffer): string {
  let crc = 0xffffffff;
  for (const byte of data) crc = CRC32C_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  const out = Buffer.alloc(4);
  out.writeUInt32LE((crc ^ 0xffffffff) >>> 0);
  return out.toString('hex');
}

/**
 * Rewrites a backup's manifest so it agrees with the files as they are now (`files`: paths
 * relative to the backup): their sizes and checksums, and the manifest's own checksum. What a
 * backup tool that damaged a file while writing it, and then described it, would leave.
 */
export async function rewriteManifest(backupDir: string, files: string[]): Promise<void> {
  const manifestFile = path.join(backupDir, 'backup_manifest');
  const lines = (await readFile(manifestFile, 'utf8')).split('\n');
  for (const file of files) {
    const index = lines.findIndex((line) => line.startsWith(`{ "Path": ${JSON.stringify(file)},`));
    if (index < 0) throw new Error(`${file} is not in the manifest`);
    const data = await readFile(path.join(backupDir, file));
    lines[index] = lines[index]!.replace(/"Size": \d+/, `"Size": ${data.length}`).replace(
      /"Checksum": "[0-9a-f]+"/,
      `"Checksum": "${manifestCrc32c(data)}"`,
    );
  }
  const last = lines.findIndex((line) => line.startsWith('"Manifest-Checksum"'));
  const body = `${lines.slice(0, last).join('\n')}\n`;
  const checksum = createHash('sha256').update(body).digest('hex');
  await writeFile(manifestFile, `${body}"Manifest-Checksum": "${checksum}"}\n`);
}

/**
 * Replaces a backup with a new base backup of a changed copy of it: the copy is started, `change`
 * runs SQL on it, and pg_basebackup takes the new backup, manifest and all. The result verifies,
 * restores and has valid page checksums: only checks of what it holds can tell it from the
 * original.
 */
export async function rebuildBackup(
  backupDir: string,
  change: (endpoint: Endpoint) => Promise<unknown>,
): Promise<void> {
  const work = `${backupDir}.rebuild`;
  const dataDir = path.join(work, 'data');
  const rebuilt = path.join(work, 'backup');
  await rm(work, { recursive: true, force: true });
  await makePostgresDir(work);
  try {
    await execFileAsync('cp', ['-a', backupDir, dataDir]);
    const port = await freePort();
    await writeClusterSettings(dataDir, { port, extraConf: { archive_mode: 'off' } });
    await startCluster(dataDir, path.join(work, 'server.log'));
    await change({ host: '127.0.0.1', port, database: 'mcp_db', user: 'postgres' });
    await runPgBinary('pg_basebackup', [
      ...['--host', '127.0.0.1', '--port', String(port), '--username', 'postgres'],
      ...['--pgdata', rebuilt, '--format', 'plain', '--wal-method', 'stream', '--checkpoint', 'fast'],
    ]);
    await stopCluster(dataDir, 'immediate');
    await rm(backupDir, { recursive: true, force: true });
    await rename(rebuilt, backupDir);
  } finally {
    await stopCluster(dataDir, 'immediate').catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}

/** The WAL segment holding a backup's end (from its manifest), and the end's offset in it. */
export async function backupEndSegment(backupDir: string): Promise<{ file: string; offset: number }> {
  const manifest = JSON.parse(await readFile(path.join(backupDir, 'backup_manifest'), 'utf8')) as {
    'WAL-Ranges': { Timeline: number; 'End-LSN': string }[];
  };
  const range = manifest['WAL-Ranges'].at(-1)!;
  const [high, low] = range['End-LSN'].split('/').map((part) => parseInt(part, 16)) as [number, number];
  const segmentSize = 16 * 1024 * 1024;
  const segment = Math.floor(low / segmentSize);
  const name = [range.Timeline, high, segment]
    .map((n) => n.toString(16).toUpperCase().padStart(8, '0'))
    .join('');
  const file = path.join(backupDir, 'pg_wal', name);
  await stat(file);
  return { file, offset: low % segmentSize };
}
