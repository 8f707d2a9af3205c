/**
 * Add an index with CREATE INDEX CONCURRENTLY during expand (writes go on; an invalid left-over
 * of a failed build is dropped and built again), HNSW and IVFFlat included.
 */
import { InvalidInputError } from '../../../../workflows/lib/errors';
import type { Operation } from '../definition';

export interface AddIndexOptions {
  name: string;
  /** Physical column names (a new column while the change runs), or an expression's columns. */
  columns: string[];
  /** `btree` (default), `hnsw`, `ivfflat`, `gin`, ... */
  method?: string;
  /** One operator class for every column, e.g. `vector_cosine_ops`. */
  opclass?: string;
  /** Storage parameters, e.g. `{ m: 16, ef_construction: 64 }`. */
  with?: Record<string, number>;
}

const WORD = /^[a-z_][a-z0-9_]*$/;

export function addIndex(options: AddIndexOptions): Operation {
  const method = options.method ?? 'btree';
  const words = [
    method,
    ...(options.opclass === undefined ? [] : [options.opclass]),
    ...Object.keys(options.with ?? {}),
  ];
  const bad = words.find((word) => !WORD.test(word));
  if (bad !== undefined)
    throw new InvalidInputError(`addIndex ${options.name}: ${JSON.stringify(bad)} is not a lowercase word`);
  const storage = Object.entries(options.with ?? {})
    .map(([key, value]) => `${key} = ${Number(value)}`)
    .join(', ');
  return {
    kind: 'add-index',
    summary: `add ${method} index ${options.name} on (${options.columns.join(', ')})`,
    indexes: [
      {
        name: options.name,
        definition: (col) =>
          `USING ${method} (${options.columns.map((c) => `${col(c)}${options.opclass ? ` ${options.opclass}` : ''}`).join(', ')})` +
          (storage === '' ? '' : ` WITH (${storage})`),
      },
    ],
  };
}
