import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { directoryReportStore, writeDrReportFiles } from '../../../activities/recovery/reports';
import { requireTool } from '../../../workers/tools';
import type { DrTestReport } from '../../../workflows/lib/recovery';

const execFileAsync = promisify(execFile);
const GIB = 2 ** 30;

/** A monthly drill: `sizeGib` GiB restored in 60 s + 30 s per GiB (the line the forecast must find). */
function drill(month: number, sizeGib: number | null, overrides: Partial<DrTestReport> = {}): DrTestReport {
  const startedAt = new Date(Date.UTC(2025, month, 1, 6)).toISOString();
  return {
    instanceId: 'mcp-demo-prod',
    workflowId: `dr-test-mcp-demo-prod-${startedAt.slice(0, 10)}`,
    ok: true,
    startedAt,
    finishedAt: startedAt,
    snapshot:
      sizeGib === null
        ? null
        : { snapshotId: `snap-${month}`, type: 'automated', createdAt: startedAt, sizeBytes: sizeGib * GIB },
    rpoSeconds: 10800 + month,
    rtoSeconds: sizeGib === null ? 500 : 60 + 30 * sizeGib,
    temporaryInstanceId: 'mcp-demo-prod-dr-test-copy',
    temporaryInstanceDeleted: true,
    orphansRemoved: [],
    checks: [],
    error: null,
    reportLocations: [],
    ...overrides,
  };
}

/** The SVG parsed by a strict XML parser (Python's expat): root tag and what it holds. */
async function parseSvg(file: string) {
  const python = path.join(path.dirname(requireTool('motoServer')), 'python3');
  const script = [
    'import json, sys, xml.etree.ElementTree as ET',
    'root = ET.parse(sys.argv[1]).getroot()',
    'ns = "{http://www.w3.org/2000/svg}"',
    'print(json.dumps({"root": root.tag, "polylines": len(root.findall(ns + "polyline")),',
    '  "fills": [c.get("fill") for c in root.findall(ns + "circle")],',
    '  "title": root.find(ns + "title").text}))',
  ].join('\n');
  const { stdout } = await execFileAsync(python, ['-c', script, file]);
  return JSON.parse(stdout) as { root: string; polylines: number; fills: string[]; title: string };
}

describe('DR report trend and restore-time forecast (real report files in a temp dir)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'dbops-trend-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const markdownOf = async (locations: string[]) => readFile(fileURLToPath(locations[1]!), 'utf8');

  it('shows the last 12 drills read back from the earlier reports, a chart beside it, and the fitted forecast', async () => {
    const store = directoryReportStore(dir);
    // Fourteen monthly drills, each written as the DR test writes it (reading the ones before).
    // Month 9 failed its checks; month 11 was a point-in-time drill (no snapshot, so no size).
    let first: string | undefined;
    let locations: string[] = [];
    for (let month = 0; month < 14; month++) {
      if (month === 12)
        await writeFile(path.join(dir, 'mcp-demo-prod-dr-test-20251015T060000Z.json'), '{"ok":');
      const report =
        month === 9
          ? drill(month, 2 + month, { ok: false })
          : month === 11
            ? drill(month, null, {
                pointInTime: {
                  requested: 'random',
                  target: '2026-11-30T22:00:00.000Z',
                  window: { earliest: '2026-11-01T00:00:00.000Z', latest: '2026-12-01T05:00:00.000Z' },
                  newestHeartbeat: '2026-11-30T21:59:58.000Z',
                  dataWithinSeconds: 2,
                },
              })
            : drill(month, 2 + month);
      locations = await writeDrReportFiles(store, report);
      first ??= await markdownOf(locations);
    }
    assert.match(
      first!,
      /Not enough drills: 1 with both a snapshot size and an RTO, at least 2 are needed\./,
    );

    assert.deepEqual(
      locations.map((l) => path.basename(fileURLToPath(l))),
      ['mcp-demo-prod-dr-test-20260201T060000Z.json', 'mcp-demo-prod-dr-test-20260201T060000Z.md'],
    );
    const markdown = await markdownOf(locations);
    const rows = markdown.split('\n').filter((line) => /^\| 20\d\d-/.test(line));
    assert.deepEqual(
      rows.map((row) => row.split(' | ')[0]!.slice(2, 9)),
      [
        '2025-03',
        '2025-04',
        '2025-05',
        '2025-06',
        '2025-07',
        '2025-08',
        '2025-09',
        '2025-10',
        '2025-11',
        '2025-12',
        '2026-01',
        '2026-02',
      ],
      'the newest 12, oldest first',
    );
    assert.equal(rows[7], '| 2025-10-01T06:00:00.000Z | FAILED | `snap-9` | 6.5 min | 3.0 h | 11.0 GiB |');
    assert.equal(
      rows[9],
      '| 2025-12-01T06:00:00.000Z | passed | point in time (data within 2.0 s) | 8.3 min | 3.0 h | unknown |',
    );
    assert.match(markdown, /could not be read \(left out\): `mcp-demo-prod-dr-test-20251015T060000Z\.json`/);
    // Eleven drills with a size, all on RTO = 60 s + 30 s per GiB; this one restored 15 GiB.
    assert.match(
      markdown,
      /least-squares line of RTO against snapshot size over the 11 drills above with both, RTO ≈ 60\.0 s \+ 30\.0 s per GiB \(R² 1\.00\)\. Forecast for 15\.0 GiB \(this drill's snapshot\): about 8\.5 min\./,
    );

    const chart = /!\[RTO, RPO and snapshot size of the last 12 DR tests\]\(([^)]+)\)/.exec(markdown)![1]!;
    assert.equal(chart, 'mcp-demo-prod-dr-test-20260201T060000Z-trend.svg');
    assert.ok((await readdir(dir)).includes(chart), 'the chart is beside the Markdown');
    const svg = await parseSvg(path.join(dir, chart));
    assert.equal(svg.root, '{http://www.w3.org/2000/svg}svg');
    assert.equal(svg.title, 'RTO, RPO and snapshot size of the last 12 DR tests of mcp-demo-prod');
    // 12 RTO and 12 RPO points, 11 sizes; the failed drill red in each panel; the missing size breaks its line.
    assert.equal(svg.fills.length, 35);
    assert.equal(svg.fills.filter((fill) => fill === '#d62728').length, 3);
    assert.equal(svg.polylines, 4);
  });

  it('with drills of one size, forecasts their mean RTO; a point-in-time drill alone is not enough', async () => {
    const store = directoryReportStore(dir);
    const pitr = drill(0, null);
    assert.match(await markdownOf(await writeDrReportFiles(store, pitr)), /Not enough drills: 0 with both/);
    for (const [month, rto] of [
      [1, 100],
      [2, 110],
    ] as const) {
      await writeDrReportFiles(store, drill(month, 4, { rtoSeconds: rto }));
    }
    const markdown = await markdownOf(await writeDrReportFiles(store, drill(3, 4, { rtoSeconds: 120 })));
    assert.match(
      markdown,
      /All 3 drills with a size restored the same size, so no line can be fitted: at 4\.0 GiB \(this drill's snapshot\) the forecast is their mean RTO, 110\.0 s\./,
    );
  });
});
