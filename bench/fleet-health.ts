/**
 * The health check of 10 local instances through the `fleet` workflow, one child at a time
 * (concurrency 1) vs five at a time (concurrency 5), in one run: what the concurrency limit buys
 * when a team checks many databases. Both sides are the same fleet run on the same dev server,
 * worker and instances (the suite's stack of test/helpers/recovery.ts plus nine instances), timed
 * from the start of the run to its summary. A warm-up of each, then BENCH_ROUNDS (>= 5) rounds in
 * alternating order (bench/lib/rounds.ts); the health check only reads, so there is no WAL to
 * drain. Printed: the seconds of each side per round and the median and spread of their ratio
 * (goal >= 2: ten checks in two waves of five instead of ten one after the other).
 */
import { fleet } from '../workflows';
import { seedDemoData } from '../workers/seed';
import { startRecoveryStack } from '../test/helpers/recovery';
import { alternate, median, printRatios, ratio, record, ROUNDS, timed } from './lib/rounds';

const INSTANCES = 10;
const PREFIX = 'bench-fleet-';

async function main(): Promise<void> {
  const ids = Array.from({ length: INSTANCES }, (_, i) => `${PREFIX}${String(i).padStart(2, '0')}`);
  const stack = await startRecoveryStack({
    name: 'bench-fleet',
    sourceInstanceId: ids[0]!,
    conversations: 50,
    chunksPerConversation: 1,
  });
  try {
    await Promise.all(ids.slice(1).map((id) => stack.plane.createInstance(id)));
    await Promise.all(
      ids
        .slice(1)
        .map(async (id) =>
          seedDemoData(await stack.plane.ensureRunning(id), { conversations: 50, chunksPerConversation: 1 }),
        ),
    );
    console.log(`${INSTANCES} instances up: ${(await stack.instanceIds()).join(', ')}`);
    let runs = 0;
    const side = (concurrency: number) => () =>
      timed(async () => {
        const report = await stack.env.client.workflow.execute(fleet, {
          taskQueue: stack.taskQueue,
          workflowId: `bench-fleet-health-${concurrency}-${++runs}`,
          args: [{ operation: 'healthCheck', concurrency }],
        });
        if (report.instances.length !== INSTANCES) {
          throw new Error(`the fleet checked ${report.instances.length} instances, not ${INSTANCES}`);
        }
      });
    const samples = await alternate(
      { 'concurrency 1': side(1), 'concurrency 5': side(5) },
      (round, figures) =>
        console.log(
          `round ${round}: concurrency 1 ${figures['concurrency 1'].toFixed(2)} s, ` +
            `concurrency 5 ${figures['concurrency 5'].toFixed(2)} s`,
        ),
    );
    console.log(
      `\nmedian seconds for ${INSTANCES} health checks: concurrency 1 ${median(samples['concurrency 1']).toFixed(2)}, ` +
        `concurrency 5 ${median(samples['concurrency 5']).toFixed(2)}\n`,
    );
    for (const concurrency of ['concurrency 1', 'concurrency 5'] as const) {
      record(`fleet health of ${INSTANCES} instances, ${concurrency}`, samples[concurrency], { unit: 's' });
    }
    printRatios(
      [
        ratio(
          'fleet health, concurrency 1 / concurrency 5 (time)',
          samples['concurrency 1'],
          samples['concurrency 5'],
          '>= 2',
        ),
      ],
      ROUNDS,
    );
  } finally {
    await stack.teardown();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
