/**
 * The fault-injection matrix (matrix.ts) on a dev server against real local instances. `npm test`
 * runs the sample: one cell for every (workflow, fault) pair. `npm run test:faults` sets
 * DBOPS_FAULTS=all and runs every cell. DBOPS_FAULTS may also name cells by a text they contain
 * (`backup |`, `| cancel`), comma separated. The matrix is printed at the end; every cell must hold.
 */
import assert from 'node:assert/strict';

import {
  allCells,
  cellName,
  closeLab,
  formatMatrix,
  openLab,
  runCell,
  sampleCells,
  type CellResult,
  type Lab,
} from './matrix';

function selectedCells() {
  const selection = process.env.DBOPS_FAULTS;
  if (selection === undefined || selection === '') return sampleCells();
  if (selection === 'all') return allCells();
  const wanted = selection.split(',').map((part) => part.trim());
  return allCells().filter((cell) => wanted.some((part) => cellName(cell).includes(part)));
}

describe('fault matrix: every workflow survives every fault at its side-effecting activities (dev server, local instances)', function () {
  this.timeout(0);
  const cells = selectedCells();
  const results: CellResult[] = [];
  let lab: Lab | undefined;

  before(async () => {
    lab = await openLab();
  });
  after(async () => {
    if (results.length > 0) console.log(`\nfault matrix\n${formatMatrix(results)}`);
    await closeLab(lab);
  });

  for (const cell of cells) {
    it(cellName(cell), async () => {
      const result = await runCell(lab!, cell);
      results.push(result);
      assert.ok(result.held, `${result.problems.join('\n')}\n(${result.note})`);
    });
  }
});
