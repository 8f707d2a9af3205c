/**
 * All activities, built from their dependencies (dependency injection: tests pass a throwaway
 * database, production the configured one). Workflows import the `Activities` TYPE only.
 */
import type { DatabaseConfig } from '../workers/config';
import { createPingActivities } from './postgres/ping';

export interface ActivityDeps {
  database: DatabaseConfig;
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createPingActivities(deps.database),
  };
}

export type Activities = ReturnType<typeof createActivities>;
export type { PingResult } from './postgres/ping';
