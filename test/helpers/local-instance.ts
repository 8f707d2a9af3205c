/** A real local instance (the local provider, in a temp state dir) and activity deps aimed at it. */
import { chmod, cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'pg';

import type { ActivityDeps } from '../../activities';
import type { Endpoint } from '../../activities/control-plane/control-plane';
import { LocalControlPlane } from '../../activities/control-plane/local';
import { projectRoot } from '../../activities/config-types';
import { localActivityDeps } from './activity-deps';

export interface LocalInstance {
  instanceId: string;
  stateDir: string;
  plane: LocalControlPlane;
  endpoint: Endpoint;
  /** Activity deps whose control plane holds this instance. */
  deps: ActivityDeps;
  connect(): Promise<Client>;
  stop(): Promise<void>;
}

export async function startLocalInstance(
  instanceId: string,
  tags: Record<string, string> = {},
): Promise<LocalInstance> {
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'dbops-state-'));
  await chmod(stateDir, 0o755); // the postgres user must reach the clusters inside
  const plane = new LocalControlPlane({ stateDir });
  await plane.createInstance(instanceId, { tags });
  let endpoint: Endpoint | undefined;
  for (let i = 0; i < 1200 && endpoint === undefined; i++) {
    const description = await plane.describeInstance(instanceId);
    if (description.status === 'available') endpoint = description.endpoint;
    else if (description.status !== 'creating')
      throw new Error(`instance ${instanceId} is ${description.providerStatus}`);
    else await sleep(100);
  }
  if (endpoint === undefined) throw new Error(`instance ${instanceId} did not become available`);
  const clients: Client[] = [];
  const deps = { ...localActivityDeps({ ...endpoint }, stateDir), controlPlane: plane };
  return {
    instanceId,
    stateDir,
    plane,
    endpoint,
    deps,
    async connect() {
      const client = new Client({ ...endpoint });
      // A session the test terminates or a server it restarts fails this client's next query, not the test process.
      client.on('error', () => undefined);
      await client.connect();
      clients.push(client);
      return client;
    },
    async stop() {
      await Promise.allSettled(clients.map((client) => client.end()));
      await plane.deleteInstance(instanceId, { skipFinalSnapshot: true }).catch(() => undefined);
      for (const snapshot of await plane.listSnapshots(instanceId).catch(() => [])) {
        await plane.deleteSnapshot(snapshot.snapshotId).catch(() => undefined);
      }
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

/** The repository's migrations up to `last` (inclusive) plus `extra` files, in a temp `migrations/` dir. */
export async function migrationsDir(last: string, extra: Record<string, string> = {}): Promise<string> {
  const dir = path.join(await mkdtemp(path.join(os.tmpdir(), 'dbops-migrations-')), 'migrations');
  await cp(path.join(projectRoot, 'migrations'), dir, {
    recursive: true,
    filter: (source) => !source.endsWith('.sql') || path.basename(source, '.sql') <= last,
  });
  for (const [name, sql] of Object.entries(extra)) await writeFile(path.join(dir, name), sql);
  return dir;
}
