/**
 * Snapshots of a chosen age for the retention suites: a copy of a real local snapshot's files and
 * record under a new id, as a manual snapshot taken `ageDays` ago with the given tags. Ages are
 * written into the record because no test can wait weeks for a snapshot to grow old. The files are
 * hard links (`cp -al`): the same bytes without writing them again, and deleting one copy's
 * directory leaves the others whole.
 */
import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

import type { SnapshotRecord } from '../../activities/control-plane/local-state';

const DAY_MS = 24 * 60 * 60 * 1000;

export async function backdatedCopy(
  stateDir: string,
  template: string,
  snapshot: { id: string; ageDays: number; tags: Record<string, string> },
): Promise<void> {
  const dir = (id: string) => path.join(stateDir, 'snapshots', id);
  await promisify(execFile)('cp', ['-al', dir(template), dir(snapshot.id)]);
  await rm(path.join(dir(snapshot.id), 'job.json'), { force: true });
  const file = path.join(dir(snapshot.id), 'snapshot.json');
  const record = JSON.parse(await readFile(file, 'utf8')) as SnapshotRecord;
  const at = new Date(Date.now() - snapshot.ageDays * DAY_MS).toISOString();
  const copy: SnapshotRecord = {
    ...record,
    snapshotId: snapshot.id,
    type: 'manual',
    createdAt: at,
    requestedAt: at,
    tags: snapshot.tags,
  };
  // A new file, not the template's record: the copied name is a link to it.
  await rm(file);
  await writeFile(file, JSON.stringify(copy));
}
