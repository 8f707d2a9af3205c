import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import {
  readJson,
  updateRecord,
  updateRecordIfPresent,
  writeJsonAtomic,
} from '../../../activities/control-plane/local-state';

interface Record {
  status: string;
}

describe('local state records', () => {
  let root: string;
  let dir: string;
  let file: string;

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'dbops-state-'));
    dir = path.join(root, 'instances', 'copy-1');
    file = path.join(dir, 'instance.json');
    await mkdir(dir, { recursive: true });
    await writeJsonAtomic(file, { status: 'creating' });
  });

  afterEach(() => rm(root, { recursive: true, force: true }));

  it('an update lands whole', async () => {
    const updated = await updateRecordIfPresent<Record>(file, () => ({ status: 'failed' }));
    assert.deepEqual(updated, { status: 'failed' });
    assert.deepEqual(await readJson<Record>(file), { status: 'failed' });
    assert.deepEqual(await readdir(dir), ['instance.json'], 'a temporary file was left behind');
  });

  it('a record removed by another process between the read and the write is gone, not an error', async () => {
    // What a listing meets when a delete removes the instance while the listing settles it.
    const updated = await updateRecordIfPresent<Record>(file, (record) => {
      rmSync(dir, { recursive: true, force: true });
      return { ...record, status: 'failed' };
    });
    assert.equal(updated, undefined);
    assert.deepEqual(await readdir(path.join(root, 'instances')), [], 'the removed record came back');
  });

  it('a record already gone is undefined; updateRecord, for records that must exist, names it', async () => {
    await rm(dir, { recursive: true });
    assert.equal(await updateRecordIfPresent<Record>(file, (r) => r), undefined);
    await assert.rejects(
      updateRecord<Record>(file, (r) => r),
      /instance\.json disappeared/,
    );
  });
});
