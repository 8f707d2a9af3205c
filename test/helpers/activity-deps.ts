/** Activity dependencies for tests: a database, the local provider in a state dir, reports beside it. */
import os from 'node:os';
import path from 'node:path';

import type { ActivityDeps } from '../../activities';
import { LocalControlPlane } from '../../activities/control-plane/local';
import { createDatabaseConnector } from '../../activities/postgres/connect';
import { LOCAL_EXPORT_BUCKET, directoryReportStore } from '../../activities/recovery/reports';
import type { DatabaseConfig } from '../../activities/config-types';

/**
 * `stateDir`: where the local provider keeps its instances (suites that restore pass a temp dir;
 * the others never reach the provider, so nothing is written under the default).
 */
export function localActivityDeps(
  database: DatabaseConfig,
  stateDir = path.join(os.tmpdir(), 'dbops-test-state'),
): ActivityDeps {
  return {
    database,
    controlPlane: new LocalControlPlane({ stateDir }),
    connector: createDatabaseConnector({ primary: database }),
    storage: {
      reports: directoryReportStore(path.join(stateDir, 'reports')),
      exportBucket: LOCAL_EXPORT_BUCKET,
    },
  };
}
