/**
 * The worker process: `npm run worker` (built first: `node dist/workers/main.js`). Reads
 * OPSFLOW_CONFIG (default ./opsflow.yaml), OPSFLOW_WORKFLOW_BUNDLE and
 * OPSFLOW_HEALTH_PORT (probes and Prometheus `/metrics`, see src/health.ts
 * and src/metrics.ts), and shuts down gracefully on SIGINT/SIGTERM (the SDK
 * handles the signals).
 */
import { configPath, loadConfig } from '../src/config.ts';
import { log } from '../src/log.ts';
import { errorMessage } from '../src/errors.ts';
import { Systems } from '../src/systems.ts';
import { catalogMetrics } from '../src/metrics.ts';
import { createWorker } from './worker.ts';
import { serveHealth } from '../src/health.ts';

try {
  const config = loadConfig(configPath());
  const { worker, connection } = await createWorker({ config, workflowBundlePath: process.env.OPSFLOW_WORKFLOW_BUNDLE });
  const health = process.env.OPSFLOW_HEALTH_PORT
    ? serveHealth(worker, Number(process.env.OPSFLOW_HEALTH_PORT), { metrics: catalogMetrics(new Systems(config)) })
    : undefined;
  await worker.run();
  health?.close();
  await connection.close();
} catch (err) {
  log.error('worker stopped', { error: errorMessage(err) });
  process.exit(1);
}
