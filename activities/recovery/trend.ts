/**
 * The trend of the last DR tests of an instance, for its DR report: a Markdown table of their RTO,
 * RPO and snapshot size, a small SVG chart of the same, and a restore-time forecast (a
 * least-squares line of RTO against snapshot size over those drills). Pure: the reports are read
 * and the files written by reports.ts.
 *
 * The chart is a file of its own beside the Markdown, referenced as an image: GitHub (and most
 * Markdown viewers) strip `<svg>` written inline and do not show `data:` image URLs, but do show
 * an SVG file referenced by a relative path.
 */
import type { DrTestReport } from '../../workflows/lib/recovery';

/** How many drills the trend shows, the newest included. */
export const TREND_DRILLS = 12;

export interface Drill {
  startedAt: string;
  ok: boolean;
  /** Snapshot id, or null for a point-in-time restore. */
  snapshotId: string | null;
  rtoSeconds: number | null;
  rpoSeconds: number | null;
  sizeBytes: number | null;
  /** Point-in-time drills: how close to the target the copy's data reached. */
  dataWithinSeconds: number | null;
}

export interface Forecast {
  /** How many drills the fit used (those with both a size and an RTO). */
  drills: number;
  /** `rto ≈ interceptSeconds + secondsPerGib × size`; null when it cannot be fitted. */
  fit: { interceptSeconds: number; secondsPerGib: number; rSquared: number } | null;
  /** The size forecast for, and where it comes from. */
  sizeBytes: number | null;
  sizeFrom: string;
  /** The forecast RTO at `sizeBytes`; null when there is none. */
  rtoSeconds: number | null;
}

const GIB = 2 ** 30;

export function drillOf(report: DrTestReport): Drill {
  return {
    startedAt: report.startedAt,
    ok: report.ok,
    snapshotId: report.snapshot?.snapshotId ?? null,
    rtoSeconds: report.rtoSeconds,
    rpoSeconds: report.rpoSeconds,
    sizeBytes: report.snapshot?.sizeBytes ?? null,
    dataWithinSeconds: report.pointInTime?.dataWithinSeconds ?? null,
  };
}

/** The last `TREND_DRILLS` drills, oldest first. */
export function lastDrills(reports: DrTestReport[]): Drill[] {
  return reports
    .map(drillOf)
    .sort((a, b) => a.startedAt.localeCompare(b.startedAt))
    .slice(-TREND_DRILLS);
}

/**
 * Ordinary least squares of RTO (s) against snapshot size (GiB) over the drills that have both,
 * evaluated at the newest drill's size (the size of the database it restored).
 */
export function forecastRestoreTime(drills: Drill[]): Forecast {
  const points = drills
    .filter((d) => d.sizeBytes !== null && d.rtoSeconds !== null)
    .map((d) => ({ x: d.sizeBytes! / GIB, y: d.rtoSeconds!, startedAt: d.startedAt }));
  const sized = drills.filter((d) => d.sizeBytes !== null);
  const newest = drills.at(-1);
  const target = sized.at(-1);
  const sizeBytes = target?.sizeBytes ?? null;
  const sizeFrom =
    target === undefined
      ? 'no drill recorded a size'
      : target === newest
        ? "this drill's snapshot"
        : `the newest size recorded, by the drill of ${target.startedAt}`;
  if (points.length < 2 || sizeBytes === null) {
    return { drills: points.length, fit: null, sizeBytes, sizeFrom, rtoSeconds: null };
  }
  const n = points.length;
  const meanX = points.reduce((sum, p) => sum + p.x, 0) / n;
  const meanY = points.reduce((sum, p) => sum + p.y, 0) / n;
  const sxx = points.reduce((sum, p) => sum + (p.x - meanX) ** 2, 0);
  const sxy = points.reduce((sum, p) => sum + (p.x - meanX) * (p.y - meanY), 0);
  const syy = points.reduce((sum, p) => sum + (p.y - meanY) ** 2, 0);
  if (sxx === 0) {
    // Every drill restored the same size: no slope to fit; the mean RTO is the forecast there.
    return { drills: n, fit: null, sizeBytes, sizeFrom, rtoSeconds: meanY };
  }
  const secondsPerGib = sxy / sxx;
  const interceptSeconds = meanY - secondsPerGib * meanX;
  const rSquared = syy === 0 ? 1 : (sxy * sxy) / (sxx * syy);
  return {
    drills: n,
    fit: { interceptSeconds, secondsPerGib, rSquared },
    sizeBytes,
    sizeFrom,
    rtoSeconds: interceptSeconds + secondsPerGib * (sizeBytes / GIB),
  };
}

/** The trend section of the report: chart, table, forecast, and the reports that could not be read. */
export function renderTrendMarkdown(
  drills: Drill[],
  forecast: Forecast,
  chartFile: string | null,
  unreadable: string[],
): string {
  const lines = [`## Trend of the last ${drills.length} DR tests`, ''];
  if (chartFile !== null) {
    lines.push(`![RTO, RPO and snapshot size of the last ${drills.length} DR tests](${chartFile})`, '');
  }
  lines.push('| started | result | restored from | RTO | RPO | snapshot size |', '|---|---|---|---|---|---|');
  for (const d of drills) {
    const from =
      d.snapshotId !== null
        ? `\`${d.snapshotId}\``
        : `point in time${d.dataWithinSeconds === null ? '' : ` (data within ${formatSeconds(d.dataWithinSeconds)})`}`;
    lines.push(
      `| ${d.startedAt} | ${d.ok ? 'passed' : 'FAILED'} | ${from} | ${formatSeconds(d.rtoSeconds)} | ${formatSeconds(d.rpoSeconds)} | ${formatBytes(d.sizeBytes)} |`,
    );
  }
  if (unreadable.length > 0) {
    lines.push(
      '',
      `Earlier reports that could not be read (left out): ${unreadable.map((n) => `\`${n}\``).join(', ')}`,
    );
  }
  lines.push('', '### Restore-time forecast', '', forecastSentence(forecast));
  return `${lines.join('\n')}\n`;
}

function forecastSentence(f: Forecast): string {
  if (f.drills < 2) {
    return `Not enough drills: ${f.drills} with both a snapshot size and an RTO, at least 2 are needed.`;
  }
  const at = `${formatBytes(f.sizeBytes)} (${f.sizeFrom})`;
  if (f.fit === null) {
    return `All ${f.drills} drills with a size restored the same size, so no line can be fitted: at ${at} the forecast is their mean RTO, ${formatSeconds(f.rtoSeconds)}.`;
  }
  const { interceptSeconds, secondsPerGib, rSquared } = f.fit;
  const basis =
    `Basis: a least-squares line of RTO against snapshot size over the ${f.drills} drills above with both, ` +
    `RTO ≈ ${interceptSeconds.toFixed(1)} s + ${secondsPerGib.toFixed(1)} s per GiB (R² ${rSquared.toFixed(2)}).`;
  if (f.rtoSeconds === null || f.rtoSeconds <= 0) {
    return `${basis} It gives no positive time at ${at}: the drills' sizes or times do not support a forecast there.`;
  }
  return `${basis} Forecast for ${at}: about ${formatSeconds(f.rtoSeconds)}.`;
}

const WIDTH = 600;
const PANEL = 90;
const LEFT = 70;
const RIGHT = 20;

/**
 * RTO, RPO and snapshot size, one panel each with its own scale from 0, one point per drill
 * (oldest left; a failed drill's point is red, a value not recorded leaves a gap).
 */
export function renderTrendSvg(instanceId: string, drills: Drill[]): string {
  const panels: { title: string; values: (number | null)[]; format: (v: number) => string }[] = [
    { title: 'RTO', values: drills.map((d) => d.rtoSeconds), format: formatSeconds },
    { title: 'RPO', values: drills.map((d) => d.rpoSeconds), format: formatSeconds },
    { title: 'snapshot size', values: drills.map((d) => d.sizeBytes), format: formatBytes },
  ];
  const height = panels.length * PANEL + 30;
  const x = (i: number) =>
    drills.length === 1
      ? (LEFT + WIDTH - RIGHT) / 2
      : LEFT + (i * (WIDTH - LEFT - RIGHT)) / (drills.length - 1);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="11">`,
    `<title>${escapeXml(`RTO, RPO and snapshot size of the last ${drills.length} DR tests of ${instanceId}`)}</title>`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
  ];
  panels.forEach((panel, p) => {
    const top = 10 + p * PANEL + 16;
    const bottom = top + PANEL - 34;
    const max = Math.max(0, ...panel.values.filter((v): v is number => v !== null));
    const y = (v: number) => (max === 0 ? bottom : bottom - (v / max) * (bottom - top));
    out.push(
      `<text x="${LEFT}" y="${top - 6}" font-weight="bold">${escapeXml(panel.title)}</text>`,
      `<text x="${LEFT - 6}" y="${top + 4}" text-anchor="end">${escapeXml(panel.format(max))}</text>`,
      `<text x="${LEFT - 6}" y="${bottom + 4}" text-anchor="end">0</text>`,
      `<line x1="${LEFT}" y1="${bottom}" x2="${WIDTH - RIGHT}" y2="${bottom}" stroke="#999999"/>`,
    );
    // One polyline per run of recorded values: a missing value breaks the line.
    let run: string[] = [];
    const flush = () => {
      if (run.length > 1) {
        out.push(`<polyline points="${run.join(' ')}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>`);
      }
      run = [];
    };
    panel.values.forEach((value, i) => {
      if (value === null) return flush();
      run.push(`${x(i).toFixed(1)},${y(value).toFixed(1)}`);
    });
    flush();
    panel.values.forEach((value, i) => {
      if (value === null) return;
      const drill = drills[i]!;
      out.push(
        `<circle cx="${x(i).toFixed(1)}" cy="${y(value).toFixed(1)}" r="3" fill="${drill.ok ? '#1f77b4' : '#d62728'}">` +
          `<title>${escapeXml(`${drill.startedAt} ${drill.ok ? 'passed' : 'FAILED'}: ${panel.format(value)}`)}</title></circle>`,
      );
    });
  });
  const first = drills[0];
  const last = drills.at(-1);
  if (first !== undefined && last !== undefined) {
    out.push(
      `<text x="${LEFT}" y="${height - 8}">${escapeXml(first.startedAt.slice(0, 10))}</text>`,
      `<text x="${WIDTH - RIGHT}" y="${height - 8}" text-anchor="end">${escapeXml(last.startedAt.slice(0, 10))}</text>`,
    );
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function formatSeconds(seconds: number | null): string {
  if (seconds === null) return 'unknown';
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function formatBytes(bytes: number | null): string {
  if (bytes === null) return 'unknown';
  if (bytes < 2 ** 20) return `${(bytes / 2 ** 10).toFixed(1)} KiB`;
  if (bytes < GIB) return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  return `${(bytes / GIB).toFixed(1)} GiB`;
}
