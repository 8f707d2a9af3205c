// Every workflow type the worker registers: one workflow per file.
export { ping } from './ping';
export { healthCheck } from './health-check';
export { maintenance } from './maintenance';
