/**
 * The deploy workflow end to end on the beds: real Temporal, a real control
 * plane with kwok nodes, a real Prometheus scraping a stand-in application
 * whose error ratio the test sets, worker processes that get killed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api, Watch, type V1Deployment, type V1Pod } from '@kubernetes/client-node';
import { WorkflowFailedError } from '@temporalio/client';
import { FAKE_NODE_SELECTOR, FAKE_NODE_TOLERATION, startKubernetes, type KubernetesBed } from '../../deploy/bed/kubernetes/cluster.ts';
import { startDemoApp, type DemoApp } from '../../deploy/bed/exporter.ts';
import { startMonitoring, type Monitoring } from '../../deploy/bed/monitoring.ts';
import { Kubernetes } from '../../src/adapters/kubernetes/index.ts';
import type { OpsflowClient } from '../../src/client.ts';
import { ConflictError, innermostMessage } from '../../src/errors.ts';
import { bedEnv, client, eventually, startWorker, testSetup, type TestSetup, type WorkerProcess } from '../support/bed.ts';
import { freePort } from '../../deploy/bed/bed.ts';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { testDeployment } from '../support/kubernetes.ts';

const namespace = 'shop';
const ERROR_RATIO = 'sum(rate(http_requests_total{code=~"5.."}[5s])) / sum(rate(http_requests_total[5s]))';
const INTERVAL_SECONDS = 2;
let dir: string;
let bed: KubernetesBed;
let kube: Kubernetes;
let apps: AppsV1Api;
let app: DemoApp;
let monitoring: Monitoring;
let setup: TestSetup;
let opsflow: OpsflowClient;
let worker: WorkerProcess;
const workers: WorkerProcess[] = [];
interface Notification { event: string; text: string; system: string }
const notifications: Notification[] = [];
let receiver: Server;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'opsflow-k8s-deploy-'));
  bed = await startKubernetes({ dir });
  kube = Kubernetes.connect({ kubeconfig: bed.kubeconfigPath });
  apps = kube.kc.makeApiClient(AppsV1Api);
  await kube.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
  // A long progress deadline: a bad release must be caught by opsflow's own analysis, not by the controller.
  const web = testDeployment('web', 'example/web:v1', 3);
  web.spec!.progressDeadlineSeconds = 120;
  await apps.createNamespacedDeployment({ namespace, body: web });
  app = await startDemoApp();
  monitoring = await startMonitoring({ dir: join(dir, 'monitoring'), scrapeTargets: [app.hostPort] });

  const kubernetes = {
    kubeconfig: bed.kubeconfigPath,
    namespace,
    workloads: [{ kind: 'Deployment', name: 'web' }],
    podPlacement: { nodeSelector: FAKE_NODE_SELECTOR, tolerations: [FAKE_NODE_TOLERATION] },
  };
  const deploy = {
    checks: { database: false, http: [{ name: 'health', url: `${app.url}/health` }] },
    analysis: {
      intervalSeconds: INTERVAL_SECONDS,
      failureLimit: 2,
      bakeSeconds: 6,
      prometheus: { url: monitoring.prometheusUrl },
      queries: [{ name: 'error-ratio', query: ERROR_RATIO, max: 0.1 }],
      probes: [{ name: 'ready', url: `${app.url}/ready` }],
    },
  };
  // Notifications land here; the Redis check uses the bed's Redis, a second system a dead port.
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      notifications.push(JSON.parse(body) as Notification);
      res.end('ok');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  process.env.DEPLOY_WEBHOOK_URL = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  process.env.DEPLOY_REDIS_URL = `redis://127.0.0.1:${bedEnv('BED_REDIS_PORT')}/0`;
  process.env.DEAD_REDIS_URL = `redis://127.0.0.1:${await freePort()}/0`;
  const redis = { url: { env: 'DEPLOY_REDIS_URL' } };
  const notify = { webhook: { env: 'DEPLOY_WEBHOOK_URL' } };
  const unmeasurable = { ...deploy, analysis: { ...deploy.analysis, inconclusiveLimit: 2, queries: [{ name: 'latency', query: 'histogram_quantile(0.95, sum by (le) (rate(no_such_metric_bucket[1m])))', max: 0.5 }] } };
  const withMigration = { ...deploy, migration: { command: ['./migrate', 'up'], timeoutSeconds: 60 }, analysis: { ...deploy.analysis, bakeSeconds: 0 } };
  setup = testSetup('deploy', { shop: 'shop', 'shop-migrating': 'shop', 'shop-dark': 'shop', 'shop-redis-down': 'shop' }, {
    shop: { kubernetes, redis, deploy: { ...deploy, notify } },
    'shop-migrating': { kubernetes, deploy: withMigration },
    'shop-dark': { kubernetes, deploy: unmeasurable },
    'shop-redis-down': { kubernetes, redis: { url: { env: 'DEAD_REDIS_URL' } }, deploy },
  });
  opsflow = await client(setup);
  worker = await startWorker(setup);
  workers.push(worker);
  await kube.workloads.waitForRollout({ kind: 'Deployment', namespace, name: 'web' });
});

after(async () => {
  await opsflow?.close();
  for (const w of workers) await w.stop();
  await monitoring?.stop();
  receiver?.close();
  await app?.stop();
  await bed?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function image(): Promise<string | undefined> {
  return (await apps.readNamespacedDeployment({ namespace, name: 'web' })).spec?.template.spec?.containers[0]?.image;
}

/** Watches the Deployment and the pods for the length of `during`: the fewest available replicas seen, and when a pod first failed. */
async function observe<T>(during: () => Promise<T>): Promise<{ result: T; minAvailable: number; firstFailingPodAt?: number }> {
  const watch = new Watch(kube.kc);
  let minAvailable = Infinity;
  let firstFailingPodAt: number | undefined;
  const deployments = await watch.watch(`/apis/apps/v1/namespaces/${namespace}/deployments`, {}, (_phase, d: V1Deployment) => {
    minAvailable = Math.min(minAvailable, d.status?.availableReplicas ?? 0);
  }, () => undefined);
  const pods = await watch.watch(`/api/v1/namespaces/${namespace}/pods`, {}, (_phase, p: V1Pod) => {
    if (p.status?.containerStatuses?.some((c) => c.state?.waiting?.reason === 'CrashLoopBackOff')) firstFailingPodAt ??= Date.now();
  }, () => undefined);
  try {
    return { result: await during(), minAvailable, firstFailingPodAt };
  } finally {
    deployments.abort();
    pods.abort();
  }
}

async function phaseOf(workflowId: string, phase: string) {
  return eventually(`phase ${phase} of ${workflowId}`, async () => {
    const s = await opsflow.status(workflowId);
    return s.phase === phase ? s : undefined;
  }, 90_000);
}

async function scheduled(workflowId: string, activity: string): Promise<number> {
  const history = await opsflow.temporal.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activity).length;
}

describe('deploy', () => {
  it('a good image rolls out and bakes, and available replicas never drop below the desired count', async () => {
    const { result, minAvailable } = await observe(async () => {
      const run = await opsflow.startDeploy({ system: 'shop', images: { app: 'example/web:v2' }, changeCause: 'release 2' });
      await assert.rejects(opsflow.startDeploy({ system: 'shop', images: { app: 'example/web:v3' } }), (err: Error) =>
        err instanceof ConflictError && err.message.includes(`already running as workflow ${run.workflowId}`));
      return run.result();
    });
    assert.deepEqual(result.previousImages, { app: 'example/web:v1' });
    assert.ok(result.measurements >= 3, `${result.measurements} measurements`);
    assert.equal(await image(), 'example/web:v2');
    assert.equal(minAvailable, 3, `available replicas dropped to ${minAvailable}`);
    const checks = (await opsflow.status('deploy/shop')).steps.find((st) => st.name === 'checks');
    assert.equal(checks?.detail, 'redis ok, health ok');
    assert.deepEqual(notifications.map((n) => n.event), ['deployed']);
    assert.match(notifications[0]!.text, /^shop: deployed app=example\/web:v2 \(deploy\/shop\)$/);
    const d = await apps.readNamespacedDeployment({ namespace, name: 'web' });
    assert.match(d.metadata?.annotations?.['kubernetes.io/change-cause'] ?? '', /^opsflow deploy\/shop: release 2$/);
  });

  it('a bad image (pods never Ready) is rolled back within one analysis interval plus 5 s', async () => {
    const { result: err, firstFailingPodAt } = await observe(async () => {
      const run = await opsflow.startDeploy({ system: 'shop', images: { app: 'example/web:bad' } });
      return run.result().then(() => undefined, (e: Error) => ({ e, workflowId: run.workflowId }));
    });
    assert.ok(err, 'the deploy failed');
    assert.ok(err.e instanceof WorkflowFailedError);
    assert.match(innermostMessage(err.e), /rolled back to app=example\/web:v2: new pods fail to start \(web-[a-z0-9-]+: CrashLoopBackOff\)/);
    assert.equal(await image(), 'example/web:v2');
    assert.equal(notifications.at(-1)?.event, 'rolled-back');
    const status = await opsflow.status(err.workflowId);
    assert.equal(status.steps.find((s) => s.name === 'rollback')?.state, 'done');
    const startedAt = Date.parse(status.deploy!.rollback!.startedAt);
    assert.ok(firstFailingPodAt, 'a failing pod was seen');
    const latencyMs = startedAt - firstFailingPodAt;
    console.log(`bad image: failure observable → rollback started ${latencyMs} ms (interval ${INTERVAL_SECONDS} s); rollback took ${Date.parse(status.deploy!.rollback!.completedAt!) - startedAt} ms`);
    assert.ok(latencyMs <= INTERVAL_SECONDS * 1000 + 5000, `rollback started ${latencyMs} ms after the failure was observable`);
  });

  it('pods Ready but the error ratio over its threshold: rolled back', async () => {
    const run = await opsflow.startDeploy({ system: 'shop', images: { app: 'example/web:v3' }, bakeSeconds: 60 });
    await phaseOf(run.workflowId, 'bake');
    app.setErrorRatio(0.5);
    const rollingBack = phaseOf(run.workflowId, 'rollback').then(() => app.setErrorRatio(0));
    await assert.rejects(run.result(), (e: Error) => /rolled back to app=example\/web:v2: analysis failed 2 times in a row: .*error-ratio fail \(0\.\d+ above max 0\.1\)/.test(innermostMessage(e)));
    await rollingBack;
    assert.equal(await image(), 'example/web:v2');
  });

  it('abort mid-bake rolls back now; a worker killed mid-bake changes nothing of that', async () => {
    const run = await opsflow.startDeploy({ system: 'shop', images: { app: 'example/web:v4' }, bakeSeconds: 120 });
    await phaseOf(run.workflowId, 'bake');
    await worker.kill();
    worker = await startWorker(setup);
    workers.push(worker);
    await opsflow.controlDeploy(run.workflowId, 'abort', 'bob');
    await assert.rejects(run.result(), (e: Error) => /rolled back to app=example\/web:v2: aborted by bob/.test(innermostMessage(e)));
    assert.equal(await image(), 'example/web:v2');
    assert.equal(await scheduled(run.workflowId, 'setWorkloadImages'), 1, 'the image was set once');
  });

  it('paused mid-rollout, worker killed while paused: resumed by a new worker, the rollout completes once', async () => {
    const run = await opsflow.startDeploy({ system: 'shop', images: { app: 'example/web:v5' }, bakeSeconds: 2 });
    await phaseOf(run.workflowId, 'rollout');
    await opsflow.controlDeploy(run.workflowId, 'pause', 'carol');
    await phaseOf(run.workflowId, 'paused');
    assert.equal((await apps.readNamespacedDeployment({ namespace, name: 'web' })).spec?.paused, true);
    await worker.kill();
    worker = await startWorker(setup);
    workers.push(worker);
    await opsflow.controlDeploy(run.workflowId, 'resume', 'carol');
    const result = await run.result();
    assert.deepEqual(result.images, { app: 'example/web:v5' });
    const d = await apps.readNamespacedDeployment({ namespace, name: 'web' });
    assert.notEqual(d.spec?.paused, true, 'resumed');
    assert.equal(await image(), 'example/web:v5');
    assert.equal(await scheduled(run.workflowId, 'setWorkloadImages'), 1);
  });

  it('promote ends the bake early', async () => {
    const run = await opsflow.startDeploy({ system: 'shop', images: { app: 'example/web:v5b' }, bakeSeconds: 600 });
    await phaseOf(run.workflowId, 'bake');
    await opsflow.controlDeploy(run.workflowId, 'promote', 'dave');
    const result = await run.result();
    assert.equal(result.promotedBy, 'dave');
    assert.equal(await image(), 'example/web:v5b');
  });

  it('a cancelled deploy does not leave the new version behind', async () => {
    const run = await opsflow.startDeploy({ system: 'shop', images: { app: 'example/web:v5x' }, bakeSeconds: 600 });
    await phaseOf(run.workflowId, 'bake');
    await opsflow.cancel(run.workflowId);
    await assert.rejects(run.result(), /cancel/i);
    const status = await opsflow.status(run.workflowId);
    assert.equal(status.phase, 'cancelled');
    assert.equal(status.steps.find((st) => st.name === 'rollback')?.state, 'done');
    assert.equal(await image(), 'example/web:v5b');
  });

  it('measurements that cannot decide (no data) pause for a human instead of deciding; abort rolls back', async () => {
    const run = await opsflow.startDeploy({ system: 'shop-dark', images: { app: 'example/web:v5c' }, bakeSeconds: 600 });
    const paused = await phaseOf(run.workflowId, 'paused');
    assert.match(paused.deploy?.paused?.by ?? '', /2 inconclusive measurements: .*latency inconclusive \(no data\)/);
    assert.equal((await apps.readNamespacedDeployment({ namespace, name: 'web' })).spec?.paused, true);
    await opsflow.controlDeploy(run.workflowId, 'abort', 'erin');
    await assert.rejects(run.result(), (e: Error) => /aborted by erin while paused/.test(innermostMessage(e)));
    assert.equal(await image(), 'example/web:v5b');
    assert.notEqual((await apps.readNamespacedDeployment({ namespace, name: 'web' })).spec?.paused, true);
  });

  it('a failing pre-deploy check (Redis down) stops the deploy before anything changes', async () => {
    const before = await apps.readNamespacedDeployment({ namespace, name: 'web' });
    const run = await opsflow.startDeploy({ system: 'shop-redis-down', images: { app: 'example/web:v9' } });
    await assert.rejects(run.result(), (e: Error) => /^pre-deploy checks failed: redis: cannot connect to Redis at 127\.0\.0\.1:\d+\/0/.test(innermostMessage(e)));
    assert.equal((await apps.readNamespacedDeployment({ namespace, name: 'web' })).metadata?.generation, before.metadata?.generation);
  });

  it('a migration runs as a Job with the new image before the rollout', async () => {
    const run = await opsflow.startDeploy({ system: 'shop-migrating', images: { app: 'example/web:v6' } });
    await run.result();
    const status = await opsflow.status(run.workflowId);
    assert.deepEqual(status.steps.map((s) => `${s.name}:${s.state}`), ['plan:done', 'checks:done', 'migrate:done', 'rollout:done', 'bake:skipped']);
    assert.equal(await image(), 'example/web:v6');
  });

  it('a failed migration stops the deploy before any pod changes, with the Job\'s log in the error', async () => {
    const before = await apps.readNamespacedDeployment({ namespace, name: 'web' });
    const run = await opsflow.startDeploy({ system: 'shop-migrating', images: { app: 'example/web:bad-release' } });
    await assert.rejects(run.result(), (e: Error) => {
      const message = innermostMessage(e);
      assert.match(message, /job shop\/opsflow-migrate-[a-z0-9]+ failed/);
      assert.match(message, /exited with code 1 .*; last log lines:\n.+/s);
      return true;
    });
    const after = await apps.readNamespacedDeployment({ namespace, name: 'web' });
    assert.equal(after.metadata?.generation, before.metadata?.generation, 'the Deployment was not touched');
    assert.equal(await scheduled(run.workflowId, 'setWorkloadImages'), 0);
  });

  it('bad input is refused at once, naming the field or the container', async () => {
    await assert.rejects(opsflow.startDeploy({ system: 'shop', images: {} }), (e: Error) => e.name === 'InvalidInput' && /images/.test(e.message));
    const run = await opsflow.startDeploy({ system: 'shop', images: { web: 'example/web:v6' } });
    await assert.rejects(run.result(), (e: Error) => innermostMessage(e) === 'deployment shop/web has no container "web" (has: app)');
    const bad = await opsflow.startDeploy({ system: 'shop', images: { app: 'Example/Web:v6' } });
    await assert.rejects(bad.result(), (e: Error) => /image "Example\/Web:v6" for container "app" has an invalid repository part/.test(innermostMessage(e)));
    assert.equal(await image(), 'example/web:v6');
  });
});
