/**
 * All activities, built from their dependencies (dependency injection: tests pass a throwaway
 * database, production the configured one). Workflows import the `Activities` TYPE only.
 */
import path from 'node:path';

import { projectRoot, type DatabaseConfig } from './config-types';
import { createControlPlaneActivities } from './control-plane/activities';
import type { ControlPlane } from './control-plane/control-plane';
import { createBackfillActivities } from './postgres/backfill';
import { BACKFILLS } from './postgres/backfills';
import { createChangeActivities } from './postgres/changes/activities';
import { CHANGES, changeBackfills } from './postgres/changes';
import type { Change } from './postgres/changes/definition';
import type { AnyBackfill } from './postgres/backfills/definition';
import type { DatabaseConnector } from './postgres/connect';
import { createDeployActivities, type RolloutHook } from './postgres/deploy';
import { createHealthActivities } from './postgres/health';
import { createMaintenanceActivities } from './postgres/maintenance';
import { instanceConnection } from './postgres/instance';
import { primaryOrInstance, replicaOrInstance } from './postgres/on-instance';
import { createPingActivities } from './postgres/ping';
import {
  createVectorIndexActivities,
  DEFAULT_VECTOR_INDEX_SETTINGS,
  type VectorIndexSettings,
} from './postgres/vector-index';
import { createRecallActivities } from './postgres/vector-recall';
import { createRehearsalActivities } from './postgres/rehearsal';
import { createRpoMeasureActivities } from './postgres/rpo-measure';
import { createRecoveryActivities } from './recovery/activities';
import { createFleetActivities } from './recovery/fleet';
import { createOrphanActivities } from './recovery/orphans';
import { createRetentionActivities } from './recovery/retention';
import type { RecoveryStorage } from './recovery/reports';

export interface ActivityDeps {
  database: DatabaseConfig;
  /** Where VACUUM FULL may run (RDS syntax); the RDS default window when absent. */
  maintenanceWindow?: string;
  /** The configured provider's instances, snapshots, restores and exports. */
  controlPlane: ControlPlane;
  /** How activities reach other instances (a restored DR copy): IAM + TLS on aws. */
  connector: DatabaseConnector;
  /** Where DR reports are written and exports go by default. */
  storage: RecoveryStorage;
  /** Schema migrations and their squawk rules; the repository's by default. */
  migrationsDir?: string;
  squawkConfig?: string;
  /** Rollout hooks a deploy may name (e.g. a `kubectl set image` command). */
  rolloutHooks?: Record<string, RolloutHook>;
  /**
   * The backfills a workflow may run by name; by default the repository's and those of `changes`
   * (`changeBackfills(changes)` gives them when both are set).
   */
  backfills?: Record<string, AnyBackfill>;
  /** The declared changes a workflow may run by name; the repository's by default. */
  changes?: Record<string, Change>;
  /** How much memory a vector index build may take; a quarter of four times shared_buffers by default. */
  vectorIndexes?: VectorIndexSettings;
}

export function createActivities(deps: ActivityDeps) {
  const withInstance = instanceConnection(deps.controlPlane, deps.connector);
  const onInstance = primaryOrInstance(deps.connector, withInstance);
  return {
    ...createPingActivities(deps.connector),
    ...createRpoMeasureActivities(deps.connector),
    ...createMaintenanceActivities(onInstance, deps.maintenanceWindow ?? 'sun:04:00-sun:05:00'),
    ...createHealthActivities(onInstance, replicaOrInstance(deps.connector, withInstance)),
    ...createVectorIndexActivities(onInstance, deps.vectorIndexes ?? DEFAULT_VECTOR_INDEX_SETTINGS),
    ...createRecallActivities(onInstance, replicaOrInstance(deps.connector, withInstance)),
    ...createControlPlaneActivities(deps.controlPlane),
    ...createRecoveryActivities(deps),
    ...createFleetActivities(deps),
    ...createOrphanActivities(deps.controlPlane),
    ...createRetentionActivities(deps.controlPlane),
    ...createDeployActivities({
      withInstance: instanceConnection(deps.controlPlane, deps.connector),
      migrationsDir: deps.migrationsDir ?? path.join(projectRoot, 'migrations'),
      squawkConfig: deps.squawkConfig ?? path.join(projectRoot, '.squawk.toml'),
      rolloutHooks: deps.rolloutHooks ?? {},
    }),
    ...createRehearsalActivities({
      withInstance: instanceConnection(deps.controlPlane, deps.connector),
      migrationsDir: deps.migrationsDir ?? path.join(projectRoot, 'migrations'),
    }),
    ...createBackfillActivities({
      withInstance: instanceConnection(deps.controlPlane, deps.connector),
      backfills: deps.backfills ?? { ...BACKFILLS, ...changeBackfills(deps.changes ?? CHANGES) },
    }),
    ...createChangeActivities({
      withInstance: instanceConnection(deps.controlPlane, deps.connector),
      squawkConfig: deps.squawkConfig ?? path.join(projectRoot, '.squawk.toml'),
      changes: deps.changes ?? CHANGES,
    }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
export type { PingResult } from './postgres/ping';
