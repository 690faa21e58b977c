/** Every workflow the worker registers. One file per procedure. */
export { backup } from './backup.ts';
export { restore } from './restore.ts';
export { maintenance } from './maintenance.ts';
export { deploy } from './deploy.ts';
export { disasterRecovery } from './disasterRecovery.ts';
export { verify, drill } from './verify.ts';
export { retention } from './retention.ts';
