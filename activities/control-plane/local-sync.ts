/**
 * A backup reaching the disk as it is written, not all at its end. pg_basebackup, left to itself,
 * writes every file into the page cache and then syncs them all at once: hundreds of megabytes
 * flushed in one go, during which the instance's own commits (which wait for their WAL to reach
 * the same disk) stall. With `--no-sync`, syncAsWritten syncs each file pg_basebackup changed every
 * tenth of a second instead, so the disk takes a little at a time, and once it has finished, every
 * file and directory once more: the backup is then as durable as pg_basebackup's own sync makes it.
 */
import { open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** How often the files written since the last look are synced. */
const EVERY_MS = 100;
/**
 * A file unchanged for this long is done (pg_basebackup writes files one after another) and is
 * not looked at again: each look stats only new and recently written files, however many the
 * backup has. Should one change after all, the final pass syncs it.
 */
const SETTLED_MS = 1000;

/** fsync of a file or directory; one that is gone (removed meanwhile) is skipped. */
export async function syncPath(file: string): Promise<void> {
  const handle = await open(file, 'r').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (handle === undefined) return;
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Waits for `writing` (a program writing into `dir`), syncing what it wrote as it goes; then
 * syncs every file and directory under `dir`, and `dir` itself. `sync` is syncPath but in tests.
 */
export async function syncAsWritten<T>(
  dir: string,
  writing: Promise<T>,
  sync: (file: string) => Promise<void> = syncPath,
): Promise<T> {
  let done = false;
  const finished = writing.finally(() => {
    done = true;
  });
  /** Each file's modification time when it was last synced, and when it was seen to change. */
  const synced = new Map<string, { mtimeMs: number; changedAt: number }>();
  for (;;) {
    await Promise.race([finished.catch(() => undefined), sleep(EVERY_MS)]);
    if (done) break;
    for (const name of await readdir(dir, { recursive: true }).catch(() => [])) {
      const file = path.join(dir, name);
      const last = synced.get(file);
      if (last !== undefined && Date.now() - last.changedAt > SETTLED_MS) continue;
      const info = await stat(file).catch(() => undefined);
      if (info === undefined || !info.isFile() || last?.mtimeMs === info.mtimeMs) continue;
      await sync(file);
      synced.set(file, { mtimeMs: info.mtimeMs, changedAt: Date.now() });
    }
  }
  const result = await finished;
  for (const name of await readdir(dir, { recursive: true })) await sync(path.join(dir, name));
  await sync(dir);
  return result;
}
