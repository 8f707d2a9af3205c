/**
 * The one line `npm start` prints for its DR test: what a user reads when the test passed, and
 * when it failed before it got anywhere (no snapshot, no RPO, no RTO) or at a check.
 */
import assert from 'node:assert/strict';

import { drTestOutcome } from '../../workers/demo';
import type { DrTestReport } from '../../workflows/lib/recovery';

const base: DrTestReport = {
  instanceId: 'mcp-demo-prod',
  workflowId: 'dr-test-mcp-demo-prod-20261201',
  ok: false,
  startedAt: '2026-12-01T10:39:45.000Z',
  finishedAt: '2026-12-01T10:39:47.000Z',
  snapshot: null,
  rpoSeconds: null,
  rtoSeconds: null,
  temporaryInstanceId: 'mcp-demo-prod-dr-test-20261201',
  temporaryInstanceDeleted: true,
  orphansRemoved: [],
  checks: [
    {
      name: 'cleanup',
      status: 'passed',
      detail: 'temporary instance mcp-demo-prod-dr-test-20261201 was never created',
    },
  ],
  error:
    'instance mcp-demo-prod has no available snapshot to test: take one with dbops backup --instance mcp-demo-prod',
  reportLocations: [],
};

describe("npm start's DR test outcome line", () => {
  it('a test that failed before restoring says why and leaves out what it never measured', () => {
    assert.equal(
      drTestOutcome(base),
      'DR test FAILED: instance mcp-demo-prod has no available snapshot to test: take one with dbops backup --instance mcp-demo-prod (no snapshot, 1 check)',
    );
  });

  it('a failed check is named with the first line of its detail', () => {
    const report: DrTestReport = {
      ...base,
      error: null,
      snapshot: {
        snapshotId: 'mcp-demo-prod-manual-20261201-103900',
        type: 'manual',
        createdAt: '2026-12-01T10:39:00.000Z',
        sizeBytes: 1,
      },
      rpoSeconds: 45,
      rtoSeconds: 3.2,
      checks: [
        { name: 'row-counts', status: 'failed', detail: 'conversations: 1499 rows, expected 1500\nmore' },
        { name: 'cleanup', status: 'passed', detail: 'deleted' },
      ],
    };
    assert.equal(
      drTestOutcome(report),
      'DR test FAILED: check row-counts failed: conversations: 1499 rows, expected 1500 (snapshot mcp-demo-prod-manual-20261201-103900, RPO 45 s, RTO 3.2 s, 2 checks)',
    );
    assert.equal(
      drTestOutcome({ ...report, ok: true, checks: report.checks.slice(1) }),
      'DR test passed: snapshot mcp-demo-prod-manual-20261201-103900, RPO 45 s, RTO 3.2 s, 1 check',
    );
  });
});
