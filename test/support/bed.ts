/**
 * Test access to the bed that test/run.ts started (its addresses arrive in
 * the environment), plus a per-file config, worker processes and clients.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { stringify as stringifyYaml } from 'yaml';
import { OpsflowClient } from '../../src/client.ts';
import { ObjectStore } from '../../src/adapters/s3.ts';
import { withDatabase } from '../../src/adapters/postgres.ts';
import { WORKER_ENTRY, WORKFLOW_BUNDLE } from '../../workers/build.ts';
import { REPO_ROOT } from '../../deploy/bed/bed.ts';

export function bedEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run tests with 'npm test' (test/run.ts starts the bed)`);
  return value;
}

export const PG_BIN = () => bedEnv('OPSFLOW_PG_BIN');

/** The bed's PostgreSQL, superuser URL for `db`. */
export function pgUrl(db: string): string {
  return withDatabase(bedEnv('BED_PG_SUPERUSER_URL'), db);
}

export function bedStore(): ObjectStore {
  return new ObjectStore({
    bucket: bedEnv('BED_S3_BUCKET'),
    region: 'us-east-1',
    endpoint: bedEnv('BED_S3_ENDPOINT'),
    forcePathStyle: true,
    credentials: { accessKeyId: bedEnv('BED_S3_ACCESS_KEY_ID'), secretAccessKey: bedEnv('BED_S3_SECRET_ACCESS_KEY') },
  });
}

export interface TestSetup {
  /** Config file for workers of this test file. */
  configPath: string;
  /** Environment for workers: config, task queue, database URLs. */
  env: Record<string, string>;
  taskQueue: string;
  /** S3 prefix of this setup, so tests never see each other's backups. */
  prefix: string;
}

/**
 * Writes a config with one system per entry (system name → database name),
 * on a task queue and S3 prefix of its own. `extra` adds sections to a system
 * (e.g. `{ shop: { kubernetes: {…} } }`).
 */
export function testSetup(label: string, systems: Record<string, string>, extra: Record<string, object> = {}): TestSetup {
  const id = `${label}-${randomBytes(3).toString('hex')}`;
  const dir = join(bedEnv('OPSFLOW_TEST_DIR'), id);
  mkdirSync(dir, { recursive: true });
  const env: Record<string, string> = {};
  const lines = ['version: 1', 'systems:'];
  for (const [system, db] of Object.entries(systems)) {
    const varName = `${system.toUpperCase().replace(/-/g, '_')}_DATABASE_URL`;
    env[varName] = pgUrl(db);
    lines.push(
      `  ${system}:`,
      `    postgres:`,
      `      url: { env: ${varName} }`,
      `    s3:`,
      `      bucket: { env: BED_S3_BUCKET }`,
      `      prefix: tests/${id}`,
      `      endpoint: { env: BED_S3_ENDPOINT }`,
      `      forcePathStyle: true`,
      `      accessKeyId: { env: BED_S3_ACCESS_KEY_ID }`,
      `      secretAccessKey: { env: BED_S3_SECRET_ACCESS_KEY }`,
    );
    if (extra[system]) lines.push(...stringifyYaml(extra[system]).trimEnd().split('\n').map((l) => `    ${l}`));
  }
  const configPath = join(dir, 'opsflow.yaml');
  writeFileSync(configPath, `${lines.join('\n')}\n`);
  const taskQueue = `opsflow-${id}`;
  return { configPath, taskQueue, prefix: `tests/${id}`, env: { ...env, OPSFLOW_CONFIG: configPath, OPSFLOW_TASK_QUEUE: taskQueue } };
}

export interface WorkerProcess {
  child: ChildProcess;
  logs(): string;
  /** SIGKILL: the crash a test wants. */
  kill(): Promise<void>;
  /** SIGTERM: graceful shutdown. */
  stop(): Promise<void>;
}

/** Workers still running: a test process that dies must not leave them polling. */
const liveWorkers = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of liveWorkers) child.kill('SIGKILL');
});

/**
 * The worker's V8 flags, as package.json's `worker` script and the
 * Deployment's command give them. Stream buffers are external memory, and
 * V8 schedules full collections of the worker's ~75 MiB heap by it:
 * - a young generation of at most 2 x 16 MiB, V8's usual size, fixed so a
 *   pod's smaller memory does not shrink it. 32 MiB halved the full
 *   collections of a Redis backup when upload parts were new buffers; with
 *   parts reused (s3.ts) it saved no time, and cost up to 25 MiB of peak
 *   RSS (session 11, highest of 3 runs: Redis snapshot at 800 MiB 338
 *   against 314 MiB, the same wall time; PostgreSQL backup 315-324 against
 *   306-317 MiB);
 * - the old generation's limit set at 4x what survived a full collection
 *   (V8's own upper factor, which it otherwise reaches only when collections
 *   are slow), instead of a little above it: a 200 MiB PostgreSQL restore
 *   ran about 18 full collections, each freeing some MiB of buffers, and now
 *   none; the worker's CPU for it fell from 1.7-2.8 s to 0.7 s, its peak
 *   RSS stayed within 310 MiB.
 * OPSFLOW_WORKER_FLAGS adds more (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`).
 */
const WORKER_NODE_FLAGS = ['--max-semi-space-size=16', '--heap-growing-percent=300', ...(process.env.OPSFLOW_WORKER_FLAGS?.split(' ').filter(Boolean) ?? [])];

/**
 * Starts the worker as it is deployed (`dist/workers/main.js` and its
 * workflow bundle, which the test runner builds first) as a separate
 * process: one node process, so SIGKILL kills the worker itself.
 */
export async function startWorker(setup: TestSetup, extraEnv: Record<string, string> = {}): Promise<WorkerProcess> {
  const child = spawn(process.execPath, [...WORKER_NODE_FLAGS, WORKER_ENTRY], {
    cwd: REPO_ROOT,
    env: { ...process.env, OPSFLOW_WORKFLOW_BUNDLE: WORKFLOW_BUNDLE, ...setup.env, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  liveWorkers.add(child);
  child.once('exit', () => liveWorkers.delete(child));
  let output = '';
  const collect = (chunk: Buffer) => {
    output += chunk.toString();
    if (output.length > 1_000_000) output = output.slice(-500_000);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const deadline = Date.now() + 60_000;
  while (!output.includes('worker ready')) {
    if (child.exitCode !== null) throw new Error(`worker exited (${child.exitCode}):\n${output}`);
    if (Date.now() > deadline) throw new Error(`worker not ready after 60 s:\n${output}`);
    await sleep(100);
  }
  const end = async (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    await exited;
  };
  return { child, logs: () => output, kill: () => end('SIGKILL'), stop: () => end('SIGTERM') };
}

export async function client(setup: TestSetup): Promise<OpsflowClient> {
  return OpsflowClient.connect({ address: bedEnv('TEMPORAL_ADDRESS'), namespace: 'default', taskQueue: setup.taskQueue });
}

/** Polls until `check` returns a value, or fails after `timeoutMs`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}
