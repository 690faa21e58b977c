/**
 * `npm run build`: the worker compiled to JavaScript in dist/ (tsc), and the
 * workflow bundle beside it, so workers start in a second instead of bundling
 * at every start. Workers run from dist/ with plain node: under tsx, its
 * loader thread and the transpiled sources took about 100 MiB more (an idle
 * worker: 370 MiB of RSS under tsx, 265 MiB compiled). The test runner and
 * the benchmarks build first too, so they run what is deployed.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { writeWorkflowBundle } from './bundle.ts';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const WORKER_ENTRY = `${REPO_ROOT}dist/workers/main.js`;
export const WORKFLOW_BUNDLE = `${REPO_ROOT}dist/workflow-bundle.js`;

export async function build(): Promise<void> {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  await promisify(execFile)(process.execPath, [tsc, '-p', `${REPO_ROOT}tsconfig.build.json`], { cwd: REPO_ROOT }).catch((err: { stdout?: string; message: string }) => {
    throw new Error(`tsc could not compile the worker: ${err.stdout?.trim() || err.message}`);
  });
  await writeWorkflowBundle(WORKFLOW_BUNDLE);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await build();
  console.log(`worker compiled to ${WORKER_ENTRY}, workflow bundle written to ${WORKFLOW_BUNDLE}`);
}
