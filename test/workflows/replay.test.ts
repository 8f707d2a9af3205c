/**
 * Every committed history of a real run (test/fixtures/histories*, see the README there) replayed
 * through today's workflow code under the workflow id it ran with (workflows compare it with owner
 * tags): a change that would break a run in flight fails here, naming the history. Every workflow
 * type the worker registers must have at least one history.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';

import * as workflows from '../../workflows';
import { workflowBundle } from '../helpers/temporal';

const FIXTURES = path.join(__dirname, '..', 'fixtures');
/** The workflow id each history ran with (a history does not hold it), by file. */
const WORKFLOW_IDS = path.join(FIXTURES, 'histories', 'workflow-ids.json');

interface Recorded {
  /** The file, relative to test/fixtures. */
  file: string;
  workflowId: string;
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
  const ids = JSON.parse(await readFile(WORKFLOW_IDS, 'utf8')) as Record<string, string>;
  return Promise.all(
    files.map(async (full) => {
      const history = temporal.api.history.v1.History.decode(await readFile(full));
      const started = history.events[0]?.workflowExecutionStartedEventAttributes;
      const workflowType = started?.workflowType?.name;
      if (workflowType === undefined || workflowType === null)
        throw new Error(`${full}: its first event is not a workflow start`);
      const file = path.relative(FIXTURES, full);
      const workflowId = ids[file];
      if (workflowId === undefined)
        throw new Error(`${file}: its workflow id is missing from ${WORKFLOW_IDS}`);
      return { file, workflowId, workflowType, history };
    }),
  );
}

describe('every committed workflow history replays on today’s code', () => {
  it('replays each history without a non-determinism error, and every workflow type has one', async () => {
    const recorded = await committedHistories();
    // One replay worker per round; the runs of a continue-as-new chain share their workflow id,
    // so they go in different rounds.
    const rounds: Recorded[][] = [];
    for (const entry of recorded) {
      const round = rounds.find((r) => !r.some(({ workflowId }) => workflowId === entry.workflowId));
      if (round === undefined) rounds.push([entry]);
      else round.push(entry);
    }
    const outcomes: string[] = [];
    const bundle = await workflowBundle();
    for (const round of rounds) {
      for await (const result of Worker.runReplayHistories({ workflowBundle: bundle }, round)) {
        const { file } = round.find(({ workflowId }) => workflowId === result.workflowId)!;
        outcomes.push(`${file}: ${result.error === undefined ? 'replayed' : String(result.error)}`);
      }
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
