/** The workflow bundle, prebuilt by `npm run build` (workers/build.ts). */
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
