/**
 * Every committed history of a real run (test/fixtures/histories*, see the README there) replayed
 * through today's workflow code: a change that would break a run in flight fails here, naming
 * the history. Every workflow type the worker registers must have at least one history.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';

import * as workflows from '../../workflows';
import { workflowBundle } from '../helpers/temporal';

const FIXTURES = path.join(__dirname, '..', 'fixtures');

interface Recorded {
  /** The file, relative to test/fixtures. */
  file: string;
  workflowType: string;
  history: temporal.api.history.v1.History;
}

async function binpbFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map((entry) => {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) return binpbFiles(full);
      return Promise.resolve(entry.name.endsWith('.binpb') ? [full] : []);
    }),
  );
  return nested.flat();
}

async function committedHistories(): Promise<Recorded[]> {
  const dirs = (await readdir(FIXTURES, { withFileTypes: true }))
    .filter((entry) => entry.isDirectory() && entry.name.startsWith('histories'))
    .map((entry) => path.join(FIXTURES, entry.name));
  const files = (await Promise.all(dirs.map(binpbFiles))).flat().sort();
  return Promise.all(
    files.map(async (full) => {
      const history = temporal.api.history.v1.History.decode(await readFile(full));
      const started = history.events[0]?.workflowExecutionStartedEventAttributes;
      const workflowType = started?.workflowType?.name;
      if (workflowType === undefined || workflowType === null)
        throw new Error(`${full}: its first event is not a workflow start`);
      return { file: path.relative(FIXTURES, full), workflowType, history };
    }),
  );
}

describe('every committed workflow history replays on today’s code', () => {
  it('replays each history without a non-determinism error, and every workflow type has one', async () => {
    const recorded = await committedHistories();
    const outcomes: string[] = [];
    for await (const result of Worker.runReplayHistories(
      { workflowBundle: await workflowBundle() },
      recorded.map(({ file, history }) => ({ workflowId: file, history })),
    )) {
      outcomes.push(
        `${result.workflowId}: ${result.error === undefined ? 'replayed' : String(result.error)}`,
      );
    }

    const perType = new Map<string, number>();
    for (const { workflowType } of recorded) perType.set(workflowType, (perType.get(workflowType) ?? 0) + 1);
    const registered = Object.keys(workflows).sort();
    console.log(
      `      replayed ${recorded.length} histories: ` +
        [...new Set([...registered, ...perType.keys()])]
          .sort()
          .map((type) => `${type} ${perType.get(type) ?? 0}`)
          .join(', '),
    );

    assert.deepEqual(
      outcomes.filter((line) => !line.endsWith(': replayed')),
      [],
      'histories that no longer replay',
    );
    assert.equal(outcomes.length, recorded.length);
    assert.deepEqual(
      registered.filter((type) => !perType.has(type)),
      [],
      'workflow types without a committed history',
    );
  });
});
