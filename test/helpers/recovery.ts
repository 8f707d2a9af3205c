/**
 * The real stack of the recovery workflow suites: a Temporal dev server, the local provider on
 * real clusters in a temp state dir, one seeded source instance, and one worker for the suite.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';

import { createActivities } from '../../activities';
import type { Endpoint, InstanceDescription } from '../../activities/control-plane/control-plane';
import { LocalControlPlane } from '../../activities/control-plane/local';
import { seedDemoData, type SeedResult } from '../../workers/seed';
import { localActivityDeps } from './activity-deps';
import { createDevServerEnv, workflowBundle } from './temporal';

export interface RecoveryStack {
  env: TestWorkflowEnvironment;
  stateDir: string;
  plane: LocalControlPlane;
  taskQueue: string;
  source: { instanceId: string; endpoint: Endpoint; seeded: SeedResult };
  /** Instance ids that exist now, sorted. */
  instanceIds(): Promise<string[]>;
  teardown(): Promise<void>;
}

export async function startRecoveryStack(options: {
  name: string;
  sourceInstanceId: string;
  conversations: number;
  chunksPerConversation: number;
}): Promise<RecoveryStack> {
  const stateDir = await mkdtemp(path.join(os.tmpdir(), `dbops-${options.name}-`));
  await chmod(stateDir, 0o755); // the postgres user must reach the clusters inside
  const plane = new LocalControlPlane({ stateDir });
  const [env, endpoint] = await Promise.all([
    createDevServerEnv(),
    plane.ensureRunning(options.sourceInstanceId),
  ]);
  const seeded = await seedDemoData(endpoint, {
    conversations: options.conversations,
    chunksPerConversation: options.chunksPerConversation,
  });
  const taskQueue = `${options.name}-queue`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: createActivities(localActivityDeps(endpoint, stateDir)),
  });
  const running = worker.run();
  return {
    env,
    stateDir,
    plane,
    taskQueue,
    source: { instanceId: options.sourceInstanceId, endpoint, seeded },
    async instanceIds() {
      return (await plane.listInstances()).map((i) => i.instanceId).sort();
    },
    async teardown() {
      worker.shutdown();
      await running.catch(() => undefined);
      for (const instance of await plane.listInstances().catch(() => [])) {
        await plane.deleteInstance(instance.instanceId, { skipFinalSnapshot: true }).catch(() => undefined);
      }
      await env.teardown();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

/** Polls the provider until `predicate` holds (bounded: a hang fails the test, not the suite). */
export async function waitForInstances(
  plane: LocalControlPlane,
  predicate: (instances: InstanceDescription[]) => boolean,
  what: string,
): Promise<InstanceDescription[]> {
  for (let i = 0; i < 600; i++) {
    const instances = await plane.listInstances();
    if (predicate(instances)) return instances;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}
