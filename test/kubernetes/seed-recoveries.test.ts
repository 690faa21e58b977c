/**
 * The recoveries of three seed runbooks, each expressed in opsflow's config
 * and run as a `disasterRecovery` on the whole bed (real Temporal,
 * PostgreSQL, Redis, MinIO, control plane with kwok). MindSwarm's and Claude
 * Flow's are in disaster-recovery.test.ts.
 *
 * - MAOS (002): scale to 0, database, Redis, checkpoints, config, scale back
 *   to 3, wait for pods Ready (up to 300 s).
 * - Agent Hive (001): the SQLite database and the config directory, both
 *   inside the orchestrator's pod (reached through the exec API; kwok runs
 *   the commands on this machine), restored while it runs, then its pods
 *   replaced (`rollout restart`).
 * - Principles Gym (003): a separate recovery database, row counts checked
 *   against the set, rename swap (live → `_old`), scaled down and up around it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { Redis } from 'ioredis';
import { startKubernetes, type KubernetesBed } from '../../deploy/bed/kubernetes/cluster.ts';
import { Kubernetes } from '../../src/adapters/kubernetes/index.ts';
import { treeDigest } from '../../src/adapters/files.ts';
import type { OpsflowClient } from '../../src/client.ts';
import { bedEnv, client, startWorker, testSetup, type TestSetup, type WorkerProcess } from '../support/bed.ts';
import { createSampleDatabase, dropDatabase, sql, tableChecksums } from '../support/data.ts';
import { testDeployment } from '../support/kubernetes.ts';

const DB = { maos: 'seed_maos', gym: 'seed_gym' };
const REDIS = { live: 1, staging: 2 };
const redisUrl = (db: number) => `redis://127.0.0.1:${bedEnv('BED_REDIS_PORT')}/${db}`;

let dir: string;
let bed: KubernetesBed;
let kube: Kubernetes;
let apps: AppsV1Api;
let setup: TestSetup;
let opsflow: OpsflowClient;
const workers: WorkerProcess[] = [];
const paths = () => ({
  checkpoints: join(dir, 'maos', 'checkpoints'),
  maosConfig: join(dir, 'maos', 'config'),
  hiveDb: join(dir, 'hive', 'hive.db'),
  hiveConfig: join(dir, 'hive', 'config'),
});

const kubernetes = (namespace: string, workload: string) => ({
  kubernetes: { kubeconfig: bed.kubeconfigPath, namespace, workloads: [{ kind: 'Deployment', name: workload }], readyTimeoutSeconds: 300 },
});

function writeTree(path: string, files: Record<string, string | Buffer>): void {
  rmSync(path, { recursive: true, force: true });
  mkdirSync(path, { recursive: true });
  for (const [name, content] of Object.entries(files)) writeFileSync(join(path, name), content);
}

function sqlite(file: string, sqlText: string): string {
  return execFileSync('sqlite3', [file, sqlText]).toString();
}

const sqliteDumpHash = (file: string) => createHash('sha256').update(execFileSync('sqlite3', [file, '.dump'])).digest('hex');

async function redisKeys(db: number): Promise<Record<string, string>> {
  const r = new Redis(redisUrl(db));
  const out: Record<string, string> = {};
  for (const key of (await r.keys('*')).sort()) out[key] = (await r.dumpBuffer(key))!.toString('hex');
  r.disconnect();
  return out;
}

async function podNames(namespace: string, app: string): Promise<string[]> {
  const pods = await kube.kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace, labelSelector: `app=${app}` });
  return pods.items.filter((p) => !p.metadata?.deletionTimestamp).map((p) => p.metadata!.name!).sort();
}

/** Backs up the system, lets `change` alter the live data, recovers, and returns the run's steps. */
async function backupChangeRecover(system: string, change: () => unknown) {
  const { backupId } = await (await opsflow.startBackup({ system })).result();
  await change();
  const run = await opsflow.startDisasterRecovery({ system, backup: backupId, approved: true });
  const result = await run.result();
  const steps = (await opsflow.status(run.workflowId)).steps;
  return { result, steps, names: steps.map((s) => s.name) };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'opsflow-k8s-seeds-'));
  bed = await startKubernetes({ dir, localExec: true });
  kube = Kubernetes.connect({ kubeconfig: bed.kubeconfigPath });
  apps = kube.kc.makeApiClient(AppsV1Api);
  const core = kube.kc.makeApiClient(CoreV1Api);
  for (const [namespace, app] of [['maos', 'orchestrator'], ['hive', 'orchestrator'], ['gym', 'api']] as const) {
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    await apps.createNamespacedDeployment({ namespace, body: testDeployment(app, `example/${app}:v1`, 3) });
  }
  const p = paths();
  setup = testSetup('seeds', { maos: DB.maos, hive: DB.maos, gym: DB.gym }, {
    maos: {
      ...kubernetes('maos', 'orchestrator'),
      redis: { url: { env: 'MAOS_REDIS_URL' } },
      backup: {
        components: [
          { kind: 'postgres' },
          { kind: 'redis', name: 'redis', mode: 'snapshot', stagingDb: REDIS.staging },
          { kind: 'files', name: 'checkpoints', path: p.checkpoints },
          { kind: 'files', name: 'config', path: p.maosConfig },
        ],
      },
    },
    hive: {
      ...kubernetes('hive', 'orchestrator'),
      backup: {
        components: [
          { kind: 'sqlite', name: 'database', path: p.hiveDb, pod: { workload: 'orchestrator' } },
          { kind: 'files', name: 'config', path: p.hiveConfig, pod: { workload: 'orchestrator' } },
        ],
      },
    },
    gym: kubernetes('gym', 'api'), // a postgres section and nothing else: the set is the database
  });
  opsflow = await client(setup);
  workers.push(await startWorker(setup, { MAOS_REDIS_URL: redisUrl(REDIS.live) }));
  for (const [namespace, name] of [['maos', 'orchestrator'], ['hive', 'orchestrator'], ['gym', 'api']] as const) {
    await kube.workloads.waitForPodsReady({ kind: 'Deployment', namespace, name }, { timeoutMs: 60_000 });
  }
});

after(async () => {
  await opsflow?.close();
  for (const w of workers) await w.stop();
  await bed?.stop();
  for (const db of [DB.maos, DB.gym]) {
    await dropDatabase(db);
    for (const { datname } of await sql<{ datname: string }>('postgres', 'SELECT datname FROM pg_database WHERE datname LIKE $1', [`${db}_old_%`])) await dropDatabase(datname);
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('the seed runbooks\' recoveries as opsflow config', () => {
  it('MAOS: scale 0, database, Redis, checkpoints, config, scale 3, wait Ready', async () => {
    const p = paths();
    await createSampleDatabase(DB.maos, 3000);
    const r = new Redis(redisUrl(REDIS.live));
    await r.flushdb();
    await r.mset('task:1', 'plan', 'task:2', 'code', 'agents', '7');
    writeTree(p.checkpoints, { 'step-1.ckpt': randomBytes(50_000), 'step-2.ckpt': randomBytes(50_000) });
    writeTree(p.maosConfig, { 'maos.yaml': 'agents: 7\n' });
    const expected = { tables: await tableChecksums(DB.maos), redis: await redisKeys(REDIS.live), checkpoints: await treeDigest(p.checkpoints), config: await treeDigest(p.maosConfig) };

    const { names, steps } = await backupChangeRecover('maos', async () => {
      await sql(DB.maos, 'DELETE FROM app.documents WHERE id % 2 = 0');
      await r.flushdb();
      writeTree(p.checkpoints, { 'step-3.ckpt': 'partial' });
      writeTree(p.maosConfig, { 'maos.yaml': 'agents: 0\n' });
    });
    r.disconnect();

    const order = ['scale-down', 'swap in postgres', 'swap in redis', 'swap in checkpoints', 'swap in config', 'scale-back', 'wait-ready', 'health'];
    assert.deepEqual(names.filter((n) => order.includes(n)), order, 'the runbook\'s order');
    assert.equal(steps.find((s) => s.name === 'wait-ready')!.detail, 'orchestrator Ready');
    assert.deepEqual(
      { tables: await tableChecksums(DB.maos), redis: await redisKeys(REDIS.live), checkpoints: await treeDigest(p.checkpoints), config: await treeDigest(p.maosConfig) },
      expected,
    );
    const orchestrator = await apps.readNamespacedDeployment({ namespace: 'maos', name: 'orchestrator' });
    assert.equal(orchestrator.spec?.replicas, 3);
    assert.equal(orchestrator.status?.readyReplicas, 3);
  });

  it('Agent Hive: the SQLite database and config back inside the pod, the orchestrator\'s pods replaced', async () => {
    const p = paths();
    mkdirSync(join(dir, 'hive'), { recursive: true });
    sqlite(p.hiveDb, "PRAGMA journal_mode=WAL; CREATE TABLE agents (id INTEGER PRIMARY KEY, name TEXT, state TEXT); INSERT INTO agents (name, state) VALUES ('architect', 'idle'), ('coder', 'busy'), ('reviewer', 'idle');");
    writeTree(p.hiveConfig, { 'hive.yaml': 'coordination: redis\n', 'agents.json': '["architect","coder","reviewer"]' });
    const expected = { database: sqliteDumpHash(p.hiveDb), config: await treeDigest(p.hiveConfig) };
    const podsBefore = await podNames('hive', 'orchestrator');

    const { names, steps } = await backupChangeRecover('hive', () => {
      sqlite(p.hiveDb, "DELETE FROM agents WHERE name = 'coder'; INSERT INTO agents (name, state) VALUES ('intruder', 'busy');");
      writeTree(p.hiveConfig, { 'hive.yaml': 'coordination: none\n' });
    });

    assert.deepEqual({ database: sqliteDumpHash(p.hiveDb), config: await treeDigest(p.hiveConfig) }, expected);
    // In the pod, then the restart that makes the application read them afresh; never scaled to 0, as the runbook never stops it.
    assert.ok(names.indexOf('swap in database') < names.indexOf('restart') && names.indexOf('swap in config') < names.indexOf('restart'), names.join(', '));
    assert.equal(steps.find((s) => s.name === 'scale-down')?.state, 'skipped');
    assert.equal(names.includes('scale-back'), false, names.join(', '));
    const podsAfter = await podNames('hive', 'orchestrator');
    assert.equal(podsAfter.length, 3, `pods now: ${podsAfter.join(', ')}; before: ${podsBefore.join(', ')}`);
    assert.deepEqual(podsAfter.filter((name) => podsBefore.includes(name)), [], 'every pod replaced: the restored files are read fresh');
  });

  it('Principles Gym: recovery database, row counts checked, rename swap, the old database kept', async () => {
    await createSampleDatabase(DB.gym, 2000);
    const expected = await tableChecksums(DB.gym);
    const { steps } = await backupChangeRecover('gym', () => sql(DB.gym, "DELETE FROM app.documents WHERE id <= 100; INSERT INTO audit.events (kind, at) VALUES ('lost write', now())"));

    assert.match(steps.find((s) => s.name === 'stage postgres')!.detail!, /^seed_gym_restore_\w+: \d+ tables, \d+ rows, as in the manifest$/);
    assert.deepEqual(await tableChecksums(DB.gym), expected);
    const [old] = await sql<{ datname: string }>('postgres', 'SELECT datname FROM pg_database WHERE datname LIKE $1', [`${DB.gym}_old_%`]);
    assert.ok(old, 'the replaced database is kept, renamed');
    // It is kept closed to connections, so nothing writes to it by mistake; open it to look inside.
    const [closed] = await sql<{ datallowconn: boolean }>('postgres', 'SELECT datallowconn FROM pg_database WHERE datname = $1', [old.datname]);
    assert.equal(closed!.datallowconn, false);
    await sql('postgres', `ALTER DATABASE "${old.datname}" ALLOW_CONNECTIONS true`);
    const [lost] = await sql<{ n: string }>(old.datname, "SELECT count(*) AS n FROM audit.events WHERE kind = 'lost write'");
    assert.equal(Number(lost!.n), 1, 'the renamed database is the one that was live');
    const order = steps.map((s) => s.name).filter((n) => ['stage postgres', 'scale-down', 'swap in postgres', 'scale-back'].includes(n));
    assert.deepEqual(order, ['stage postgres', 'scale-down', 'swap in postgres', 'scale-back']);
  });
});
