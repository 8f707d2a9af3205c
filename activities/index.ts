/**
 * All activities, built from their dependencies (dependency injection: tests pass a throwaway
 * database, production the configured one). Workflows import the `Activities` TYPE only.
 */
import type { DatabaseConfig } from '../workers/config';
import { createHealthActivities } from './postgres/health';
import { createMaintenanceActivities } from './postgres/maintenance';
import { createPingActivities } from './postgres/ping';

export interface ActivityDeps {
  database: DatabaseConfig;
  /** Where VACUUM FULL may run (RDS syntax); the RDS default window when absent. */
  maintenanceWindow?: string;
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createPingActivities(deps.database),
    ...createMaintenanceActivities(deps.database, deps.maintenanceWindow ?? 'sun:04:00-sun:05:00'),
    ...createHealthActivities(deps.database),
  };
}

export type Activities = ReturnType<typeof createActivities>;
export type { PingResult } from './postgres/ping';
