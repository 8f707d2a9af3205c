import eslint from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

// Workflow code is replayed deterministically in a sandbox: it may import activity TYPES,
// never Node built-ins or activity implementations.
const nodeBuiltins = builtinModules.flatMap((name) => [name, `node:${name}`]);

// Layers: workers/ (processes, CLI, environment) build on activities/, which build on the pure
// helpers in workflows/lib. Nothing below workers/ imports from it, not even a type.
const noWorkers = {
  group: ['**/workers', '**/workers/**'],
  message:
    'activities/ and workflows/ sit below workers/: move what both need into activities/ (e.g. config-types.ts).',
};

export default tseslint.config(
  { ignores: ['node_modules/', '.tools/', '.dbops/', 'eslint.config.mjs'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['workflows/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: nodeBuiltins.map((name) => ({
            name,
            message: 'Workflows are deterministic: do side effects in an activity.',
          })),
          patterns: [
            {
              group: ['**/activities', '**/activities/**'],
              allowTypeImports: true,
              message: 'Workflows import activity types only (import type ...), never implementations.',
            },
            noWorkers,
            {
              group: [
                'pg',
                'pg/*',
                '@aws-sdk/*',
                '@temporalio/worker',
                '@temporalio/activity',
                '@temporalio/client',
              ],
              message: 'Workflows run in the deterministic sandbox: use activities for I/O.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['activities/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', { patterns: [noWorkers] }],
    },
  },
  prettier,
);
