/**
 * Records workflow histories for the replay test on a fresh bed and writes
 * each to test/replay/histories/:
 *
 *   postgres    backup; restore into a copy, a swap with approval, a failing
 *               restore (backup.json, restore-*.json)
 *   sets        an encrypted set (PostgreSQL, Redis, files, SQLite): backup,
 *               whole-set restore, verify, drill (in scratch places, and into
 *               a scratch system), retention dry run, disaster recovery, and
 *               one whose health check fails and is put back (set-*.json)
 *   kubernetes  a maintenance window ended early; deploys that complete (with
 *               a migration Job and a bake), are rolled back automatically (a
 *               bad image), are paused mid-bake and aborted (maintenance.json,
 *               deploy-*.json), on a local control plane with kwok nodes and a
 *               real Prometheus scraping a stand-in application
 *
 * Run again when a workflow changes in a way that is meant to break replay
 * (and guard old runs with patched()). Name groups to record only those:
 *
 *   node --import tsx test/replay/record.ts               # all
 *   node --import tsx test/replay/record.ts kubernetes    # maintenance and deploy only
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { readToolsEnv, startBed, REPO_ROOT } from '../../deploy/bed/bed.ts';
import { build } from '../../workers/build.ts';
import type { OpsflowClient } from '../../src/client.ts';
import type { WorkerProcess } from '../support/bed.ts';

const GROUPS = ['postgres', 'sets', 'kubernetes'] as const;
type Group = (typeof GROUPS)[number];
const requested = process.argv.slice(2);
for (const g of requested) if (!(GROUPS as readonly string[]).includes(g)) throw new Error(`unknown group ${g} (groups: ${GROUPS.join(', ')})`);
const selected = (group: Group) => requested.length === 0 || requested.includes(group);

const dir = mkdtempSync(join(tmpdir(), 'opsflow-record-'));
const bed = await startBed({ dir });
Object.assign(process.env, bed.env, { OPSFLOW_TEST_DIR: dir });
const { testSetup, startWorker, client, eventually } = await import('../support/bed.ts');

await build();
const out = join(REPO_ROOT, 'test/replay/histories');
/** Cleanups, run last first whatever happens. */
const cleanups: (() => Promise<unknown>)[] = [];

/** Exports a run's history the standard way, as `temporal workflow show --output json` does. */
async function save(name: string, run: { workflowId: string; handle: { describe(): Promise<{ runId: string }> } }) {
  const { runId } = await run.handle.describe();
  const json = execFileSync(readToolsEnv().OPSFLOW_TEMPORAL_BIN!, [
    'workflow', 'show', '--address', bed.temporalAddress, '--workflow-id', run.workflowId, '--run-id', runId, '--output', 'json',
  ]);
  writeFileSync(join(out, `${name}.json`), json);
  console.log(`recorded ${name}.json (${run.workflowId}, ${json.length} bytes)`);
}

/** Waits until the run's status shows `phase`. */
async function phaseOf(opsflow: OpsflowClient, workflowId: string, phase: string) {
  return eventually(`phase ${phase} of ${workflowId}`, async () => (await opsflow.status(workflowId)).phase === phase, 90_000);
}

/** Fails the recording when a run ended otherwise than the scenario means. */
function expectFailure(what: string, pattern: RegExp) {
  return (err: Error) => {
    const { innermost } = unwrap(err);
    if (!pattern.test(innermost)) throw new Error(`${what}: expected a failure matching ${pattern}, got: ${innermost}`);
  };
}
function unwrap(err: unknown): { innermost: string } {
  let e = err as { message?: string; cause?: unknown } | undefined;
  let message = String(err);
  while (e) {
    if (e.message) message = e.message;
    e = e.cause as typeof e;
  }
  return { innermost: message };
}

async function recordPostgres() {
  const { createSampleDatabase, dropDatabase } = await import('../support/data.ts');
  const setup = testSetup('record', { shop: 'record_app' });
  cleanups.push(async () => { for (const db of ['record_app', 'record_app_old', 'record_copy']) await dropDatabase(db); });
  await createSampleDatabase('record_app', 500);
  const worker = await startWorker(setup);
  cleanups.push(() => worker.stop());
  const opsflow = await client(setup);
  cleanups.push(() => opsflow.close());

  const backup = await opsflow.startBackup({ system: 'shop' });
  await backup.result();
  await save('backup', backup);

  const into = await opsflow.startRestore({ system: 'shop', into: 'record_copy' });
  await into.result();
  await save('restore-into-local-steps', into); // restore-into.json: from before the quick steps ran locally

  const swap = await opsflow.startRestore({ system: 'shop' });
  await eventually('approval', async () => (await opsflow.status(swap.workflowId)).awaitingApproval);
  await opsflow.approve(swap.workflowId, 'recorder');
  await swap.result();
  await save('restore-swap-approved', swap);

  const failing = await opsflow.startRestore({ system: 'shop', into: 'record_copy' }); // exists now: conflict
  await failing.result().catch(() => undefined);
  await save('restore-conflict-local-steps', failing);
}

async function recordSets() {
  const { randomBytes } = await import('node:crypto');
  const { mkdirSync, writeFileSync: write } = await import('node:fs');
  const { createSampleDatabase, dropDatabase } = await import('../support/data.ts');
  const { Redis } = await import('ioredis');
  const files = join(dir, 'sets-data');
  mkdirSync(files, { recursive: true });
  write(join(files, 'state.json'), '{"epoch": 1}');
  execFileSync('sqlite3', [join(dir, 'sets.db'), 'CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);']);
  const redisUrl = `redis://127.0.0.1:${bed.env.BED_REDIS_PORT}/3`;
  const redis = new Redis(redisUrl);
  await redis.mset('a', '1', 'b', '2');
  redis.disconnect();
  await createSampleDatabase('record_sets', 300);
  cleanups.push(async () => { await dropDatabase('record_sets'); });
  const sets = {
    redis: { url: { env: 'SETS_REDIS_URL' } },
    backup: {
      components: [
        { kind: 'postgres' },
        { kind: 'redis', name: 'cache', stagingDb: 4 },
        { kind: 'files', name: 'data', path: files },
        { kind: 'sqlite', name: 'hive', path: join(dir, 'sets.db') },
      ],
      encryption: { current: 'k1', keys: { k1: { env: 'SETS_KEY' } } },
      retention: { keepLast: 3, daily: 7 },
      rpoTargetHours: 24,
    },
  };
  // The same places, with a health check that fails: a recovery that is put back.
  const broken = { ...sets, recovery: { health: [{ name: 'health', url: 'http://127.0.0.1:9/health', timeoutMs: 500 }] } };
  // A scratch system of its own places, which a drill recovers into and empties.
  const rehearsal = {
    redis: { url: { env: 'REHEARSAL_REDIS_URL' } },
    backup: {
      components: [
        { kind: 'postgres' },
        { kind: 'redis', name: 'cache', stagingDb: 6 },
        { kind: 'files', name: 'data', path: join(dir, 'rehearsal-data') },
        { kind: 'sqlite', name: 'hive', path: join(dir, 'rehearsal.db') },
      ],
    },
    recovery: { scratch: true },
  };
  const setup = testSetup('record-sets', { sets: 'record_sets', broken: 'record_sets', rehearsal: 'record_rehearsal' }, { sets, broken, rehearsal });
  const worker = await startWorker(setup, { SETS_REDIS_URL: redisUrl, REHEARSAL_REDIS_URL: `redis://127.0.0.1:${bed.env.BED_REDIS_PORT}/5`, SETS_KEY: randomBytes(32).toString('base64') });
  cleanups.push(() => worker.stop());
  const opsflow = await client(setup);
  cleanups.push(() => opsflow.close());

  const backup = await opsflow.startBackup({ system: 'sets' });
  const { backupId } = await backup.result();
  await save('set-backup', backup);
  const runs: [string, () => Promise<{ workflowId: string; handle: { describe(): Promise<{ runId: string }> }; result(): Promise<unknown> }>][] = [
    ['set-restore', () => opsflow.startRestore({ system: 'sets', backup: backupId, approved: true })],
    ['set-verify', () => opsflow.startVerify({ system: 'sets', backup: backupId })],
    ['set-drill', () => opsflow.startDrill({ system: 'sets', backup: 'latest' })],
    ['set-drill-into', () => opsflow.startDrill({ system: 'sets', backup: 'latest', into: 'rehearsal' })],
    ['set-retention', () => opsflow.startRetention({ system: 'sets', dryRun: true })],
    ['set-disaster-recovery', () => opsflow.startDisasterRecovery({ system: 'sets', backup: backupId, approved: true })],
  ];
  for (const [name, start] of runs) {
    const run = await start(); // one at a time: restore and recovery of a system share a lock
    await run.result();
    await save(name, run);
  }
  const failing = await opsflow.startDisasterRecovery({ system: 'broken', from: 'sets', backup: backupId, approved: true });
  await failing.result().then(() => { throw new Error('the broken recovery succeeded'); }, expectFailure('broken recovery', /health checks failed/));
  await save('set-disaster-recovery-failed', failing);
}

async function recordKubernetes() {
  const { AppsV1Api, CoreV1Api } = await import('@kubernetes/client-node');
  const { FAKE_NODE_SELECTOR, FAKE_NODE_TOLERATION, startKubernetes } = await import('../../deploy/bed/kubernetes/cluster.ts');
  const { startDemoApp } = await import('../../deploy/bed/exporter.ts');
  const { startMonitoring } = await import('../../deploy/bed/monitoring.ts');
  const { Kubernetes } = await import('../../src/adapters/kubernetes/index.ts');
  const { testDeployment, testStatefulSet } = await import('../support/kubernetes.ts');

  const namespace = 'shop';
  const kubeBed = await startKubernetes({ dir: join(dir, 'kubernetes') });
  cleanups.push(() => kubeBed.stop());
  const kube = Kubernetes.connect({ kubeconfig: kubeBed.kubeconfigPath });
  const apps = kube.kc.makeApiClient(AppsV1Api);
  await kube.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
  // A long progress deadline: the bad release must be caught by opsflow's analysis, not by the controller.
  const web = testDeployment('web', 'example/web:v1', 3);
  web.spec!.progressDeadlineSeconds = 120;
  await apps.createNamespacedDeployment({ namespace, body: web });
  await apps.createNamespacedStatefulSet({ namespace, body: testStatefulSet('worker', 'example/worker:v1', 2) });
  const app = await startDemoApp();
  cleanups.push(() => app.stop());
  const monitoring = await startMonitoring({ dir: join(dir, 'monitoring'), scrapeTargets: [app.hostPort] });
  cleanups.push(() => monitoring.stop());

  const kubernetes = (workloads: object[]) => ({
    kubeconfig: kubeBed.kubeconfigPath,
    namespace,
    workloads,
    readyTimeoutSeconds: 60,
    podPlacement: { nodeSelector: FAKE_NODE_SELECTOR, tolerations: [FAKE_NODE_TOLERATION] },
  });
  const deploy = {
    checks: { database: false, http: [{ name: 'health', url: `${app.url}/health` }] },
    analysis: {
      intervalSeconds: 2,
      failureLimit: 2,
      bakeSeconds: 4,
      prometheus: { url: monitoring.prometheusUrl },
      queries: [{ name: 'error-ratio', query: 'sum(rate(http_requests_total{code=~"5.."}[5s])) / sum(rate(http_requests_total[5s]))', max: 0.1 }],
      probes: [{ name: 'ready', url: `${app.url}/ready` }],
    },
  };
  const webOnly = kubernetes([{ kind: 'Deployment', name: 'web' }]);
  // Systems only hold config here: no database is reached (checks.database is off, maintenance has no postgres step).
  const setup = testSetup('record-kubernetes', { shop: 'shop', 'shop-migrating': 'shop', 'shop-maintenance': 'shop' }, {
    shop: { kubernetes: webOnly, deploy },
    'shop-migrating': { kubernetes: webOnly, deploy: { ...deploy, migration: { command: ['./migrate', 'up'], timeoutSeconds: 60 } } },
    'shop-maintenance': { kubernetes: kubernetes([{ kind: 'Deployment', name: 'web' }, { kind: 'StatefulSet', name: 'worker' }]) },
  });
  const worker: WorkerProcess = await startWorker(setup);
  cleanups.push(() => worker.stop());
  const opsflow = await client(setup);
  cleanups.push(() => opsflow.close());
  await kube.workloads.waitForPodsReady({ kind: 'Deployment', namespace, name: 'web' }, { timeoutMs: 60_000 });
  await kube.workloads.waitForPodsReady({ kind: 'StatefulSet', namespace, name: 'worker' }, { timeoutMs: 60_000 });
  const image = async () => (await apps.readNamespacedDeployment({ namespace, name: 'web' })).spec?.template.spec?.containers[0]?.image;

  // Scaled to 0, ended early by a person: scale-back and wait-ready follow.
  const window = await opsflow.startMaintenance({ system: 'shop-maintenance', reason: 'reindex', durationSeconds: 600, scaleTo: 0 });
  await phaseOf(opsflow, window.workflowId, 'window');
  await opsflow.endMaintenance(window.workflowId, 'recorder');
  const ended = await window.result();
  if (ended.endedBy !== 'recorder') throw new Error(`maintenance ended by ${ended.endedBy}`);
  await save('maintenance', window);

  // Migration Job, rollout, a 4 s bake, done.
  const good = await opsflow.startDeploy({ system: 'shop-migrating', images: { app: 'example/web:v2' }, changeCause: 'release 2', bakeSeconds: 4 });
  await good.result();
  if ((await image()) !== 'example/web:v2') throw new Error(`good deploy left ${await image()}`);
  await save('deploy-good', good);

  // Pods never Ready: rolled back by the analysis.
  const bad = await opsflow.startDeploy({ system: 'shop', images: { app: 'example/web:bad' } });
  await bad.result().then(() => { throw new Error('the bad deploy succeeded'); }, expectFailure('bad deploy', /rolled back to app=example\/web:v2: new pods fail to start/));
  if ((await image()) !== 'example/web:v2') throw new Error(`bad deploy left ${await image()}`);
  await save('deploy-rolled-back', bad);

  // Paused mid-bake by a person, then aborted: rolled back from the paused state.
  const paused = await opsflow.startDeploy({ system: 'shop', images: { app: 'example/web:v3' }, bakeSeconds: 120 });
  await phaseOf(opsflow, paused.workflowId, 'bake');
  await opsflow.controlDeploy(paused.workflowId, 'pause', 'recorder');
  await phaseOf(opsflow, paused.workflowId, 'paused');
  await opsflow.controlDeploy(paused.workflowId, 'abort', 'recorder');
  await paused.result().then(() => { throw new Error('the aborted deploy succeeded'); }, expectFailure('aborted deploy', /rolled back to app=example\/web:v2: aborted by recorder while paused/));
  if ((await image()) !== 'example/web:v2') throw new Error(`aborted deploy left ${await image()}`);
  await save('deploy-paused-aborted', paused);
}

let failed = false;
try {
  if (selected('postgres')) await recordPostgres();
  if (selected('sets')) await recordSets();
  if (selected('kubernetes')) await recordKubernetes();
  console.log(`histories written to ${out}`);
} catch (err) {
  failed = true;
  console.error(err);
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup().catch((err: Error) => console.error(`cleanup: ${err.message}`));
  await bed.stop();
  if (!failed) rmSync(dir, { recursive: true, force: true });
  else console.error(`bed files kept in ${dir}`);
}
process.exit(failed ? 1 : 0);
