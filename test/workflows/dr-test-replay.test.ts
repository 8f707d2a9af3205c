/**
 * Runs that were in flight when create and delete calls started to wait for their cancellation
 * and to wait out busy resources must still replay: a drTest whose cleanup's delete was refused
 * (InvalidStateError) and asked again on a timer, and a snapshotRestore, pitrRestore and drTest
 * cancelled while their restore call was in flight (the cleanup then followed at once). The
 * histories in test/fixtures/histories-before-waiting-create-calls/ were recorded from the
 * workflow code before that change, on the time-skipping server with stand-in activities
 * (deleteInstance refused once; the restore call held until the run had closed).
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';

import { workflowBundle } from '../helpers/temporal';

const HISTORIES = path.join(__dirname, '..', 'fixtures', 'histories-before-waiting-create-calls');

describe('recovery runs from before create calls waited replay on today’s code', () => {
  it('a refused DR cleanup delete and restores cancelled mid-create replay without a non-determinism error', async () => {
    const files = (await readdir(HISTORIES)).filter((name) => name.endsWith('.binpb')).sort();
    assert.deepEqual(files, [
      'dr-test-cancelled-mid-create.binpb',
      'dr-test-delete-refused.binpb',
      'pitr-restore-cancelled-mid-create.binpb',
      'snapshot-restore-cancelled-mid-create.binpb',
    ]);
    const histories = await Promise.all(
      files.map(async (name) => ({
        workflowId: path.basename(name, '.binpb'),
        history: temporal.api.history.v1.History.decode(await readFile(path.join(HISTORIES, name))),
      })),
    );
    const outcomes: string[] = [];
    for await (const result of Worker.runReplayHistories(
      { workflowBundle: await workflowBundle() },
      histories,
    )) {
      outcomes.push(
        `${result.workflowId}: ${result.error === undefined ? 'replayed' : String(result.error)}`,
      );
    }
    assert.deepEqual(
      outcomes,
      histories.map(({ workflowId }) => `${workflowId}: replayed`),
    );
  });
});
