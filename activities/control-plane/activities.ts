/**
 * The ControlPlane as activities. Workflows call these (never the provider directly) and poll the
 * `describe*` ones with durable timers (workflows/lib/polling.ts). A typed error that retrying
 * cannot fix becomes a non-retryable ApplicationFailure carrying the error's name as its type, so
 * every workflow fails fast on it without listing types; TransientError stays retryable. A
 * BusyError (a condition to wait out, e.g. the instance is backing-up) stays retryable too, and is
 * logged and heartbeated first, so the Web UI shows what the activity waits for. Every call
 * heartbeats while it runs: with a heartbeat timeout, an attempt lost with its worker is retried
 * within seconds instead of after its start-to-close timeout.
 */
import { ApplicationFailure, heartbeat, log } from '@temporalio/activity';

import { BusyError, DbopsError } from '../../workflows/lib/errors';
import { heartbeatWhile } from '../heartbeat';
import type { ControlPlane } from './control-plane';

export function createControlPlaneActivities(controlPlane: ControlPlane) {
  return {
    describeInstance: failFast(controlPlane.describeInstance.bind(controlPlane)),
    listInstances: failFast(controlPlane.listInstances.bind(controlPlane)),
    deleteInstance: failFast(controlPlane.deleteInstance.bind(controlPlane)),
    createSnapshot: failFast(controlPlane.createSnapshot.bind(controlPlane)),
    describeSnapshot: failFast(controlPlane.describeSnapshot.bind(controlPlane)),
    listSnapshots: failFast(controlPlane.listSnapshots.bind(controlPlane)),
    deleteSnapshot: failFast(controlPlane.deleteSnapshot.bind(controlPlane)),
    snapshotUsers: failFast(controlPlane.snapshotUsers.bind(controlPlane)),
    restoreFromSnapshot: failFast(controlPlane.restoreFromSnapshot.bind(controlPlane)),
    restoreToPointInTime: failFast(controlPlane.restoreToPointInTime.bind(controlPlane)),
    startExport: failFast(controlPlane.startExport.bind(controlPlane)),
    describeExport: failFast(controlPlane.describeExport.bind(controlPlane)),
    describeRecoverability: failFast(controlPlane.describeRecoverability.bind(controlPlane)),
  };
}

function failFast<A extends unknown[], R>(operation: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args) => {
    try {
      return await heartbeatWhile(() => operation(...args));
    } catch (error) {
      if (error instanceof BusyError) {
        log.warn(error.message, { condition: error.providerCode });
        heartbeat(error.message);
      }
      if (error instanceof DbopsError && !error.retryable) {
        throw ApplicationFailure.nonRetryable(error.message, error.name);
      }
      throw error;
    }
  };
}
