/**
 * Prebuilds the workflow bundle once (`npm run build:bundle`, and the test
 * runner), so workers start in a second instead of bundling at every start.
 */
import { writeFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import { WORKFLOWS_PATH } from './worker.ts';

export async function writeWorkflowBundle(path: string): Promise<string> {
  // Only problems are worth printing; webpack's progress is noise in test output.
  const { code } = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: new DefaultLogger('WARN') });
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, code);
  return path;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const path = process.argv[2] ?? 'dist/workflow-bundle.js';
  await writeWorkflowBundle(path);
  console.log(`workflow bundle written to ${path}`);
}
