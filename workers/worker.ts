/**
 * Assembles an opsflow worker: config validated once, activities over real
 * adapters, workflows from a prebuilt bundle when one is given (production,
 * tests) or bundled from source (dev).
 */
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities, defaultDeps, type ActivityDeps } from '../activities/index.ts';
import { resolveSetting, type Config } from '../src/config.ts';
import { temporalTarget } from '../src/temporal.ts';
import { installRuntimeLogger, log } from '../src/log.ts';
import { sweepScratch } from '../src/scratch.ts';

/** The workflows' entry point beside this file: the source under tsx, the compiled one in dist/. */
export const WORKFLOWS_PATH = fileURLToPath(new URL(`../workflows/index${extname(fileURLToPath(import.meta.url))}`, import.meta.url));

export interface WorkerOptions {
  config: Config;
  /** Path of a bundle made by `bundleWorkflowCode` (see workers/bundle.ts). */
  workflowBundlePath?: string;
  deps?: ActivityDeps;
}

export async function createWorker({ config, workflowBundlePath, deps }: WorkerOptions): Promise<{ worker: Worker; connection: NativeConnection }> {
  installRuntimeLogger();
  const target = temporalTarget({
    address: config.temporal.address === undefined ? undefined : resolveSetting(config.temporal.address, 'temporal.address'),
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
  });
  const connection = await NativeConnection.connect({ address: target.address, tls: target.tls, apiKey: target.apiKey });
  const worker = await Worker.create({
    connection,
    namespace: target.namespace,
    taskQueue: target.taskQueue,
    activities: createActivities(deps ?? defaultDeps(config)),
    ...(workflowBundlePath ? { workflowBundle: { codePath: workflowBundlePath } } : { workflowsPath: WORKFLOWS_PATH }),
    // Backups and restores are few and heavy: a couple at a time per worker.
    maxConcurrentActivityTaskExecutions: Number(process.env.OPSFLOW_MAX_ACTIVITIES ?? 4),
    // Progress reaches Temporal every 2 s (the SDK default is up to 80 % of the
    // heartbeat timeout), so `opsflow status` shows bytes moving, not jumps.
    maxHeartbeatThrottleInterval: '2s',
    defaultHeartbeatThrottleInterval: '2s',
  });
  // What killed workers left on this host: their temporary directories, and scratch redis-servers on them.
  const swept = await sweepScratch();
  if (swept.directories.length) log.info('removed scratch left by stopped workers', { directories: swept.directories.length, processesStopped: swept.processes.length });
  log.info('worker ready', { address: target.address, namespace: target.namespace, taskQueue: target.taskQueue, systems: Object.keys(config.systems) });
  return { worker, connection };
}
