/** The ControlPlane of the configured provider. */
import type { ProviderConfig } from '../config-types';
import { AwsRdsControlPlane, createAwsClients } from './aws-rds';
import type { ControlPlane } from './control-plane';
import { LocalControlPlane } from './local';

export function createControlPlane(config: ProviderConfig): ControlPlane {
  switch (config.provider) {
    case 'local':
      return new LocalControlPlane({
        stateDir: config.stateDir,
        backupMaxRate: config.localBackup?.maxRate,
        backupCheckpoint: config.localBackup?.checkpoint,
      });
    case 'aws': {
      const aws = config.aws;
      if (aws === undefined) throw new Error('provider aws without its aws configuration');
      return new AwsRdsControlPlane({
        ...createAwsClients({ region: aws.region, endpoint: aws.endpoint }),
        settings: aws.rds,
        exports: aws.exports,
        connectAs: { database: config.database.database, user: config.database.user },
      });
    }
  }
}
