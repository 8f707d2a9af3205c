/**
 * The script the local provider's background jobs run: local-jobs.ts with everything it imports,
 * bundled into one plain JavaScript file. Started through tsx, a job first loaded the TypeScript
 * loader and resolved and loaded some 600 modules one by one (the AWS SDK among them): about
 * 0.3 s of every restore, snapshot and delete before any work, more on a busy machine. The bundle
 * loads in a few tens of milliseconds with node alone. It is built once per process, at its first
 * job (esbuild, which tsx also uses), from the sources as they are then, as tsx would have compiled
 * them, and written under a name of its own content into the state directory.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { build, type Plugin } from 'esbuild';

const ENTRY = path.join(__dirname, 'local-jobs.ts');

/**
 * A module that finds its files next to it (`__dirname`, e.g. worker-role.sql) keeps finding them
 * there: each such module gets its own directory, not the bundle's.
 */
const ownDirectory: Plugin = {
  name: 'own-directory',
  setup(bundler) {
    bundler.onLoad({ filter: /\.ts$/ }, async ({ path: file }) => {
      if (file.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
      const source = await readFile(file, 'utf8');
      if (!/\b__dirname\b/.test(source)) return undefined;
      return {
        contents: `const __dirname = ${JSON.stringify(path.dirname(file))};\n${source}`,
        loader: 'ts',
      };
    });
  },
};

let bundle: Promise<{ text: string; name: string }> | undefined;

/** The bundle and its file name, built once per process (again after a failed build). */
function bundled(): Promise<{ text: string; name: string }> {
  bundle ??= build({
    entryPoints: [ENTRY],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: `node${process.versions.node.split('.')[0]}`,
    // pg's optional native binding, which we do not use.
    external: ['pg-native'],
    plugins: [ownDirectory],
    write: false,
    logLevel: 'silent',
  }).then(({ outputFiles }) => {
    const text = outputFiles[0]!.text;
    return { text, name: `local-jobs-${createHash('sha256').update(text).digest('hex').slice(0, 16)}.js` };
  });
  bundle.catch(() => (bundle = undefined));
  return bundle;
}

/**
 * The path of the job script in `dir` (created 0700 if missing), bundled the first time this
 * process asks; written under `local-jobs-<content hash>.js`, atomically, whenever it is not
 * there (the first job, or the directory was removed meanwhile).
 */
export async function jobScript(dir: string): Promise<string> {
  const { text, name } = await bundled();
  const file = path.join(dir, name);
  const exists = await stat(file).then(
    () => true,
    () => false,
  );
  if (!exists) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(temp, text, { mode: 0o600 });
    await rename(temp, file);
  }
  return file;
}

/**
 * Whether a command-line argument is a job script: local-jobs.ts as jobs ran it before (through
 * tsx), or a bundle jobScript() wrote. By file name: another checkout may have started the job.
 */
export function isJobScript(arg: string): boolean {
  return /^local-jobs(\.ts|-[0-9a-f]{16}\.js)$/.test(path.basename(arg));
}
