/**
 * Where recovery workflows keep what they produce outside Temporal: DR test reports (JSON and
 * Markdown, with the trend of the last drills read back from the earlier reports' JSON) and the
 * default export destination. Local: a directory under the state directory. aws: the exports
 * bucket in S3 (the DR report is evidence for audits: it outlives the history).
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';

import type { ProviderConfig } from '../config-types';
import type { DrTestReport } from '../../workflows/lib/recovery';
import { createAwsClients } from '../control-plane/aws-rds';
import {
  TREND_DRILLS,
  forecastRestoreTime,
  formatSeconds,
  lastDrills,
  renderTrendMarkdown,
  renderTrendSvg,
} from './trend';

export interface ReportStore {
  /** Stores the files; returns where each went (`file://…` or `s3://…`). */
  write(files: { name: string; body: string; contentType: string }[]): Promise<string[]>;
  /** The names of the stored files that start with `prefix`. */
  list(prefix: string): Promise<string[]>;
  read(name: string): Promise<string>;
}

export interface RecoveryStorage {
  reports: ReportStore;
  /** Where `backup` exports go when its input names no bucket; undefined: not configured. */
  exportBucket: string | undefined;
}

export function directoryReportStore(dir: string): ReportStore {
  return {
    async write(files) {
      await mkdir(dir, { recursive: true });
      const locations: string[] = [];
      for (const file of files) {
        const target = path.join(dir, file.name);
        await writeFile(target, file.body);
        locations.push(`file://${target}`);
      }
      return locations;
    },
    async list(prefix) {
      const names = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return [];
        throw error;
      });
      return names.filter((name) => name.startsWith(prefix));
    },
    read: (name) => readFile(path.join(dir, name), 'utf8'),
  };
}

export function s3ReportStore(s3: S3Client, bucket: string, prefix: string): ReportStore {
  return {
    async write(files) {
      const locations: string[] = [];
      for (const file of files) {
        const key = `${prefix}/${file.name}`;
        await s3.send(
          new PutObjectCommand({ Bucket: bucket, Key: key, Body: file.body, ContentType: file.contentType }),
        );
        locations.push(`s3://${bucket}/${key}`);
      }
      return locations;
    },
    async list(namePrefix) {
      const names: string[] = [];
      let token: string | undefined;
      do {
        const page = await s3.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: `${prefix}/${namePrefix}`,
            ContinuationToken: token,
          }),
        );
        for (const object of page.Contents ?? []) names.push(object.Key!.slice(prefix.length + 1));
        token = page.NextContinuationToken;
      } while (token !== undefined);
      return names;
    },
    async read(name) {
      const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}/${name}` }));
      return object.Body!.transformToString();
    },
  };
}

/** The bucket name the local provider's exports use by default (a directory under the state dir). */
export const LOCAL_EXPORT_BUCKET = 'dbops-exports';

export function recoveryStorageFromConfig(
  config: Pick<ProviderConfig, 'provider' | 'stateDir' | 'aws'>,
): RecoveryStorage {
  const aws = config.aws;
  if (config.provider === 'local' || aws === undefined) {
    return {
      reports: directoryReportStore(path.join(config.stateDir, 'reports')),
      exportBucket: LOCAL_EXPORT_BUCKET,
    };
  }
  const bucket = aws.exports?.bucket;
  return {
    reports:
      bucket === undefined
        ? unconfiguredReportStore
        : s3ReportStore(
            createAwsClients({ region: aws.region, endpoint: aws.endpoint }).s3,
            bucket,
            'reports',
          ),
    exportBucket: bucket,
  };
}

/** aws without an exports bucket: the report is still returned and logged, but not stored. */
const unconfigured = () =>
  Promise.reject(
    new Error(
      'DR reports go to the exports bucket: set DBOPS_EXPORT_BUCKET (and the other export variables)',
    ),
  );
const unconfiguredReportStore: ReportStore = { write: unconfigured, list: unconfigured, read: unconfigured };

/**
 * Writes `<instance>-dr-test-<stamp>.json` and `.md`, and the trend chart `…-trend.svg` the
 * Markdown shows (not among the returned locations: it belongs to the Markdown). The trend is the
 * last drills of the instance: this one and the earlier reports' JSON in the same store; one that
 * cannot be read is named in the report, not fatal.
 */
export async function writeDrReportFiles(store: ReportStore, report: DrTestReport): Promise<string[]> {
  const name = `${report.instanceId}-dr-test-${report.startedAt.replace(/[-:]/g, '').replace(/\.\d+/, '')}`;
  const earlier = await readEarlierReports(store, report, `${name}.json`);
  const drills = lastDrills([...earlier.reports, report]);
  const chart = `${name}-trend.svg`;
  await store.write([
    { name: chart, body: renderTrendSvg(report.instanceId, drills), contentType: 'image/svg+xml' },
  ]);
  const trend = renderTrendMarkdown(drills, forecastRestoreTime(drills), chart, earlier.unreadable);
  return store.write([
    { name: `${name}.json`, body: `${JSON.stringify(report, null, 2)}\n`, contentType: 'application/json' },
    { name: `${name}.md`, body: renderDrReportMarkdown(report, trend), contentType: 'text/markdown' },
  ]);
}

/** The newest earlier reports of the instance (started before `report`), at most enough for the trend. */
async function readEarlierReports(
  store: ReportStore,
  report: DrTestReport,
  ownName: string,
): Promise<{ reports: DrTestReport[]; unreadable: string[] }> {
  const names = (await store.list(`${report.instanceId}-dr-test-`))
    .filter((name) => name.endsWith('.json') && name !== ownName)
    .sort();
  const reports: DrTestReport[] = [];
  const unreadable: string[] = [];
  // Names sort by start time (the stamp); read from the newest until the trend is full.
  for (const name of names.reverse()) {
    if (reports.length >= TREND_DRILLS - 1) break;
    const parsed = await store
      .read(name)
      .then((body): unknown => JSON.parse(body))
      .catch(() => undefined);
    if (!isReport(parsed, report.instanceId)) unreadable.push(name);
    else if (parsed.startedAt < report.startedAt) reports.push(parsed);
  }
  return { reports, unreadable };
}

function isReport(value: unknown, instanceId: string): value is DrTestReport {
  if (typeof value !== 'object' || value === null) return false;
  const r = value as Partial<Record<keyof DrTestReport, unknown>>;
  const secondsOrNull = (v: unknown) => v === null || (typeof v === 'number' && Number.isFinite(v));
  return (
    r.instanceId === instanceId &&
    typeof r.startedAt === 'string' &&
    typeof r.ok === 'boolean' &&
    secondsOrNull(r.rtoSeconds) &&
    secondsOrNull(r.rpoSeconds) &&
    (r.snapshot === null || (typeof r.snapshot === 'object' && r.snapshot !== undefined))
  );
}

/** The report as a person reads it; `trend`: the Markdown of the last drills, appended. */
export function renderDrReportMarkdown(report: DrTestReport, trend?: string): string {
  const lines = [
    `# DR test of ${report.instanceId}: ${report.ok ? 'PASSED' : 'FAILED'}`,
    '',
    `- Workflow: \`${report.workflowId}\``,
    `- Started: ${report.startedAt}, finished: ${report.finishedAt}`,
    `- Snapshot: \`${report.snapshot?.snapshotId ?? 'none'}\`` +
      (report.snapshot
        ? ` (${report.snapshot.type}, taken ${report.snapshot.createdAt ?? 'at an unknown time'})`
        : ''),
    `- RPO (snapshot age when the test started): ${formatSeconds(report.rpoSeconds)}`,
    `- RTO (restore requested to instance available): ${formatSeconds(report.rtoSeconds)}`,
    ...(report.pointInTime === undefined
      ? []
      : [
          `- Point in time: ${report.pointInTime.target} (${report.pointInTime.requested === 'random' ? 'chosen at random' : 'requested'} in the restorable window ${report.pointInTime.window.earliest} to ${report.pointInTime.window.latest}): ` +
            (report.pointInTime.dataWithinSeconds === null
              ? 'RPO not measured (no heartbeat on the copy)'
              : `data to within ${formatSeconds(report.pointInTime.dataWithinSeconds)} of the target (newest heartbeat ${report.pointInTime.newestHeartbeat})`),
        ]),
    `- Temporary instance: \`${report.temporaryInstanceId}\` (${report.temporaryInstanceDeleted ? 'deleted' : 'NOT deleted'})`,
  ];
  if (report.orphansRemoved.length > 0) {
    lines.push(
      `- Orphans of earlier runs removed: ${report.orphansRemoved.map((id) => `\`${id}\``).join(', ')}`,
    );
  }
  if (report.error !== null) lines.push(`- Error: ${report.error}`);
  lines.push('', '| check | result | detail |', '|---|---|---|');
  for (const check of report.checks) {
    const detail = check.detail.replace(/\|/g, '\\|').replace(/\n/g, '<br>');
    lines.push(`| ${check.name} | ${check.status} | ${detail} |`);
  }
  if (trend !== undefined) lines.push('', trend.trimEnd());
  return `${lines.join('\n')}\n`;
}
