/**
 * All activities, built from their dependencies (dependency injection: tests pass a throwaway
 * database, production the configured one). Workflows import the `Activities` TYPE only.
 */
import type { DatabaseConfig } from '../workers/config';
import { createControlPlaneActivities } from './control-plane/activities';
import type { ControlPlane } from './control-plane/control-plane';
import type { DatabaseConnector } from './postgres/connect';
import { createHealthActivities } from './postgres/health';
import { createMaintenanceActivities } from './postgres/maintenance';
import { createPingActivities } from './postgres/ping';
import { createRecoveryActivities } from './recovery/activities';
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
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createPingActivities(deps.database),
    ...createMaintenanceActivities(deps.database, deps.maintenanceWindow ?? 'sun:04:00-sun:05:00'),
    ...createHealthActivities(deps.database),
    ...createControlPlaneActivities(deps.controlPlane),
    ...createRecoveryActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
export type { PingResult } from './postgres/ping';
