/**
 * `dbops index build|rebuild TABLE.COLUMN` and `dbops index recall`: vector index builds as the
 * vectorIndex workflow (concurrently, outside the migrations' statement_timeout, with a progress
 * line from pg_stat_progress_create_index) and a recall measurement as the vectorRecall workflow.
 * The workflow id names the column, so the same command run again joins the build in progress.
 */
import { vectorIndex, vectorRecall } from '../../workflows';
import { utcStamp } from '../../workflows/lib/recovery';
import {
  vectorIndexProgressQuery,
  type VectorIndexInput,
  type VectorIndexProgress,
} from '../../workflows/vector-index';
import { loadConfig } from '../config';
import {
  alreadyRunning,
  clock,
  explainFailure,
  instanceOption,
  integerOption,
  parse,
  positional,
  print,
  UsageError,
  whileRunning,
  withTemporal,
  type CommandGroup,
} from './common';

export const vectorIndexes: CommandGroup = {
  usage: `  index build|rebuild TABLE.COLUMN --method hnsw|ivfflat [--m N] [--ef-construction N] [--lists N]
        [--distance cosine|l2|ip] [--index NAME] [--parallel-workers N] [--min-recall R]
        [--instance ID] [--quiet] [--json]
                                     build a vector index concurrently, or rebuild one under its
                                     name (swapped in once valid and its recall checked)
  index recall [--instance ID] [--filter-column C] [--ef-search N] [--sample N] [--json]
                                     recall@10 of every vector index against exact search`,
  commands: { index },
};

async function index(args: string[]): Promise<void> {
  const [action, ...rest] = args;
  if (action === 'build' || action === 'rebuild') return build(action, rest);
  if (action === 'recall') return recall(rest);
  throw new UsageError('dbops index: expected build, rebuild or recall');
}

async function build(action: 'build' | 'rebuild', args: string[]): Promise<void> {
  const command = `index ${action}`;
  const [target, rest] = positional(command, 'TABLE.COLUMN', args);
  const options = parse(command, rest, {
    method: { type: 'string' },
    m: { type: 'string' },
    'ef-construction': { type: 'string' },
    lists: { type: 'string' },
    distance: { type: 'string' },
    index: { type: 'string' },
    'parallel-workers': { type: 'string' },
    'min-recall': { type: 'string' },
    instance: { type: 'string' },
    quiet: { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const dot = target.lastIndexOf('.');
  if (dot <= 0 || dot === target.length - 1) {
    throw new UsageError(
      `dbops ${command}: ${JSON.stringify(target)} is not TABLE.COLUMN (or SCHEMA.TABLE.COLUMN)`,
    );
  }
  if (options.method !== 'hnsw' && options.method !== 'ivfflat') {
    throw new UsageError(`dbops ${command}: --method hnsw or --method ivfflat is required`);
  }
  const minRecall = options['min-recall'] === undefined ? undefined : Number(options['min-recall']);
  if (minRecall !== undefined && Number.isNaN(minRecall)) {
    throw new UsageError(
      `dbops ${command}: --min-recall ${JSON.stringify(options['min-recall'])} is not a number`,
    );
  }
  const instanceId = instanceOption(options.instance);
  const input: VectorIndexInput = {
    action,
    table: target.slice(0, dot),
    column: target.slice(dot + 1),
    method: options.method,
    ...defined({
      instanceId,
      m: integerOption(command, 'm', options.m),
      efConstruction: integerOption(command, 'ef-construction', options['ef-construction']),
      lists: integerOption(command, 'lists', options.lists),
      distance: options.distance as VectorIndexInput['distance'],
      index: options.index,
      parallelWorkers: integerOption(command, 'parallel-workers', options['parallel-workers']),
      minRecall,
    }),
  };
  const config = loadConfig();
  const workflowId = `vector-index-${instanceId ?? 'configured'}-${target}`;
  const result = await withTemporal(config, async (client) => {
    const handle = await client.workflow
      .start(vectorIndex, {
        taskQueue: config.temporal.taskQueue,
        workflowId,
        workflowIdConflictPolicy: 'USE_EXISTING',
        args: [input],
      })
      .catch(alreadyRunning(workflowId));
    if (!options.quiet) console.error(`${action} of a ${options.method} index on ${target}: ${workflowId}`);
    let last = '';
    return explainFailure(
      whileRunning(handle.result(), async () => {
        const progress = await handle.query(vectorIndexProgressQuery).catch(() => undefined);
        if (options.quiet || progress === undefined) return;
        const line = progressLine(progress);
        if (line !== last) console.error(`[${clock()}] ${line}`);
        last = line;
      }),
    );
  });
  const recall =
    result.recall === undefined ? '-' : `${result.recall.recall} (${result.recall.searchSetting})`;
  print(options.json, result, [
    ['INDEX', 'METHOD', 'PARAMS', 'OUTCOME', 'SECONDS', 'MAINTENANCE_WORK_MEM', 'RECALL'],
    [
      result.index,
      result.method,
      Object.entries(result.params)
        .map(([key, value]) => `${key}=${value}`)
        .join(','),
      result.build.outcome,
      (result.build.durationMs / 1000).toFixed(1),
      `${Math.round(result.memory.maintenanceWorkMemBytes / (1024 * 1024))} MB`,
      recall,
    ],
  ]);
  if (!options.json && result.memory.warning !== undefined) console.log(`warning: ${result.memory.warning}`);
}

/** e.g. `building public.docs_idx [######------] 50.0% building index: loading tuples 10000/20000 tuples`. */
export function progressLine(progress: VectorIndexProgress, width = 20): string {
  const parts = [progress.stage, progress.index ?? ''];
  if (progress.stage === 'building' && progress.build !== null) {
    const fraction = progress.fraction ?? 0;
    const filled = Math.round(fraction * width);
    parts.push(
      `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`,
      `${(fraction * 100).toFixed(1)}%`,
      progress.build.phase,
    );
    if (progress.build.tuplesTotal > 0)
      parts.push(`${progress.build.tuplesDone}/${progress.build.tuplesTotal} tuples`);
    else if (progress.build.blocksTotal > 0)
      parts.push(`${progress.build.blocksDone}/${progress.build.blocksTotal} blocks`);
  }
  if (progress.warning !== null)
    parts.push(
      `(will spill: ${Math.round((progress.maintenanceWorkMemBytes ?? 0) / (1024 * 1024))} MB of memory)`,
    );
  return parts.filter((part) => part !== '').join('  ');
}

async function recall(args: string[]): Promise<void> {
  const options = parse('index recall', args, {
    instance: { type: 'string' },
    'filter-column': { type: 'string' },
    'ef-search': { type: 'string' },
    sample: { type: 'string' },
    json: { type: 'boolean' },
  });
  const instanceId = instanceOption(options.instance);
  const config = loadConfig();
  const result = await withTemporal(config, (client) =>
    explainFailure(
      client.workflow.execute(vectorRecall, {
        taskQueue: config.temporal.taskQueue,
        workflowId: `vector-recall-${instanceId ?? 'configured'}-${utcStamp(new Date())}`,
        workflowIdConflictPolicy: 'USE_EXISTING',
        args: [
          defined({
            instanceId,
            filterColumn: options['filter-column'],
            efSearch: integerOption('index recall', 'ef-search', options['ef-search']),
            sampleSize: integerOption('index recall', 'sample', options.sample),
          }),
        ],
      }),
    ),
  );
  const text = (value: number | undefined) => (value === undefined ? '-' : value.toFixed(3));
  print(options.json, result, [
    ['INDEX', 'METHOD', 'SETTING', 'RECALL', 'FILTERED', 'FILTERED ITERATIVE'],
    ...result.indexes.map((i) => [
      `${i.schema}.${i.index}`,
      i.method,
      i.searchSetting,
      text(i.recall),
      text(i.filtered?.recall),
      text(i.filtered?.recallIterative),
    ]),
  ]);
  if (!options.json) {
    for (const skipped of result.skipped)
      console.log(`not measured: ${skipped.schema}.${skipped.index}: ${skipped.reason}`);
    for (const below of result.below) console.log(`below the bar ${result.minRecall}: ${below}`);
  }
}

/** The object without its undefined fields (workflow inputs stay plain JSON). */
function defined<T extends Record<string, unknown>>(fields: T): Partial<T> {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as Partial<T>;
}
