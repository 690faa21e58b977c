/**
 * Disaster recovery of a sample system on the whole bed: real Temporal,
 * PostgreSQL, Redis, MinIO, and a real control plane whose kwok pods run
 * `exec` commands on this machine (so a directory "in the pod" is real). The
 * system (shaped like MindSwarm's: configuration objects, runtime files and
 * a SQLite database in the pod, data files, database, Redis) has an
 * application stand-in: an HTTP
 * server whose /health reads the restored database and Redis, and whose
 * /ready the test can fail.
 *
 * Shown: a recovery with the worker killed at every step in turn ends with
 * every component equal to the set, the Deployment back at 3 Ready replicas,
 * the health checks passed and the traffic webhook called once; a failure
 * after every component was swapped in (readiness fails) puts the live system
 * back exactly as it was, objects the restore created deleted; a drill leaves
 * no scratch namespace, database or keys and records RTO and RPO; recovery
 * into new infrastructure (Claude Flow's case: a second control plane, reached
 * through another context of the kubeconfig, with nothing in its namespace)
 * creates the workloads from the set, restores the data, verifies and
 * switches traffic.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { WorkflowFailedError } from '@temporalio/client';
import type proto from '@temporalio/proto';
import { Redis } from 'ioredis';
import { startPostgresServer } from '../../deploy/bed/bed.ts';
import { startKubernetes, type KubernetesBed } from '../../deploy/bed/kubernetes/cluster.ts';
import { Kubernetes } from '../../src/adapters/kubernetes/index.ts';
import { SCALED_BY_ANNOTATION } from '../../src/adapters/kubernetes/workloads.ts';
import { treeDigest } from '../../src/adapters/files.ts';
import { startScratchRedis, type ScratchRedis } from '../../src/adapters/redis.ts';
import type { OpsflowClient } from '../../src/client.ts';
import { innermostMessage } from '../../src/errors.ts';
import { bedEnv, bedStore, client, startWorker, testSetup, type TestSetup, type WorkerProcess } from '../support/bed.ts';
import { bedPostgres, databaseExists, dropDatabase, postgresOn, sql, type PostgresHelpers } from '../support/data.ts';
import { testDeployment } from '../support/kubernetes.ts';

const DB = 'dr_app';
const FLOW_DB = 'dr_flow';
const namespace = 'swarm';
const flowNamespace = 'flow-new';
const DRILL_DB = 'dr_drill';
const drillNamespace = 'swarm-drill';
const redis = { drillLive: 9, drillStaging: 10, live: 11, staging: 12, flowLive: 13, flowStaging: 14 };
/** Site B's databases (flowLive, flowStaging) are on its own redis-server. */
const redisUrl = (db: number) => `redis://127.0.0.1:${db >= redis.flowLive ? siteB.redis.port : bedEnv('BED_REDIS_PORT')}/${db}`;

let dir: string;
let bed: KubernetesBed;
let kube: Kubernetes;
let apps: AppsV1Api;
let core: CoreV1Api;
/**
 * The other site of "recovery into new infrastructure": a second control
 * plane, reached through another context of one kubeconfig, a second
 * PostgreSQL server, which holds FLOW_DB, and a second redis-server.
 */
let siteB: { bed: KubernetesBed; kubeconfig: string; kube: Kubernetes; apps: AppsV1Api; core: CoreV1Api; pg: PostgresHelpers; stopPg(): Promise<void>; redis: ScratchRedis };
/** The server a test database lives on. */
const pgOf = (db: string): PostgresHelpers => (db === FLOW_DB ? siteB.pg : bedPostgres);
let setup: TestSetup;
let opsflow: OpsflowClient;
let worker: WorkerProcess;
let workerEnv: Record<string, string>;
const workers: WorkerProcess[] = [];

/** The application stand-in: healthy when its database and Redis answer; ready unless the test says not. */
const app = { failReady: false, server: undefined as Server | undefined, port: 0 };
/** The traffic switch: every call's idempotency key. */
const webhook = { calls: [] as string[], server: undefined as Server | undefined, port: 0 };

const places = (root: string) => ({ data: join(root, 'data'), runtime: join(root, 'exec', 'runtime'), memory: join(root, 'exec', 'memory.db') });
let swarm: ReturnType<typeof places>;
let flow: ReturnType<typeof places>;
/** The scratch system drills recover into: beside swarm on the same servers and cluster, in places of its own. */
let rehearsal: ReturnType<typeof places>;

async function listen(handler: Parameters<typeof createServer>[1]): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

/** The scratch system's overrides of the set's configuration objects (the Secret's value by reference). */
const DRILL_DB_PASSWORD = 'drill-db-password';
const DRILL_OVERRIDES = [
  { kind: 'ConfigMap', name: 'app-config', data: { DATABASE_NAME: DRILL_DB } },
  { kind: 'Secret', name: 'app-secrets', data: { DB_PASSWORD: { env: 'DRILL_DB_PASSWORD' } } },
];

/** /config/<namespace>: the application there is configured for the drill's places. */
async function configPointsAtDrill(ns: string): Promise<boolean> {
  const [config] = await kube.objects.exportNamespace(ns, { kinds: ['ConfigMap'] }).then((ms) => ms.filter((m) => m.metadata.name === 'app-config'));
  const secret = await kube.objects.readSecretKey(ns, 'app-secrets', 'DB_PASSWORD');
  return (config?.data as Record<string, string> | undefined)?.DATABASE_NAME === DRILL_DB && secret === DRILL_DB_PASSWORD;
}

/** /health/<db>/<redis db>: the restored data is there and readable. */
async function healthOf(db: string, redisDb: number): Promise<boolean> {
  const [row] = await pgOf(db).sql<{ n: string }>(db, 'SELECT count(*) AS n FROM app.documents');
  const r = new Redis(redisUrl(redisDb), { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    return Number(row?.n) > 0 && (await r.get('app:schema')) !== null;
  } finally {
    r.disconnect();
  }
}

function systemConfig(cluster: { kubeconfig: string; context?: string }, ns: string, root: ReturnType<typeof places>, live: number, staging: number, db: string, redisEnv: string) {
  return {
    redis: { url: { env: redisEnv } },
    kubernetes: { ...cluster, namespace: ns, workloads: [{ kind: 'Deployment', name: 'api' }], readyTimeoutSeconds: 120 },
    backup: {
      components: [
        { kind: 'kubernetes', name: 'config', kinds: ['ConfigMap', 'Secret', 'Service', 'Deployment'] },
        { kind: 'files', name: 'runtime', path: root.runtime, pod: { workload: 'api' } },
        { kind: 'sqlite', name: 'memory', path: root.memory, pod: { workload: 'api' } },
        { kind: 'files', name: 'data', path: root.data },
        { kind: 'postgres' },
        { kind: 'redis', name: 'cache', mode: 'snapshot', stagingDb: staging },
      ],
    },
    recovery: {
      health: [
        { name: 'health', url: `http://127.0.0.1:${app.port}/health/${db}/${live}` },
        { name: 'ready', url: `http://127.0.0.1:${app.port}/ready` },
      ],
      trafficSwitch: { webhook: { env: 'DR_WEBHOOK' } },
    },
  };
}

// ---------------------------------------------------------------- the live data and its fingerprint

function fillFiles(root: ReturnType<typeof places>): void {
  for (const path of Object.values(root)) rmSync(path, { recursive: true, force: true });
  mkdirSync(join(root.data, 'checkpoints'), { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(root.data, 'checkpoints', `cp-${i}.bin`), randomBytes(2000 + i));
  writeFileSync(join(root.data, 'state.json'), '{"epoch": 7}');
  mkdirSync(join(root.runtime, 'agents'), { recursive: true });
  writeFileSync(join(root.runtime, 'agents', 'registry.json'), '{"agents": 12}');
  writeFileSync(join(root.runtime, 'start.sh'), '#!/bin/sh\n');
  chmodSync(join(root.runtime, 'start.sh'), 0o755);
  sqlite(root.memory, "PRAGMA journal_mode=WAL; CREATE TABLE notes (id INTEGER PRIMARY KEY, agent TEXT, note TEXT); INSERT INTO notes (agent, note) VALUES ('planner', 'split the task'), ('coder', 'tests first');");
}

const sqlite = (file: string, sqlText: string) => execFileSync('sqlite3', [file, sqlText]).toString();
const sqliteDumpHash = (file: string) => createHash('sha256').update(execFileSync('sqlite3', [file, '.dump'])).digest('hex');

async function fillRedis(db: number): Promise<void> {
  const r = new Redis(redisUrl(db));
  await r.flushdb();
  const p = r.pipeline();
  p.set('app:schema', 'v3');
  for (let i = 0; i < 300; i++) p.set(`session:${i}`, `user ${i}`, 'EX', 7200);
  p.hset('agents', { planner: 'up', coder: 'up' });
  await p.exec();
  r.disconnect();
}

async function createObjects(ns: string): Promise<void> {
  await core.createNamespace({ body: { metadata: { name: ns } } });
  await kube.objects.writeConfigMap(ns, 'app-config', { 'LOG_LEVEL': 'info', 'app.yaml': 'workers: 4\n' });
  await kube.objects.writeConfigMap(ns, 'feature-flags', { beta: 'on' });
  await kube.objects.writeSecret(ns, 'app-secrets', { JWT_SECRET: 'jwt-secret-value', DB_PASSWORD: 'db-password-value' });
  await core.createNamespacedService({ namespace: ns, body: { metadata: { name: 'api' }, spec: { selector: { app: 'api' }, ports: [{ port: 80, targetPort: 8080 }] } } });
  await apps.createNamespacedDeployment({ namespace: ns, body: testDeployment('api', 'example/api:v1', 3) });
}

/** Every key's serialized value, and whether it expires; expiry times themselves go to `expiries`. */
async function redisFingerprint(db: number, expiries: Map<string, number>): Promise<Record<string, string>> {
  const r = new Redis(redisUrl(db));
  const out: Record<string, string> = {};
  for (const key of (await r.keys('*')).sort()) {
    const pttl = await r.pttl(key);
    if (pttl > 0) expiries.set(key, Date.now() + pttl);
    out[key] = `${(await r.dumpBuffer(key))!.toString('hex')}${pttl > 0 ? ' expires' : ''}`;
  }
  r.disconnect();
  return out;
}

async function objectsFingerprint(ns: string, cluster: Kubernetes): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  // A Service's cluster IP is the cluster's to allocate; its ports are what was configured.
  for (const m of await cluster.objects.exportNamespace(ns, { kinds: ['ConfigMap', 'Secret', 'Service'] })) out[`${m.kind}/${m.metadata.name}`] = m.data ?? (m.spec as { ports: unknown }).ports;
  return out;
}

async function fingerprint(ns = namespace, root = swarm, db = DB, live = redis.live, cluster = kube) {
  const expiries = new Map<string, number>();
  const state = {
    tables: await pgOf(db).tableChecksums(db),
    redis: await redisFingerprint(live, expiries),
    data: (await treeDigest(root.data)).sha256,
    runtime: (await treeDigest(root.runtime)).sha256,
    memory: sqliteDumpHash(root.memory),
    objects: await objectsFingerprint(ns, cluster),
  };
  return { state, expiries };
}

type Fingerprint = Awaited<ReturnType<typeof fingerprint>>;

/** Equal state, and every key's expiry at the same moment (within a second: a snapshot keeps absolute expiry times). */
function assertSame(actual: Fingerprint, expected: Fingerprint, what: string): void {
  assert.deepEqual(actual.state, expected.state, what);
  for (const [key, at] of expected.expiries) {
    assert.ok(Math.abs(actual.expiries.get(key)! - at) < 1000, `${what}: expiry of ${key} off by ${actual.expiries.get(key)! - at} ms`);
  }
}

/** Changes every component, so a recovery has something to undo; deletes an object the set has. */
async function changeEverything(tag: string): Promise<void> {
  await sql(DB, `DELETE FROM app.documents WHERE id % 4 = 0; INSERT INTO audit.events (kind, at) VALUES ('${tag}', now())`);
  const r = new Redis(redisUrl(redis.live));
  await r.del('session:1', 'session:2');
  await r.set(`after:${tag}`, '1');
  r.disconnect();
  writeFileSync(join(swarm.data, 'state.json'), `{"epoch": "${tag}"}`);
  rmSync(join(swarm.data, 'checkpoints', 'cp-3.bin'));
  writeFileSync(join(swarm.runtime, 'agents', 'registry.json'), `{"agents": "${tag}"}`);
  sqlite(swarm.memory, `DELETE FROM notes WHERE agent = 'coder'; INSERT INTO notes (agent, note) VALUES ('${tag}', 'lost');`);
  await kube.objects.writeConfigMap(namespace, 'app-config', { LOG_LEVEL: tag }, { replace: true });
  await kube.objects.remove([{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'feature-flags' } }], { namespace });
}

async function deploymentState(ns = namespace, api = apps) {
  const d = await api.readNamespacedDeployment({ namespace: ns, name: 'api' });
  return { replicas: d.spec?.replicas, held: d.metadata?.annotations?.[SCALED_BY_ANNOTATION] };
}

/** Databases, Redis keys and directories a restore makes beside the live data: none may be left. */
async function leftovers(db: string, root: ReturnType<typeof places>, staging: number): Promise<string[]> {
  const dbs = await pgOf(db).sql<{ datname: string }>('postgres', `SELECT datname FROM pg_database WHERE datname LIKE $1 AND datname !~ '_old_'`, [`${db}_%`]);
  const r = new Redis(redisUrl(staging));
  const keys = await r.dbsize();
  r.disconnect();
  const siblings = (path: string) => readdirSync(join(path, '..')).filter((n) => n.startsWith(`${path.split('/').pop()}.`));
  return [...dbs.map((d) => `database ${d.datname}`), ...(keys ? [`${keys} keys in Redis db ${staging}`] : []), ...siblings(root.data), ...siblings(root.runtime), ...siblings(root.memory)];
}

/** Every string and every payload's bytes in a history, as text: what anyone reading the history could see. (JSON would show bytes as base64.) */
function historyText(history: unknown): string {
  const out: string[] = [];
  const walk = (value: unknown): void => {
    if (value instanceof Uint8Array) out.push(Buffer.from(value).toString('utf8'));
    else if (typeof value === 'string') out.push(value);
    else if (value && typeof value === 'object') Object.values(value).forEach(walk);
  };
  walk(history);
  return out.join('\n');
}

async function assertScratchRedisEmpty(): Promise<void> {
  for (const db of [redis.drillLive, redis.drillStaging]) {
    const r = new Redis(redisUrl(db));
    assert.equal(await r.dbsize(), 0, `Redis database ${db} empty`);
    r.disconnect();
  }
}

async function dropRetired(db: string): Promise<void> {
  for (const { datname } of await sql<{ datname: string }>('postgres', `SELECT datname FROM pg_database WHERE datname LIKE $1`, [`${db}_old_%`])) await dropDatabase(datname);
}

// ---------------------------------------------------------------- bed

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'opsflow-k8s-dr-'));
  chmodSync(dir, 0o755); // site B's PostgreSQL server runs as the postgres user, under it
  swarm = places(join(dir));
  flow = places(join(dir, 'flow'));
  rehearsal = places(join(dir, 'drill'));
  bed = await startKubernetes({ dir, localExec: true });
  kube = Kubernetes.connect({ kubeconfig: bed.kubeconfigPath });
  apps = kube.kc.makeApiClient(AppsV1Api);
  core = kube.kc.makeApiClient(CoreV1Api);
  const bedB = await startKubernetes({ dir: join(dir, 'site-b'), localExec: true });
  const kubeconfig = twoSiteKubeconfig(join(dir, 'two-sites.kubeconfig'), { 'site-a': bed.kubeconfigPath, 'site-b': bedB.kubeconfigPath });
  const kubeB = Kubernetes.connect({ kubeconfig, context: 'site-b' });
  const pgB = await startPostgresServer(join(dir, 'site-b', 'postgres'));
  siteB = { bed: bedB, kubeconfig, kube: kubeB, apps: kubeB.kc.makeApiClient(AppsV1Api), core: kubeB.kc.makeApiClient(CoreV1Api), pg: postgresOn(() => pgB.superuserUrl), stopPg: pgB.stop, redis: await startScratchRedis() };

  ({ server: app.server, port: app.port } = await listen((req, res) => {
    const [, what, db, redisDb] = (req.url ?? '').split('/');
    const answer = (ok: boolean) => res.writeHead(ok ? 200 : 503).end(ok ? 'ok' : 'not ok');
    if (what === 'ready') return answer(!app.failReady);
    if (what === 'config') return configPointsAtDrill(db!).then(answer, () => answer(false));
    healthOf(db!, Number(redisDb)).then(answer, () => answer(false));
  }));
  ({ server: webhook.server, port: webhook.port } = await listen((req, res) => {
    webhook.calls.push(String(req.headers['idempotency-key']));
    req.resume().on('end', () => res.writeHead(204).end());
  }));

  await createObjects(namespace);
  await bedPostgres.createSampleDatabase(DB, 5000);
  await fillRedis(redis.live);
  fillFiles(swarm);
  const drill = systemConfig({ kubeconfig: bed.kubeconfigPath }, drillNamespace, rehearsal, redis.drillLive, redis.drillStaging, DRILL_DB, 'DRILL_REDIS_URL');
  // The drill's application must reach the scratch database: its configuration is overridden on restore, and checked.
  const drillConfig = {
    ...drill,
    backup: { components: drill.backup.components.map((c) => (c.kind === 'kubernetes' ? { ...c, overrides: DRILL_OVERRIDES } : c)) },
    recovery: { ...drill.recovery, scratch: true, health: [...drill.recovery.health, { name: 'config', url: `http://127.0.0.1:${app.port}/config/${drillNamespace}` }] },
  };
  setup = testSetup('dr', { swarm: DB, flow: FLOW_DB, 'swarm-drill': DRILL_DB }, {
    swarm: systemConfig({ kubeconfig: bed.kubeconfigPath }, namespace, swarm, redis.live, redis.staging, DB, 'SWARM_REDIS_URL'),
    flow: systemConfig({ kubeconfig: siteB.kubeconfig, context: 'site-b' }, flowNamespace, flow, redis.flowLive, redis.flowStaging, FLOW_DB, 'FLOW_REDIS_URL'),
    'swarm-drill': drillConfig,
  });
  workerEnv = {
    FLOW_DATABASE_URL: siteB.pg.url(FLOW_DB),
    SWARM_REDIS_URL: redisUrl(redis.live),
    FLOW_REDIS_URL: redisUrl(redis.flowLive),
    DRILL_REDIS_URL: redisUrl(redis.drillLive),
    DRILL_DB_PASSWORD,
    DR_WEBHOOK: `http://127.0.0.1:${webhook.port}/switch`,
  };
  opsflow = await client(setup);
  worker = await startWorker(setup, workerEnv);
  workers.push(worker);
  await kube.workloads.waitForPodsReady({ kind: 'Deployment', namespace, name: 'api' }, { timeoutMs: 60_000 });
});

after(async () => {
  await opsflow?.close();
  for (const w of workers) await w.stop();
  await siteB?.bed.stop();
  await siteB?.stopPg();
  await siteB?.redis.stop();
  await bed?.stop();
  app.server?.close();
  webhook.server?.close();
  await dropDatabase(DB);
  await dropRetired(DB);
  rmSync(dir, { recursive: true, force: true });
});

/** Kills the worker (SIGKILL) and starts a new one; one at a time, whoever asks. */
let restarting = Promise.resolve();
function restartWorker(): Promise<void> {
  restarting = restarting.then(async () => {
    await worker.kill();
    worker = await startWorker(setup, workerEnv);
    workers.push(worker);
  });
  return restarting;
}

/**
 * Follows a run's history as it is written and, at each step `killAt`
 * picks, kills the worker the moment the step is scheduled, then starts a new
 * one: the step loses its worker before, during or just after its call.
 * Steps are "<activity> <component or workload>", or "child <workflow type>".
 * Waits for a run that is not there yet (a child). Returns the steps killed at.
 */
async function killingAt(workflowId: string, killAt: (step: string) => boolean = () => true): Promise<string[]> {
  const killedAt: string[] = [];
  let nextPageToken: Uint8Array | undefined;
  for (;;) {
    let page;
    try {
      page = await opsflow.temporal.workflowService.getWorkflowExecutionHistory({ namespace: 'default', execution: { workflowId }, waitNewEvent: true, nextPageToken });
    } catch (err) {
      if ((err as { code?: number }).code !== 5) throw err; // NOT_FOUND: not started yet
      await new Promise((resolve) => setTimeout(resolve, 100));
      continue;
    }
    for (const event of page.history?.events ?? []) {
      const step = stepOf(event);
      if (step === undefined || !killAt(step)) continue;
      killedAt.push(step);
      await restartWorker();
    }
    if (!page.nextPageToken?.length) return killedAt; // the run is closed
    nextPageToken = page.nextPageToken;
  }
}

function stepOf(event: proto.temporal.api.history.v1.IHistoryEvent): string | undefined {
  const child = event.startChildWorkflowExecutionInitiatedEventAttributes;
  if (child) return `child ${child.workflowType?.name}`;
  const scheduled = event.activityTaskScheduledEventAttributes;
  if (!scheduled) return undefined;
  const [input] = (scheduled.input?.payloads ?? []).map((p) => JSON.parse(Buffer.from(p.data!).toString()) as { component?: { name: string }; workload?: string });
  return [scheduled.activityType?.name, input?.component?.name ?? input?.workload].filter(Boolean).join(' ');
}

describe('disaster recovery of a sample system on the bed', () => {
  let backupId: string;
  let expected: Fingerprint;

  it('backs up the whole system as one set', async () => {
    expected = await fingerprint();
    const run = await opsflow.startBackup({ system: 'swarm' });
    const result = await run.result();
    backupId = result.backupId;
    assert.deepEqual(result.manifest!.components.map((c) => c.name), ['config', 'runtime', 'memory', 'data', 'postgres', 'cache']);
  });

  it('recovers every component with the worker killed at every step in turn', { timeout: 540_000 }, async () => {
    await changeEverything('before-dr');
    const changed = await fingerprint();
    for (const part of ['tables', 'redis', 'data', 'runtime', 'memory', 'objects'] as const) assert.notDeepEqual(changed.state[part], expected.state[part], `${part} changed`);
    webhook.calls.length = 0;

    const started = Date.now();
    const run = await opsflow.startDisasterRecovery({ system: 'swarm', backup: backupId, approved: true });
    const killedAt = await killingAt(run.workflowId);
    const result = await run.result();
    const wallSeconds = (Date.now() - started) / 1000;
    process.stderr.write(`[dr] ${killedAt.length} kills, at: ${killedAt.join(' | ')}; ${wallSeconds.toFixed(1)} s wall, RTO reported ${result.rtoSeconds} s\n`);

    const expectedSteps = [
      'findBackup', 'recoveryWorkloads',
      ...['data', 'postgres', 'cache', 'config'].map((c) => `stageComponent ${c}`),
      'scaleWorkloadDown api',
      ...['data', 'postgres', 'cache', 'config'].map((c) => `swapInComponent ${c}`),
      'scaleWorkloadBack api', 'waitForPodsReady api',
      'stageComponent runtime', 'stageComponent memory', 'swapInComponent runtime', 'swapInComponent memory', 'restartWorkload api', 'waitForRollout api', 'waitForPodsReady api',
      'recoveryHealth', 'switchTraffic',
      ...['config', 'runtime', 'memory', 'data', 'postgres', 'cache'].map((c) => `discardComponent ${c}`),
    ];
    // Each step killed once at least; one whose activity was running when killed ran again.
    assert.deepEqual([...new Set(killedAt)], [...new Set(expectedSteps)], 'the worker was killed at every step, in order');
    assertSame(await fingerprint(), expected, 'every component as in the set');
    assert.deepEqual(await deploymentState(), { replicas: 3, held: undefined });
    await kube.workloads.waitForPodsReady({ kind: 'Deployment', namespace, name: 'api' }, { timeoutMs: 60_000 });
    assert.equal(result.dryRun, false);
    assert.ok(result.health?.every((h) => h.ok), 'health checks passed');
    assert.equal(result.trafficSwitched, true);
    assert.deepEqual([...new Set(webhook.calls)], [run.workflowId], 'one switch, keyed by the run (a repeat carries the same key)');
    assert.deepEqual(await leftovers(DB, swarm, redis.staging), []);
    assert.ok(result.rtoSeconds! > 0 && result.rpoSeconds! >= 0);
    await dropRetired(DB);
  });

  it('a failure after every component was swapped in puts the live system back as it was, and says so', async () => {
    await changeEverything('before-failed-dr');
    const before = await fingerprint();
    assert.equal('ConfigMap/feature-flags' in before.state.objects, false);
    app.failReady = true;
    try {
      const run = await opsflow.startDisasterRecovery({ system: 'swarm', backup: backupId, approved: true });
      await assert.rejects(run.result(), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError);
        assert.match(innermostMessage(err), /health checks failed after recovery: ready/);
        return true;
      });
      const status = await opsflow.status(run.workflowId);
      const compensated = status.steps.filter((s) => s.state === 'compensated').map((s) => s.name);
      for (const c of ['put back postgres', 'put back cache', 'put back data', 'put back config', 'put back runtime', 'put back memory', 'scale back (compensation)']) {
        assert.ok(compensated.includes(c), `"${c}" ran (compensated: ${compensated.join(', ')})`);
      }
      assert.equal(status.phase, 'failed');
    } finally {
      app.failReady = false;
    }
    assertSame(await fingerprint(), before, 'the live system as it was before the recovery');
    assert.deepEqual(await deploymentState(), { replicas: 3, held: undefined });
    assert.deepEqual(await leftovers(DB, swarm, redis.staging), []);
    await dropRetired(DB);
  });

  it('a drill restores the newest set into scratch places, leaves nothing behind, and records RTO and RPO', async () => {
    const databasesBefore = (await sql<{ datname: string }>('postgres', 'SELECT datname FROM pg_database')).map((d) => d.datname).sort();
    const namespacesBefore = (await core.listNamespace()).items.map((n) => n.metadata!.name).sort();
    const run = await opsflow.startDrill({ system: 'swarm', backup: 'latest' });
    const result = await run.result();
    assert.equal(result.backupId, backupId);
    assert.match(result.components.config!, /applied into scratch namespace swarm-verify-\w+ and read back, configuration data equal/);
    assert.match(result.components.postgres!, /restored into dr_app_verify_/);
    assert.ok(result.rtoSeconds >= 0 && result.rpoSeconds > 0);

    assert.deepEqual((await sql<{ datname: string }>('postgres', 'SELECT datname FROM pg_database')).map((d) => d.datname).sort(), databasesBefore, 'no scratch database left');
    assert.deepEqual((await core.listNamespace()).items.map((n) => n.metadata!.name).sort(), namespacesBefore, 'no scratch namespace left');
    const records = await drillRecords();
    assert.equal(records.length, 1);
    const record = records[0]!;
    assert.equal(record.backupId, backupId);
    assert.equal(record.rtoSeconds, result.rtoSeconds);
    assert.equal(record.rpoSeconds, result.rpoSeconds);
    assert.equal(record.ok, true);
  });

  it('a drill into a scratch system recovers the whole set there with the worker killed at its steps, checks the application, empties the scratch system and leaves the live one alone', { timeout: 300_000 }, async () => {
    const live = await fingerprint();
    const databasesBefore = (await sql<{ datname: string }>('postgres', 'SELECT datname FROM pg_database')).map((d) => d.datname).sort();
    const drillsBefore = await drillRecords();

    const run = await opsflow.startDrill({ system: 'swarm', backup: 'latest', into: 'swarm-drill' });
    // Every step of the drill itself, and two of the recovery it runs (its database swap and its health check).
    const [killedAt, killedInRecovery] = await Promise.all([
      killingAt(run.workflowId),
      killingAt(`recover/${drillNamespace}`, (step) => step === 'swapInComponent postgres' || step === 'recoveryHealth'),
    ]);
    const result = await run.result();
    process.stderr.write(`[drill] killed at: ${[...killedAt, ...killedInRecovery].join(' | ')}; RTO ${result.rtoSeconds} s\n`);
    assert.deepEqual(killedAt, ['drillPlace', 'child disasterRecovery', 'tearDownScratch', 'rpoTarget', 'recordDrill']);
    assert.deepEqual(killedInRecovery, ['swapInComponent postgres', 'recoveryHealth']);

    assert.equal(result.into, 'swarm-drill');
    assert.equal(result.backupId, backupId);
    assert.match(result.components.postgres!, /^dr_drill_\w+: \d+ tables, \d+ rows, as in the manifest$/);
    assert.deepEqual(Object.keys(result.components).sort(), ['cache', 'config', 'data', 'memory', 'postgres', 'runtime']);
    // /health reads the scratch database and Redis database: they held the set while the application ran on them.
    // /config: the scratch namespace's ConfigMap and Secret held the overrides, not the set's production values.
    assert.deepEqual(result.health?.map((h) => [h.name, h.ok]), [['health', true], ['ready', true], ['config', true]]);
    assert.deepEqual(Object.keys(result.tornDown ?? {}).sort(), ['cache', 'config', 'data', 'memory', 'postgres', 'runtime']);
    assert.ok(result.rtoSeconds > 0 && result.rpoSeconds > 0);

    // Nothing of the scratch system is left, nothing of the live one changed.
    await assert.rejects(core.readNamespace({ name: drillNamespace }), 'the scratch namespace is gone');
    assert.deepEqual((await sql<{ datname: string }>('postgres', 'SELECT datname FROM pg_database')).map((d) => d.datname).sort(), databasesBefore, 'no scratch database left');
    await assertScratchRedisEmpty();
    for (const path of Object.values(rehearsal)) assert.equal(existsSync(path), false, `${path} removed`);
    assert.deepEqual(await leftovers(DRILL_DB, rehearsal, redis.drillStaging), []);
    assertSame(await fingerprint(), live, 'the live system untouched');
    assert.deepEqual(await deploymentState(), { replicas: 3, held: undefined });

    // The override's secret was resolved in the worker only: never in either run's history.
    for (const workflowId of [run.workflowId, `recover/${drillNamespace}`]) {
      const history = await opsflow.temporal.workflowService.getWorkflowExecutionHistory({ namespace: 'default', execution: { workflowId } });
      const text = historyText(history);
      assert.ok(text.includes(DRILL_DB), 'payloads are read as text');
      for (const form of [DRILL_DB_PASSWORD, Buffer.from(DRILL_DB_PASSWORD).toString('base64')]) assert.equal(text.includes(form), false, `${form} in the history of ${workflowId}`);
    }

    // Done once: one recovery run, one record with the result's RTO and RPO.
    const history = await opsflow.temporal.workflowService.getWorkflowExecutionHistory({ namespace: 'default', execution: { workflowId: run.workflowId } });
    assert.equal(history.history!.events!.filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes).length, 1);
    const records = (await drillRecords()).filter((r) => !drillsBefore.some((b) => b.at === r.at));
    assert.equal(records.length, 1);
    assert.deepEqual([records[0]!.into, records[0]!.rtoSeconds, records[0]!.rpoSeconds, records[0]!.ok], ['swarm-drill', result.rtoSeconds, result.rpoSeconds, true]);
  });

  it('a drill whose recovery fails (the application never gets ready) fails saying so, and still empties the scratch system', async () => {
    const live = await fingerprint();
    app.failReady = true;
    try {
      const run = await opsflow.startDrill({ system: 'swarm', backup: 'latest', into: 'swarm-drill' });
      await assert.rejects(run.result(), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError);
        assert.match(innermostMessage(err), /health checks failed after recovery: ready/);
        return true;
      });
      const steps = (await opsflow.status(run.workflowId)).steps;
      assert.equal(steps.find((s) => s.name === 'tear down')?.state, 'done', steps.map((s) => `${s.name} ${s.state}`).join(', '));
    } finally {
      app.failReady = false;
    }
    await assert.rejects(core.readNamespace({ name: drillNamespace }), 'the scratch namespace is gone');
    assert.equal(await databaseExists(DRILL_DB), false);
    await assertScratchRedisEmpty();
    for (const path of Object.values(rehearsal)) assert.equal(existsSync(path), false, `${path} removed`);
    assert.deepEqual(await leftovers(DRILL_DB, rehearsal, redis.drillStaging), []);
    assertSame(await fingerprint(), live, 'the live system untouched');
  });

  it('recovers into new infrastructure (another cluster, by a context of the kubeconfig; another database server and Redis server), verifies it and switches traffic', async () => {
    await siteB.pg.createSampleDatabase(FLOW_DB, 10); // the new database server's database: exists, holds nothing of the set
    await siteB.core.createNamespace({ body: { metadata: { name: flowNamespace } } });
    mkdirSync(flow.data, { recursive: true });
    mkdirSync(flow.runtime, { recursive: true });
    webhook.calls.length = 0;

    const run = await opsflow.startDisasterRecovery({ system: 'flow', from: 'swarm', backup: backupId, approved: true });
    const result = await run.result();
    const steps = (await opsflow.status(run.workflowId)).steps;
    assert.match(steps.find((s) => s.name === 'scale-down')!.detail!, /api not there yet \(new infrastructure\)/);

    assertSame(await fingerprint(flowNamespace, flow, FLOW_DB, redis.flowLive, siteB.kube), expected, 'the new place holds the set');
    assert.equal((await deploymentState(flowNamespace, siteB.apps)).replicas, 3);
    await siteB.kube.workloads.waitForPodsReady({ kind: 'Deployment', namespace: flowNamespace, name: 'api' }, { timeoutMs: 60_000 });
    await assert.rejects(core.readNamespace({ name: flowNamespace }), 'nothing of it in the first cluster');
    assert.equal(await databaseExists(FLOW_DB), false, 'nor on the first database server');
    assert.ok(result.health?.every((h) => h.ok));
    assert.deepEqual(webhook.calls, [run.workflowId]);
    assert.deepEqual(await leftovers(FLOW_DB, flow, redis.flowStaging), []);
  });
});

/** One kubeconfig with a context per site: each bed calls its cluster "bed" and its user "admin", so each is renamed after its site. */
function twoSiteKubeconfig(path: string, sites: Record<string, string>): string {
  const merged = { apiVersion: 'v1', kind: 'Config', clusters: [] as unknown[], users: [] as unknown[], contexts: [] as unknown[], 'current-context': Object.keys(sites)[0] };
  for (const [site, file] of Object.entries(sites)) {
    const kc = new KubeConfig();
    kc.loadFromFile(file);
    const cluster = kc.getCurrentCluster()!;
    const user = kc.getCurrentUser()!;
    merged.clusters.push({ name: site, cluster: { server: cluster.server, 'insecure-skip-tls-verify': cluster.skipTLSVerify || undefined, 'certificate-authority-data': cluster.caData } });
    merged.users.push({ name: site, user: { token: user.token, 'client-certificate-data': user.certData, 'client-key-data': user.keyData } });
    merged.contexts.push({ name: site, context: { cluster: site, user: site } });
  }
  writeFileSync(path, JSON.stringify(merged), { mode: 0o600 });
  return path;
}

async function drillRecords(): Promise<{ at: string; backupId: string; into?: string; rtoSeconds: number; rpoSeconds: number; ok: boolean }[]> {
  const store = bedStore();
  const records = [];
  for await (const { key } of store.listKeys(`${setup.prefix}/swarm/drills/`)) records.push(await store.getJson(key));
  return records as Awaited<ReturnType<typeof drillRecords>>;
}
