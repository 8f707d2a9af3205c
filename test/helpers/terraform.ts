/**
 * Reads Terraform files as data, through python-hcl2 (a dependency of checkov, installed in the
 * project venv by `npm run setup`), so tests can assert what the configuration says without a
 * `terraform` binary or provider downloads.
 */
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

import { requireTool } from '../../workers/tools';

const run = promisify(execFile);

/** One block body as python-hcl2 gives it: every attribute's value is wrapped in a one-item list. */
export type HclBody = Record<string, unknown>;

export interface Block {
  /** e.g. `aws_db_instance` (empty for variables, outputs, modules). */
  type: string;
  name: string;
  file: string;
  body: HclBody;
}

export interface TerraformDir {
  dir: string;
  resources: Block[];
  data: Block[];
  variables: Block[];
  modules: Block[];
  providers: Block[];
  outputs: Block[];
  /** Every `locals` value of the directory, unwrapped. */
  locals: Record<string, unknown>;
}

// Prints {file: parsed} for the files named on the command line.
const TO_JSON = 'import hcl2, json, sys; print(json.dumps({f: hcl2.load(open(f)) for f in sys.argv[1:]}))';

/** Parses every `.tf` file of a directory (not its subdirectories). */
export async function parseTerraformDir(dir: string): Promise<TerraformDir> {
  const files = (await readdir(dir))
    .filter((name) => name.endsWith('.tf'))
    .map((name) => path.join(dir, name));
  if (files.length === 0) throw new Error(`${dir} has no .tf files`);
  const python = path.join(path.dirname(requireTool('checkov')), 'python');
  const { stdout } = await run(python, ['-c', TO_JSON, ...files], { maxBuffer: 16 * 1024 * 1024 });
  const parsed = JSON.parse(stdout) as Record<string, Record<string, unknown[]>>;
  const result: TerraformDir = {
    dir,
    resources: [],
    data: [],
    variables: [],
    modules: [],
    providers: [],
    outputs: [],
    locals: {},
  };
  for (const [file, top] of Object.entries(parsed)) {
    for (const entry of (top.resource ?? []) as Record<string, Record<string, HclBody>>[]) {
      result.resources.push(...typedBlocks(entry, file));
    }
    for (const entry of (top.data ?? []) as Record<string, Record<string, HclBody>>[]) {
      result.data.push(...typedBlocks(entry, file));
    }
    for (const [key, list] of [
      ['variable', result.variables],
      ['module', result.modules],
      ['provider', result.providers],
      ['output', result.outputs],
    ] as const) {
      for (const entry of (top[key] ?? []) as Record<string, HclBody>[]) {
        for (const [name, body] of Object.entries(entry)) list.push({ type: '', name, file, body });
      }
    }
    for (const entry of (top.locals ?? []) as HclBody[]) {
      for (const name of Object.keys(entry)) {
        if (!name.startsWith('__')) result.locals[name] = attr(entry, name);
      }
    }
  }
  return result;
}

function typedBlocks(entry: Record<string, Record<string, HclBody>>, file: string): Block[] {
  return Object.entries(entry).flatMap(([type, byName]) =>
    Object.entries(byName).map(([name, body]) => ({ type, name, file, body })),
  );
}

/** The one block of that type and name; throws naming what is missing. */
export function find(blocks: Block[], type: string, name: string): Block {
  const block = blocks.find((b) => b.type === type && b.name === name);
  if (!block) throw new Error(`no ${type ? `${type}.` : ''}${name} in the Terraform files`);
  return block;
}

/** An attribute's value (python-hcl2 wraps it in a list of one). */
export function attr(body: HclBody, name: string): unknown {
  const value = body[name];
  return Array.isArray(value) ? (value[0] as unknown) : undefined;
}

/** The nested blocks of that name (`parameter`, `statement`, `rule`, ...). */
export function blocks(body: HclBody, name: string): HclBody[] {
  const value = body[name];
  return Array.isArray(value) ? (value as HclBody[]) : [];
}

/** The default of a variable of the module, or undefined when it has none. */
export function variableDefault(dir: TerraformDir, name: string): unknown {
  return attr(find(dir.variables, '', name).body, 'default');
}

/** A string attribute's value, or '' when it is absent or not a string. */
export function text(body: HclBody, name: string): string {
  const value = attr(body, name);
  return typeof value === 'string' ? value : '';
}
