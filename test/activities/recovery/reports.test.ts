import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { CreateBucketCommand, GetObjectCommand, S3Client } from '@aws-sdk/client-s3';

import {
  directoryReportStore,
  recoveryStorageFromConfig,
  renderDrReportMarkdown,
  s3ReportStore,
  writeDrReportFiles,
} from '../../../activities/recovery/reports';
import { loadConfig } from '../../../workers/config';
import type { DrTestReport } from '../../../workflows/lib/recovery';
import { startMoto, type MotoServer } from '../../helpers/moto';

const report: DrTestReport = {
  instanceId: 'mcp-demo-prod',
  workflowId: 'dr-test-mcp-demo-prod-20261201',
  ok: false,
  startedAt: '2026-12-01T06:00:00.000Z',
  finishedAt: '2026-12-01T06:20:00.000Z',
  snapshot: {
    snapshotId: 'rds:mcp-demo-prod-2026-12-01-03-10',
    type: 'automated',
    createdAt: '2026-12-01T03:10:00.000Z',
    sizeBytes: 1,
  },
  rpoSeconds: 10200,
  rtoSeconds: 1100,
  temporaryInstanceId: 'mcp-demo-prod-dr-test-20261201',
  temporaryInstanceDeleted: true,
  orphansRemoved: ['mcp-demo-prod-dr-test-20261101'],
  checks: [
    { name: 'row-counts', status: 'failed', detail: 'public.a: 1 rows | expected 2' },
    { name: 'vector-index:x', status: 'passed', detail: 'line one\nline two' },
  ],
  error: null,
  reportLocations: [],
};

describe('DR report stores and rendering', () => {
  it('renders the Markdown a person reads: verdict, RPO/RTO, orphans, one table row per check', () => {
    const markdown = renderDrReportMarkdown(report);
    assert.match(markdown, /^# DR test of mcp-demo-prod: FAILED\n/);
    assert.match(markdown, /RPO \(snapshot age when the test started\): 2\.8 h/);
    assert.match(markdown, /RTO \(restore requested to instance available\): 18\.3 min/);
    assert.match(markdown, /Orphans of earlier runs removed: `mcp-demo-prod-dr-test-20261101`/);
    assert.match(markdown, /^\| row-counts \| failed \| public\.a: 1 rows \\\| expected 2 \|$/m);
    assert.match(markdown, /^\| vector-index:x \| passed \| line one<br>line two \|$/m);
  });

  it('writes to a directory (local) and returns file:// locations', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'dbops-reports-'));
    try {
      const locations = await directoryReportStore(path.join(dir, 'reports')).write([
        { name: 'r.json', body: '{"ok":false}', contentType: 'application/json' },
      ]);
      assert.deepEqual(locations, [`file://${path.join(dir, 'reports', 'r.json')}`]);
      assert.equal(await readFile(fileURLToPath(locations[0]!), 'utf8'), '{"ok":false}');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  describe('on S3 (moto)', function () {
    this.timeout(60_000);
    let moto: MotoServer;
    let s3: S3Client;

    before(async () => {
      moto = await startMoto();
      s3 = new S3Client({
        region: moto.region,
        endpoint: moto.endpoint,
        credentials: moto.credentials,
        forcePathStyle: true,
      });
      await s3.send(new CreateBucketCommand({ Bucket: 'dbops-reports-test' }));
    });
    after(async () => {
      s3?.destroy();
      await moto?.stop();
    });

    it('puts each file under the prefix with its content type and returns s3:// locations', async () => {
      const locations = await s3ReportStore(s3, 'dbops-reports-test', 'reports').write([
        { name: 'r.md', body: '# DR test', contentType: 'text/markdown' },
      ]);
      assert.deepEqual(locations, ['s3://dbops-reports-test/reports/r.md']);
      const object = await s3.send(
        new GetObjectCommand({ Bucket: 'dbops-reports-test', Key: 'reports/r.md' }),
      );
      assert.equal(object.ContentType, 'text/markdown');
      assert.equal(await object.Body?.transformToString(), '# DR test');
    });

    it('lists the files under the prefix by name and reads them back, for the trend of the next DR report', async () => {
      const store = s3ReportStore(s3, 'dbops-reports-test', 'trend');
      await store.write([
        { name: 'a-dr-test-1.json', body: '{"n":1}', contentType: 'application/json' },
        { name: 'a-dr-test-2.json', body: '{"n":2}', contentType: 'application/json' },
        { name: 'b-dr-test-1.json', body: '{"n":3}', contentType: 'application/json' },
      ]);
      assert.deepEqual((await store.list('a-dr-test-')).sort(), ['a-dr-test-1.json', 'a-dr-test-2.json']);
      assert.equal(await store.read('a-dr-test-2.json'), '{"n":2}');
      const next = await writeDrReportFiles(store, { ...report, instanceId: 'a' });
      assert.match(next[1]!, /^s3:\/\/dbops-reports-test\/trend\/a-dr-test-20261201T060000Z\.md$/);
      assert.match(
        await store.read('a-dr-test-20261201T060000Z.md'),
        /could not be read \(left out\): `a-dr-test-2\.json`, `a-dr-test-1\.json`/,
      );
      assert.ok((await store.list('a-dr-test-')).includes('a-dr-test-20261201T060000Z-trend.svg'));
    });

    it('on aws without an exports bucket, refuses to write and names the variable to set', async () => {
      const config = loadConfig({
        DBOPS_PROVIDER: 'aws',
        AWS_REGION: moto.region,
        DBOPS_AWS_ENDPOINT: moto.endpoint,
        DBOPS_RDS_SUBNET_GROUP: 'g',
        DBOPS_RDS_SECURITY_GROUP_IDS: 'sg-12345678',
        DBOPS_RDS_PARAMETER_GROUP: 'p',
        PGSSLROOTCERT: 'ca.pem',
      });
      const storage = recoveryStorageFromConfig(config);
      assert.equal(storage.exportBucket, undefined);
      await assert.rejects(
        storage.reports.write([{ name: 'r.md', body: '', contentType: 'text/markdown' }]),
        {
          message: /DR reports go to the exports bucket: set DBOPS_EXPORT_BUCKET/,
        },
      );
    });
  });
});
