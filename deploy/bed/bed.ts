/**
 * The local bed: real peers on free loopback ports, for tests and `opsflow
 * dev`. A Temporal dev server, a throwaway PostgreSQL 15 cluster (password
 * auth over TCP, like production), Redis and MinIO. Binaries come from
 * deploy/bed/install.sh (see .opsflow/tools.env).
 *
 * `startBed(dir)` returns the environment a worker needs; data lives in `dir`,
 * and a second start over the same `dir` reuses it (dev keeps its backups).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ObjectStore } from '../../src/adapters/s3.ts';
import { SEARCH_ATTRIBUTE_NAMES } from '../../workflows/shared.ts';
import { freePort, freePorts, startDaemon, stopDaemon, waitFor, type Daemon } from './daemons.ts';

export { freePort };

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const BED_CONFIG = join(REPO_ROOT, 'deploy/bed/opsflow.yaml');
/** Where `opsflow dev` keeps its bed; its env file there lets other CLI calls find it. */
export const DEV_DIR = join(REPO_ROOT, '.opsflow/dev');

export interface BedOptions {
  dir: string;
  /** Serve the Temporal Web UI (dev) or not (tests). */
  ui?: boolean;
  /** Preferred ports; a taken one falls back to a free one. */
  preferPorts?: { temporal?: number; ui?: number };
}

/**
 * The bed's ports, taken together before any daemon starts: asked for one by
 * one, a port just given back could be handed out again to another daemon.
 */
const BED_PORTS = ['temporal', 'temporalHttp', 'temporalMetrics', 'ui', 'postgres', 'redis', 'minio', 'minioConsole'] as const;
type BedPorts = Record<(typeof BED_PORTS)[number], number>;

export interface Bed {
  env: Record<string, string>;
  temporalAddress: string;
  uiUrl?: string;
  pg: { port: number; socketDir: string; superuserUrl: string; appUrl: (db: string) => string };
  redis: { port: number };
  s3: { endpoint: string; bucket: string; accessKeyId: string; secretAccessKey: string };
  stop(): Promise<void>;
}

const PG_PASSWORD = 'bed-pg-pass-7f3k';
const S3_USER = 'opsflow-bed';
const S3_PASSWORD = 'bed-s3-secret-9q2w';
export const BED_BUCKET = 'opsflow-backups';

export function readToolsEnv(): Record<string, string> {
  const file = join(REPO_ROOT, '.opsflow/tools.env');
  if (!existsSync(file)) throw new Error(`${file} is missing: run 'bash deploy/bed/install.sh' first`);
  return Object.fromEntries(
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

/** SIGTERM to SIGKILL: dev reuses the data, so give the daemons time to shut down cleanly. */
const STOP_GRACE_MS = 10_000;

/**
 * initdb and postgres refuse to run as root; as root we run them as the postgres
 * user. Directly, not through runuser: the exit hook's SIGKILL would end runuser
 * and orphan the postmaster.
 */
function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  return { uid, gid };
}

function pgOwn(path: string): void {
  const user = postgresUser();
  if (user) chownSync(path, user.uid, user.gid);
}

async function startPostgres(dir: string, pgBin: string, port: number, daemons: Daemon[]) {
  const data = join(dir, 'pg');
  const socketDir = join(dir, 'pg-socket');
  mkdirSync(socketDir, { recursive: true });
  pgOwn(socketDir);
  if (!existsSync(join(data, 'PG_VERSION'))) {
    mkdirSync(data, { recursive: true });
    pgOwn(data);
    const pwfile = join(dir, 'pg-pwfile');
    writeFileSync(pwfile, `${PG_PASSWORD}\n`);
    pgOwn(pwfile);
    execFileSync(`${pgBin}/initdb`, ['-D', data, '-U', 'postgres', '--pwfile', pwfile, '--auth-local=trust', '--auth-host=scram-sha-256',
      '-E', 'UTF8', '--locale=C.UTF-8'], { stdio: 'ignore', ...postgresUser() });
  }
  const args = ['-D', data, '-p', String(port), '-k', socketDir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off',
    '-c', 'shared_buffers=256MB', '-c', 'max_wal_size=4GB', '-c', 'log_min_messages=warning'];
  startDaemon('postgres', `${pgBin}/postgres`, args, { dir, daemons, reportAs: 'bed', user: postgresUser() });
  const superuserUrl = `postgresql://postgres:${PG_PASSWORD}@127.0.0.1:${port}/postgres`;
  await waitFor('PostgreSQL', async () => {
    execFileSync(`${pgBin}/pg_isready`, ['-h', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    return true;
  }, { daemons });
  return { port, socketDir, superuserUrl, appUrl: (db: string) => `postgresql://postgres:${PG_PASSWORD}@127.0.0.1:${port}/${db}` };
}

/** Stops a bed's daemons, each given STOP_GRACE_MS to exit. */
function stopDaemons(daemons: Daemon[]): Promise<void> {
  return Promise.all(daemons.map((d) => stopDaemon(d, STOP_GRACE_MS))).then(() => undefined);
}

/**
 * A PostgreSQL server of its own, beside the bed's: "another database server"
 * for recoveries into another place. Its data lives in `dir`.
 */
export async function startPostgresServer(dir: string): Promise<Bed['pg'] & { stop(): Promise<void> }> {
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755); // the postgres user must reach its data directory inside
  const daemons: Daemon[] = [];
  try {
    const pg = await startPostgres(dir, readToolsEnv().OPSFLOW_PG_BIN!, await freePort(), daemons);
    return { ...pg, stop: () => stopDaemons(daemons) };
  } catch (err) {
    await stopDaemons(daemons);
    throw err;
  }
}

async function startTemporal(dir: string, temporalBin: string, options: BedOptions, ports: BedPorts, daemons: Daemon[]) {
  const port = ports.temporal;
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--namespace', 'default',
    '--db-filename', join(dir, 'temporal.sqlite'), '--log-level', 'warn',
    '--http-port', String(ports.temporalHttp), '--metrics-port', String(ports.temporalMetrics)];
  for (const name of SEARCH_ATTRIBUTE_NAMES) args.push('--search-attribute', `${name}=Keyword`);
  let uiUrl: string | undefined;
  if (options.ui) {
    const uiPort = ports.ui;
    args.push('--ui-port', String(uiPort), '--ui-ip', '127.0.0.1', '--ui-disable-news-fetch' );
    uiUrl = `http://127.0.0.1:${uiPort}`;
  } else {
    args.push('--headless');
  }
  startDaemon('temporal', temporalBin, args, { dir, daemons, reportAs: 'bed' });
  const address = `127.0.0.1:${port}`;
  const { Connection } = await import('@temporalio/client');
  await waitFor('Temporal dev server', async () => {
    const c = await Connection.connect({ address, connectTimeout: 1000 });
    try {
      await c.workflowService.getSystemInfo({});
      return true;
    } finally {
      await c.close();
    }
  }, { daemons });
  return { address, uiUrl };
}

async function startRedis(dir: string, port: number, daemons: Daemon[]) {
  startDaemon('redis', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { dir, daemons, reportAs: 'bed' });
  await waitFor('Redis', async () => execFileSync('redis-cli', ['-p', String(port), 'ping'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().includes('PONG'), { daemons });
  return { port };
}

async function startMinio(dir: string, minioBin: string, port: number, consolePort: number, daemons: Daemon[]) {
  const data = join(dir, 's3');
  mkdirSync(data, { recursive: true });
  startDaemon('minio', minioBin, ['server', data, '--address', `127.0.0.1:${port}`, '--console-address', `127.0.0.1:${consolePort}`, '--quiet'], {
    dir,
    daemons,
    reportAs: 'bed',
    env: {
      MINIO_ROOT_USER: S3_USER,
      MINIO_ROOT_PASSWORD: S3_PASSWORD,
      MINIO_BROWSER: 'off',
      MINIO_UPDATE: 'off',
    },
  });
  const endpoint = `http://127.0.0.1:${port}`;
  await waitFor('MinIO', async () => (await fetch(`${endpoint}/minio/health/live`)).ok, { daemons });
  const store = new ObjectStore({ bucket: BED_BUCKET, region: 'us-east-1', endpoint, forcePathStyle: true, credentials: { accessKeyId: S3_USER, secretAccessKey: S3_PASSWORD } });
  await store.ensureBucket();
  return { endpoint };
}

export async function startBed(options: BedOptions): Promise<Bed> {
  const dir = resolve(options.dir);
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755); // the postgres user must reach its data directory inside

  const tools = readToolsEnv();
  // This bed's daemons: each start's wait fails as soon as any of them dies.
  const daemons: Daemon[] = [];
  const stopAll = () => stopDaemons(daemons);
  const ports = await freePorts(BED_PORTS, options.preferPorts);
  const starts = [
    startTemporal(dir, tools.OPSFLOW_TEMPORAL_BIN!, options, ports, daemons),
    startPostgres(dir, tools.OPSFLOW_PG_BIN!, ports.postgres, daemons),
    startRedis(dir, ports.redis, daemons),
    startMinio(dir, tools.OPSFLOW_MINIO_BIN!, ports.minio, ports.minioConsole, daemons),
  ] as const;
  try {
    const [temporal, pg, redis, minio] = await Promise.all(starts);
    const env: Record<string, string> = {
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: 'default',
      OPSFLOW_CONFIG: BED_CONFIG,
      OPSFLOW_PG_BIN: tools.OPSFLOW_PG_BIN!,
      OPSFLOW_TEMPORAL_TEST_SERVER_BIN: tools.OPSFLOW_TEMPORAL_TEST_SERVER_BIN ?? '',
      BED_PG_PORT: String(pg.port),
      BED_PG_SUPERUSER_URL: pg.superuserUrl,
      BED_REDIS_PORT: String(redis.port),
      BED_S3_ENDPOINT: minio.endpoint,
      BED_S3_BUCKET: BED_BUCKET,
      BED_S3_ACCESS_KEY_ID: S3_USER,
      BED_S3_SECRET_ACCESS_KEY: S3_PASSWORD,
      // The sample systems' database URLs, by reference from deploy/bed/opsflow.yaml.
      DEMO_DATABASE_URL: pg.appUrl('demo'),
    };
    return {
      env,
      temporalAddress: temporal.address,
      uiUrl: temporal.uiUrl,
      pg: { port: pg.port, socketDir: pg.socketDir, superuserUrl: pg.superuserUrl, appUrl: pg.appUrl },
      redis: { port: redis.port },
      s3: { endpoint: minio.endpoint, bucket: BED_BUCKET, accessKeyId: S3_USER, secretAccessKey: S3_PASSWORD },
      async stop() {
        await stopAll();
      },
    };
  } catch (err) {
    // The other starts are still going: stopping their daemons makes their waits fail
    // at once; then stop whatever they started meanwhile.
    await stopAll();
    await Promise.allSettled(starts);
    await stopAll();
    throw err;
  }
}
