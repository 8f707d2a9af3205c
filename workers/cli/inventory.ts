/**
 * `dbops instances` and `dbops snapshots`: what the configured provider has, read straight from
 * its ControlPlane (no Temporal server needed).
 */
import { createControlPlane } from '../../activities/control-plane';
import type { InstanceDescription, SnapshotDescription } from '../../activities/control-plane/control-plane';
import { loadConfig } from '../config';
import { parse, print, UsageError, type CommandGroup } from './common';

export const inventory: CommandGroup = {
  usage: `  instances [--json]                 instances with their status and endpoint
  snapshots --instance ID [--json]   snapshots of an instance, newest first`,
  commands: { instances, snapshots },
};

async function instances(args: string[]): Promise<void> {
  const { json } = parse('instances', args, { json: { type: 'boolean' } });
  const list: InstanceDescription[] = await createControlPlane(loadConfig()).listInstances();
  print(json, list, [
    ['INSTANCE', 'STATUS', 'ENDPOINT', 'ENGINE', 'LATEST RESTORABLE'],
    ...list.map((i) => [
      i.instanceId,
      i.status,
      i.endpoint ? `${i.endpoint.user}@${i.endpoint.host}:${i.endpoint.port}/${i.endpoint.database}` : '-',
      i.engineVersion,
      i.latestRestorableTime ?? '-',
    ]),
  ]);
}

async function snapshots(args: string[]): Promise<void> {
  const { json, instance } = parse('snapshots', args, {
    json: { type: 'boolean' },
    instance: { type: 'string' },
  });
  if (instance === undefined) throw new UsageError('dbops snapshots: --instance ID is required');
  const list: SnapshotDescription[] = await createControlPlane(loadConfig()).listSnapshots(instance);
  print(json, list, [
    ['SNAPSHOT', 'TYPE', 'STATUS', 'CREATED', 'SIZE'],
    ...list.map((s) => [
      s.snapshotId,
      s.type,
      s.status,
      s.createdAt ?? '-',
      s.sizeBytes === undefined ? '-' : `${(s.sizeBytes / 1024 / 1024).toFixed(1)} MiB`,
    ]),
  ]);
}
