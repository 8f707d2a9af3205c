/**
 * The ControlPlane contract: the same assertions against both providers, `local` (real PostgreSQL
 * clusters) and `aws` (RDS and S3 on moto). Where their semantics differ by nature (moto makes
 * everything available at once, ignores RestoreTime, and writes no export files) the provider
 * suites (local.test.ts, aws-rds.test.ts) cover it.
 */
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { AwsRdsControlPlane, createAwsClients } from '../../../activities/control-plane/aws-rds';
import type {
  ControlPlane,
  ExportDescription,
  InstanceDescription,
  SnapshotDescription,
} from '../../../activities/control-plane/control-plane';
import { LocalControlPlane } from '../../../activities/control-plane/local';
import {
  AlreadyExistsError,
  InvalidInputError,
  NotFoundError,
  RestoreTimeOutOfRangeError,
} from '../../../workflows/lib/errors';
import { startMoto } from '../../helpers/moto';
import { createRdsNetwork, rdsTestSettings } from '../../helpers/moto-rds';

interface Subject {
  plane: ControlPlane;
  stop(): Promise<void>;
}

async function localSubject(): Promise<Subject> {
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'dbops-contract-'));
  await chmod(stateDir, 0o755); // the postgres user must reach the clusters inside
  const plane = new LocalControlPlane({ stateDir });
  return {
    plane,
    async stop() {
      for (const instance of await plane.listInstances()) {
        await plane.deleteInstance(instance.instanceId, { skipFinalSnapshot: true });
      }
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

async function awsSubject(): Promise<Subject> {
  const moto = await startMoto();
  const clients = createAwsClients({
    region: moto.region,
    endpoint: moto.endpoint,
    credentials: moto.credentials,
  });
  await createRdsNetwork(moto, { subnetGroup: 'db', parameterGroup: 'pg15' });
  const plane = new AwsRdsControlPlane({
    ...clients,
    settings: rdsTestSettings({ subnetGroup: 'db', parameterGroup: 'pg15' }),
    exports: {
      bucket: 'mcp-demo-backups',
      iamRoleArn: 'arn:aws:iam::123456789012:role/rds-export-role',
      kmsKeyId: 'arn:aws:kms:us-east-1:123456789012:key/0a1b2c3d',
    },
    connectAs: { database: 'mcp_db', user: 'dbops' },
  });
  return {
    plane,
    async stop() {
      clients.rds.destroy();
      clients.s3.destroy();
      await moto.stop();
    },
  };
}

/** Polls `describe` while `transitional` holds, as a workflow does (bounded: a hang fails the test). */
async function poll<T>(describe: () => Promise<T>, transitional: (d: T) => boolean): Promise<T> {
  for (let i = 0; i < 1200; i++) {
    const description = await describe();
    if (!transitional(description)) return description;
    await sleep(100);
  }
  throw new Error('still in a transitional state after 1200 polls');
}

const instanceSettled = (plane: ControlPlane, id: string) =>
  poll<InstanceDescription>(
    () => plane.describeInstance(id),
    (d) => d.status === 'creating' || d.status === 'modifying' || d.status === 'backing-up',
  );
const snapshotSettled = (plane: ControlPlane, id: string) =>
  poll<SnapshotDescription>(
    () => plane.describeSnapshot(id),
    (d) => d.status === 'creating',
  );
const exportSettled = (plane: ControlPlane, id: string) =>
  poll<ExportDescription>(
    () => plane.describeExport(id),
    (d) => d.status === 'starting' || d.status === 'in-progress',
  );

/** Polls until describing the instance says NotFound. */
async function instanceGone(plane: ControlPlane, id: string): Promise<void> {
  await poll(
    () =>
      plane.describeInstance(id).then(
        () => false,
        (error: unknown) => {
          if (error instanceof NotFoundError) return true;
          throw error;
        },
      ),
    (gone) => !gone,
  );
}

const subjects: [string, () => Promise<Subject>][] = [
  ['local (real PostgreSQL clusters)', localSubject],
  ['aws (RDS and S3 on moto; moto makes everything available at once)', awsSubject],
];

/** `make` runs once, at the first call; later calls share its result. */
function once<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => (made ??= make());
}

// Each test sets up what it needs: the source and its first manual snapshot are made once, by
// whichever test asks first; an instance a test deletes is one it restored itself.
for (const [name, start] of subjects) {
  describe(`ControlPlane contract: ${name}`, () => {
    let subject: Subject;
    let plane: ControlPlane;
    let source: () => Promise<InstanceDescription>;
    let snapshot: () => Promise<SnapshotDescription>;

    before(async () => {
      subject = await start();
      plane = subject.plane;
      await plane.createInstance('contract-src', { tags: { Role: 'primary' } });
      source = once(() => instanceSettled(plane, 'contract-src'));
      snapshot = once(async () => {
        await source();
        await plane.createSnapshot('contract-src', 'contract-snap-1', { Type: 'Manual' });
        return snapshotSettled(plane, 'contract-snap-1');
      });
    });
    after(async () => {
      await subject?.stop();
    });

    it('creates an instance that settles to available with an endpoint and its tags', async () => {
      const instance = await source();
      assert.equal(instance.status, 'available', instance.providerStatus);
      assert.equal(instance.instanceId, 'contract-src');
      assert.ok(instance.endpoint?.host && instance.endpoint.port > 0);
      assert.match(instance.engineVersion, /^15\./);
      assert.equal(instance.tags.Role, 'primary');
      assert.ok((await plane.listInstances()).some((i) => i.instanceId === 'contract-src'));
    });

    it('snapshots with tags; the snapshot settles to available and is listed newest first', async () => {
      const settled = await snapshot();
      assert.equal(settled.status, 'available');
      assert.equal(settled.type, 'manual');
      assert.equal(settled.instanceId, 'contract-src');
      assert.equal(settled.tags.Type, 'Manual');
      const listed = await plane.listSnapshots('contract-src');
      assert.equal(listed[0]?.snapshotId, 'contract-snap-1');
      assert.ok(
        listed.some((s) => s.type === 'automated'),
        'the automated backup is listed too',
      );
      const times = listed.map((s) => Date.parse(s.createdAt!));
      assert.deepEqual(
        times,
        [...times].sort((a, b) => b - a),
      );
    });

    it('refuses a duplicate snapshot id with AlreadyExistsError', async () => {
      await snapshot();
      await assert.rejects(plane.createSnapshot('contract-src', 'contract-snap-1'), AlreadyExistsError);
    });

    it('answers NotFoundError for an unknown instance, snapshot and export', async () => {
      await assert.rejects(plane.describeInstance('contract-missing'), NotFoundError);
      await assert.rejects(plane.createSnapshot('contract-missing', 'contract-snap-x'), NotFoundError);
      await assert.rejects(plane.describeSnapshot('contract-missing'), NotFoundError);
      await assert.rejects(plane.describeExport('contract-missing'), NotFoundError);
    });

    it('refuses malformed identifiers with InvalidInputError', async () => {
      await assert.rejects(plane.describeInstance('contract--src'), InvalidInputError);
      await assert.rejects(plane.createSnapshot('contract-src', 'snap_1'), InvalidInputError);
      await assert.rejects(plane.restoreFromSnapshot('contract-snap-1', '9-restored'), InvalidInputError);
    });

    it('restores a snapshot as a new instance that settles to available, with its tags', async () => {
      await snapshot();
      await plane.restoreFromSnapshot('contract-snap-1', 'contract-from-snap', { Purpose: 'dr-test' });
      const restored = await instanceSettled(plane, 'contract-from-snap');
      assert.equal(restored.status, 'available', restored.providerStatus);
      assert.equal(restored.tags.Purpose, 'dr-test');
      assert.equal(
        (await plane.describeInstance('contract-src')).status,
        'available',
        'the source is untouched',
      );
    });

    it('restores to the latest restorable time as a new instance', async () => {
      await source();
      await plane.restoreToPointInTime('contract-src', 'contract-latest', 'latest');
      assert.equal((await instanceSettled(plane, 'contract-latest')).status, 'available');
    });

    it('refuses a restore time after the latest restorable time with RestoreTimeOutOfRangeError', async () => {
      await source();
      const later = new Date(Date.now() + 3_600_000).toISOString();
      await assert.rejects(
        plane.restoreToPointInTime('contract-src', 'contract-late', { time: later }),
        RestoreTimeOutOfRangeError,
      );
      await assert.rejects(plane.describeInstance('contract-late'), NotFoundError);
    });

    it('refuses a restore onto an existing instance id with AlreadyExistsError', async () => {
      await snapshot();
      await assert.rejects(plane.restoreFromSnapshot('contract-snap-1', 'contract-src'), AlreadyExistsError);
    });

    it('exports a snapshot; the export settles to complete and names its snapshot', async () => {
      await snapshot();
      await plane.startExport('contract-export-1', 'contract-snap-1', {
        bucket: 'mcp-demo-backups',
        prefix: 'manual-backups/contract',
      });
      const done = await exportSettled(plane, 'contract-export-1');
      assert.equal(done.status, 'complete', done.failureCause);
      assert.equal(done.snapshotId, 'contract-snap-1');
      assert.match(done.destination, /mcp-demo-backups/);
    });

    it('refuses to delete without a final snapshot id unless told to skip it', async () => {
      await source();
      await assert.rejects(
        plane.deleteInstance('contract-src', { skipFinalSnapshot: false }),
        InvalidInputError,
      );
      assert.equal((await plane.describeInstance('contract-src')).status, 'available');
    });

    it('deletes a temporary instance without a final snapshot until it is gone; deleting again succeeds', async () => {
      await snapshot();
      await plane.restoreFromSnapshot('contract-snap-1', 'contract-temp');
      await instanceSettled(plane, 'contract-temp');
      await plane.deleteInstance('contract-temp', { skipFinalSnapshot: true });
      await instanceGone(plane, 'contract-temp');
      await plane.deleteInstance('contract-temp', { skipFinalSnapshot: true });
    });

    it('deletes an instance after a final snapshot, which becomes available', async () => {
      await snapshot();
      await plane.restoreFromSnapshot('contract-snap-1', 'contract-kept');
      await instanceSettled(plane, 'contract-kept');
      await plane.deleteInstance('contract-kept', {
        skipFinalSnapshot: false,
        finalSnapshotId: 'contract-kept-final',
      });
      await instanceGone(plane, 'contract-kept');
      const final = await snapshotSettled(plane, 'contract-kept-final');
      assert.equal(final.status, 'available');
      assert.equal(final.instanceId, 'contract-kept');
    });

    it('deletes a manual snapshot; it is then NotFound', async () => {
      await source();
      await plane.createSnapshot('contract-src', 'contract-snap-2');
      await snapshotSettled(plane, 'contract-snap-2');
      await plane.deleteSnapshot('contract-snap-2');
      await assert.rejects(plane.describeSnapshot('contract-snap-2'), NotFoundError);
      await assert.rejects(plane.deleteSnapshot('contract-snap-2'), NotFoundError);
    });
  });
}
