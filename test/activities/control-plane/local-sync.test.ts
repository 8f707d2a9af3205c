import assert from 'node:assert/strict';
import { appendFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { syncAsWritten, syncPath } from '../../../activities/control-plane/local-sync';

describe('a backup synced as it is written (real files; the sync calls recorded)', function () {
  this.timeout(30_000);
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'dbops-sync-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Writes like pg_basebackup: files one after another, each in several steps, over about 1.2 s. */
  async function writeLikeABackup(): Promise<number> {
    await mkdir(path.join(dir, 'base', '5'), { recursive: true });
    for (const name of ['base/5/100', 'base/5/101', 'global']) {
      for (let step = 0; step < 4; step++) {
        await appendFile(path.join(dir, name), Buffer.alloc(64 * 1024, step));
        await sleep(100);
      }
    }
    await writeFile(path.join(dir, 'backup_manifest'), '{}');
    return performance.now();
  }

  it('syncs each file while it is written, then every file and directory once more', async () => {
    const calls: [string, number][] = [];
    const record = async (file: string) => {
      calls.push([path.relative(dir, file), performance.now()]);
      await syncPath(file);
    };
    const finishedAt = await syncAsWritten(dir, writeLikeABackup(), record);

    const whileWriting = new Set(calls.filter(([, at]) => at < finishedAt).map(([name]) => name));
    for (const name of ['base/5/100', 'base/5/101', 'global']) {
      assert.ok(
        whileWriting.has(name),
        `${name} was not synced while written: ${[...whileWriting].join(', ')}`,
      );
    }
    const after = calls.filter(([, at]) => at >= finishedAt).map(([name]) => name);
    assert.deepEqual(after.sort(), [
      '',
      'backup_manifest',
      'base',
      'base/5',
      'base/5/100',
      'base/5/101',
      'global',
    ]);
  });

  it('looks no more at a file left alone for over a second; the final pass syncs its late change', async () => {
    const calls: [string, number][] = [];
    const record = (file: string) => {
      calls.push([path.relative(dir, file), performance.now()]);
      return Promise.resolve();
    };
    let changedAgainAt = 0;
    const writing = (async () => {
      for (const [name, steps] of [
        ['first', 3],
        ['second', 20],
      ] as const) {
        for (let step = 0; step < steps; step++) {
          await appendFile(path.join(dir, name), Buffer.alloc(1024, step));
          await sleep(100);
        }
      }
      changedAgainAt = performance.now();
      await appendFile(path.join(dir, 'first'), 'late');
      await sleep(500);
      return performance.now();
    })();
    const finishedAt = await syncAsWritten(dir, writing, record);
    const first = calls.filter(([name]) => name === 'first').map(([, at]) => at);
    assert.ok(first[0]! < changedAgainAt, 'first was not synced while written');
    assert.deepEqual(
      first.filter((at) => at >= changedAgainAt && at < finishedAt),
      [],
      'first was looked at again after it had settled',
    );
    assert.ok(first.at(-1)! >= finishedAt, 'the final pass did not sync first');
  });

  it("fails with the writer's error and syncs nothing more", async () => {
    const calls: string[] = [];
    const failing = (async () => {
      await writeFile(path.join(dir, 'half'), 'x');
      await sleep(250);
      throw new Error('pg_basebackup failed: connection lost');
    })();
    await assert.rejects(
      syncAsWritten(dir, failing, (file) => {
        calls.push(path.relative(dir, file));
        return Promise.resolve();
      }),
      /connection lost/,
    );
    assert.ok(!calls.includes(''), 'the directory itself was synced after a failed backup');
  });

  it('skips a file removed before its sync', async () => {
    await syncPath(path.join(dir, 'gone'));
  });
});
