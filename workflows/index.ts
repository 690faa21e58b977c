/** Every workflow the worker registers. One file per procedure. */
export { backup } from './backup.ts';
export { restore } from './restore.ts';
export { maintenance } from './maintenance.ts';
export { deploy } from './deploy.ts';
