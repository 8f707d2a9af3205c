/** The ControlPlane of the configured provider. */
import type { Config } from '../../workers/config';
import type { ControlPlane } from './control-plane';
import { LocalControlPlane } from './local';

export function createControlPlane(config: Pick<Config, 'provider' | 'stateDir'>): ControlPlane {
  switch (config.provider) {
    case 'local':
      return new LocalControlPlane({ stateDir: config.stateDir });
    case 'aws':
      throw new Error('the aws provider is not wired into createControlPlane yet');
  }
}
