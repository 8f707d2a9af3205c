import assert from 'node:assert/strict';

import { isInsideWindow, parseMaintenanceWindow } from '../../../workflows/lib/maintenance-window';

describe('maintenance window (RDS syntax, UTC)', () => {
  const sunday = parseMaintenanceWindow('sun:04:00-sun:05:00')!;
  const overMidnight = parseMaintenanceWindow('sat:23:30-sun:00:30')!;

  const cases: [string, typeof sunday, string, boolean][] = [
    ['the start minute', sunday, '2026-11-29T04:00:00Z', true],
    ['the last minute', sunday, '2026-11-29T04:59:59Z', true],
    ['the end minute (exclusive)', sunday, '2026-11-29T05:00:00Z', false],
    ['a minute before', sunday, '2026-11-29T03:59:00Z', false],
    ['the same hour on Monday', sunday, '2026-11-30T04:30:00Z', false],
    ['Saturday night in a window that wraps the week', overMidnight, '2026-11-28T23:45:00Z', true],
    ['Sunday just after midnight in that window', overMidnight, '2026-11-29T00:15:00Z', true],
    ['Sunday after that window', overMidnight, '2026-11-29T00:30:00Z', false],
  ];
  for (const [what, window, when, inside] of cases) {
    it(`${inside ? 'includes' : 'excludes'} ${what} (${when})`, () => {
      assert.equal(isInsideWindow(window, new Date(when)), inside);
    });
  }

  it('rejects windows that are not RDS syntax or too short', () => {
    for (const text of ['sun:4:00-sun:05:00', 'sun:04:00 sun:05:00', 'sun:04:00-sun:04:29', '']) {
      assert.equal(parseMaintenanceWindow(text), undefined, text);
    }
  });
});
