/**
 * Where recovery workflows keep what they produce outside Temporal: DR test reports (JSON and
 * Markdown) and the default export destination. Local: a directory under the state directory.
 * aws: the exports bucket in S3 (the DR report is evidence for audits: it outlives the history).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';

import type { ProviderConfig } from '../config-types';
import type { DrTestReport } from '../../workflows/lib/recovery';
import { createAwsClients } from '../control-plane/aws-rds';

export interface ReportStore {
  /** Stores the files; returns where each went (`file://…` or `s3://…`). */
  write(files: { name: string; body: string; contentType: string }[]): Promise<string[]>;
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
const unconfiguredReportStore: ReportStore = {
  write: () =>
    Promise.reject(
      new Error(
        'DR reports go to the exports bucket: set DBOPS_EXPORT_BUCKET (and the other export variables)',
      ),
    ),
};

/** The report as a person reads it. */
export function renderDrReportMarkdown(report: DrTestReport): string {
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
  return `${lines.join('\n')}\n`;
}

function formatSeconds(seconds: number | null): string {
  if (seconds === null) return 'unknown';
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}
