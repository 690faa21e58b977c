/**
 * The worker process: `node --import tsx workers/main.ts`. Reads
 * OPSFLOW_CONFIG (default ./opsflow.yaml) and OPSFLOW_WORKFLOW_BUNDLE, and
 * shuts down gracefully on SIGINT/SIGTERM (the SDK handles the signals).
 */
import { configPath, loadConfig } from '../src/config.ts';
import { log } from '../src/log.ts';
import { errorMessage } from '../src/errors.ts';
import { createWorker } from './worker.ts';

try {
  const config = loadConfig(configPath());
  const { worker, connection } = await createWorker({ config, workflowBundlePath: process.env.OPSFLOW_WORKFLOW_BUNDLE });
  await worker.run();
  await connection.close();
} catch (err) {
  log.error('worker stopped', { error: errorMessage(err) });
  process.exit(1);
}
