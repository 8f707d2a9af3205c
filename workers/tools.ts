/** The binaries `infra/local/setup.sh` installs, linked under `.tools/` in the project. */
import { existsSync } from 'node:fs';
import path from 'node:path';

import { projectRoot } from '../activities/config-types';

const toolsDir = path.join(projectRoot, '.tools');

export const tools = {
  temporal: path.join(toolsDir, 'bin', 'temporal'),
  temporalServer: path.join(toolsDir, 'bin', 'temporal-server'),
  temporalSqlTool: path.join(toolsDir, 'bin', 'temporal-sql-tool'),
  /** The server's PostgreSQL schemas: `temporal/versioned` and `visibility/versioned`. */
  temporalSchema: path.join(toolsDir, 'temporal-schema'),
  temporalUiServer: path.join(toolsDir, 'bin', 'temporal-ui-server'),
  temporalTestServer: path.join(toolsDir, 'bin', 'temporal-test-server'),
  promtool: path.join(toolsDir, 'bin', 'promtool'),
  motoServer: path.join(toolsDir, 'venv', 'bin', 'moto_server'),
  checkov: path.join(toolsDir, 'venv', 'bin', 'checkov'),
} as const;

/** Returns the tool's path, or explains how to install it. */
export function requireTool(name: keyof typeof tools): string {
  const file = tools[name];
  if (!existsSync(file)) {
    throw new Error(
      `${name} is not installed (${path.relative(projectRoot, file)} is missing): run \`npm run setup\``,
    );
  }
  return file;
}
