// Every workflow type the worker registers: one workflow per file.
export { ping } from './ping';
export { healthCheck } from './health-check';
export { maintenance } from './maintenance';
export { deployMigration } from './deploy-migration';
export { backfill } from './backfill';
export { expandContract } from './expand-contract';
export { planChange } from './plan-change';
export { backup } from './backup';
export { pitrRestore } from './pitr-restore';
export { snapshotRestore } from './snapshot-restore';
export { drTest } from './dr-test';
export { sweepOrphans } from './sweep-orphans';
export { retention } from './retention';
export { fleet } from './fleet';
export { vectorIndex } from './vector-index';
export { vectorRecall } from './vector-recall';
