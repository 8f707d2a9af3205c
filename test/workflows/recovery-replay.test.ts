import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';

import { workflowBundle } from '../helpers/temporal';

const HISTORIES = path.join(__dirname, '..', 'fixtures', 'histories');

/**
 * Committed histories of real runs (test/fixtures/record-recovery-histories.ts) replayed through
 * today's workflow code: a change that would break runs already in flight fails here.
 */
describe('recovery workflows replay their committed histories', () => {
  it('replays backup, pitrRestore, snapshotRestore and drTest without a non-determinism error', async () => {
    const files = (await readdir(HISTORIES)).filter((name) => name.endsWith('.binpb')).sort();
    assert.deepEqual(files, [
      'backup.binpb',
      'dr-test.binpb',
      'pitr-restore.binpb',
      'snapshot-restore.binpb',
    ]);
    const histories = await Promise.all(
      files.map(async (name) => ({
        workflowId: path.basename(name, '.binpb'),
        history: temporal.api.history.v1.History.decode(await readFile(path.join(HISTORIES, name))),
      })),
    );
    const replayed: string[] = [];
    for await (const result of Worker.runReplayHistories(
      { workflowBundle: await workflowBundle() },
      histories,
    )) {
      assert.equal(result.error, undefined, `${result.workflowId}: ${String(result.error)}`);
      replayed.push(result.workflowId);
    }
    assert.deepEqual(replayed, ['backup', 'dr-test', 'pitr-restore', 'snapshot-restore']);
  });
});
