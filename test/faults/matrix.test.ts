/**
 * The fault-injection matrix (matrix.ts) on a dev server against real local instances. `npm test`
 * runs the sample: one cell for every (workflow, fault) pair. `npm run test:faults` sets
 * DBOPS_FAULTS=all and runs every cell. DBOPS_FAULTS may also pick cells by a text their name
 * contains (`backup |`, `| cancel`), comma separated. Cells run one after another, except worker
 * kills, which run side by side at the end (each waits out its activity's timeout). The matrix is
 * printed at the end; every cell must hold.
 */
import assert from 'node:assert/strict';

import {
  allCells,
  cellName,
  closeLab,
  formatMatrix,
  openLab,
  runCell,
  runLanes,
  sampleCells,
  type Cell,
  type CellResult,
  type Lab,
} from './matrix';

function selectedCells(): Cell[] {
  const selection = process.env.DBOPS_FAULTS;
  if (selection === undefined || selection === '') return sampleCells();
  if (selection === 'all') return allCells();
  const wanted = selection.split(',').map((part) => part.trim());
  return allCells().filter((cell) => wanted.some((part) => cellName(cell).includes(part)));
}

function assertHeld(result: CellResult | undefined): void {
  assert.ok(result !== undefined, 'the cell did not run');
  assert.ok(result.held, `${result.problems.join('\n')}\n(${result.note})`);
}

describe('fault matrix: every workflow survives every fault at its side-effecting activities (dev server, local instances)', function () {
  this.timeout(0);
  const cells = selectedCells();
  const kills = cells.filter((cell) => cell.fault === 'kill-worker');
  const results: CellResult[] = [];
  let lab: Lab | undefined;

  before(async () => {
    lab = await openLab(cells);
  });
  after(async () => {
    if (results.length > 0) console.log(`\nfault matrix\n${formatMatrix(results)}`);
    await closeLab(
      lab,
      results.some((result) => !result.held),
    );
  });

  for (const cell of cells.filter((c) => c.fault !== 'kill-worker')) {
    it(cellName(cell), async () => {
      const result = await runCell(lab!, cell);
      results.push(result);
      assertHeld(result);
    });
  }

  describe('worker kills, side by side (one lane per workflow)', () => {
    const killed = new Map<Cell, CellResult>();
    before(async () => {
      for (const result of await runLanes(lab!, kills)) {
        killed.set(result.cell, result);
        results.push(result);
      }
    });
    for (const cell of kills) {
      it(cellName(cell), () => assertHeld(killed.get(cell)));
    }
  });
});
