/**
 * The maintenance workflow end to end: real Temporal (the test bed), a real
 * control plane with kwok nodes, worker processes that are killed. Scaling
 * down and back up restores every workload's replica count, also when the
 * worker dies between the two; a cancel scales back; one window per system.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { WorkflowFailedError } from '@temporalio/client';
import { startKubernetes, type KubernetesBed } from '../../deploy/bed/kubernetes/cluster.ts';
import { Kubernetes } from '../../src/adapters/kubernetes/index.ts';
import { SCALED_BY_ANNOTATION } from '../../src/adapters/kubernetes/workloads.ts';
import type { OpsflowClient } from '../../src/client.ts';
import { ConflictError, innermostMessage } from '../../src/errors.ts';
import { client, eventually, startWorker, testSetup, type TestSetup, type WorkerProcess } from '../support/bed.ts';
import { testDeployment, testStatefulSet } from '../support/kubernetes.ts';

const namespace = 'shop';
let dir: string;
let bed: KubernetesBed;
let kube: Kubernetes;
let apps: AppsV1Api;
let setup: TestSetup;
let opsflow: OpsflowClient;
const workers: WorkerProcess[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'opsflow-k8s-maintenance-'));
  bed = await startKubernetes({ dir });
  kube = Kubernetes.connect({ kubeconfig: bed.kubeconfigPath });
  apps = kube.kc.makeApiClient(AppsV1Api);
  await kube.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
  await apps.createNamespacedDeployment({ namespace, body: testDeployment('web', 'example/web:v1', 3) });
  await apps.createNamespacedStatefulSet({ namespace, body: testStatefulSet('worker', 'example/worker:v1', 2) });
  const kubernetes = (workloads: object[]) => ({ kubernetes: { kubeconfig: bed.kubeconfigPath, namespace, workloads, readyTimeoutSeconds: 60 } });
  setup = testSetup('maintenance', { shop: 'shop', typo: 'shop' }, {
    shop: kubernetes([{ kind: 'Deployment', name: 'web' }, { kind: 'StatefulSet', name: 'worker' }]),
    typo: kubernetes([{ kind: 'Deployment', name: 'web' }, { kind: 'Deployment', name: 'wbe' }]),
  });
  opsflow = await client(setup);
  await kube.workloads.waitForPodsReady({ kind: 'Deployment', namespace, name: 'web' }, { timeoutMs: 60_000 });
  await kube.workloads.waitForPodsReady({ kind: 'StatefulSet', namespace, name: 'worker' }, { timeoutMs: 60_000 });
});

after(async () => {
  await opsflow?.close();
  for (const w of workers) await w.stop();
  await bed?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function replicas() {
  const web = await apps.readNamespacedDeployment({ namespace, name: 'web' });
  const worker = await apps.readNamespacedStatefulSet({ namespace, name: 'worker' });
  return { web: web.spec?.replicas, worker: worker.spec?.replicas, annotated: Boolean(web.metadata?.annotations?.[SCALED_BY_ANNOTATION] ?? worker.metadata?.annotations?.[SCALED_BY_ANNOTATION]) };
}

/** Activity types scheduled in a run's history, in order. */
async function scheduledActivities(workflowId: string): Promise<string[]> {
  const history = await opsflow.temporal.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).flatMap((e) => (e.activityTaskScheduledEventAttributes?.activityType?.name ? [e.activityTaskScheduledEventAttributes.activityType.name] : []));
}

describe('maintenance window', () => {
  it('a worker killed inside the window: a new worker scales every workload back to its count', async () => {
    const first = await startWorker(setup);
    workers.push(first);
    const run = await opsflow.startMaintenance({ system: 'shop', reason: 'reindex', durationSeconds: 600, scaleTo: 0 });
    const status = await eventually('the window to open', async () => {
      const s = await opsflow.status(run.workflowId);
      return s.phase === 'window' ? s : undefined;
    });
    assert.deepEqual(status.window?.scaledDown, { web: 3, worker: 2 });
    assert.deepEqual(await replicas(), { web: 0, worker: 0, annotated: true });
    await first.kill();

    const second = await startWorker(setup);
    workers.push(second);
    await assert.rejects(opsflow.startMaintenance({ system: 'shop', reason: 'again', scaleTo: 0 }), (err: Error) =>
      err instanceof ConflictError && err.message.includes(`already running as workflow ${run.workflowId}`));
    await opsflow.endMaintenance(run.workflowId, 'alice');
    const result = await run.result();

    assert.equal(result.endedBy, 'alice');
    assert.deepEqual(result.readyAfter, { web: 3, worker: 2 });
    assert.deepEqual(await replicas(), { web: 3, worker: 2, annotated: false });
    // Nothing done twice: each workload scaled down once and back once.
    const activities = await scheduledActivities(run.workflowId);
    assert.equal(activities.filter((a) => a === 'scaleWorkloadDown').length, 2, activities.join(', '));
    assert.equal(activities.filter((a) => a === 'scaleWorkloadBack').length, 2, activities.join(', '));
  });

  it('cancelled inside the window: the compensation scales every workload back', async () => {
    const run = await opsflow.startMaintenance({ system: 'shop', reason: 'cancel me', durationSeconds: 600, scaleTo: 1 });
    await eventually('the window to open', async () => (await opsflow.status(run.workflowId)).phase === 'window');
    assert.deepEqual(await replicas(), { web: 1, worker: 1, annotated: true });
    await opsflow.cancel(run.workflowId);
    await assert.rejects(run.result(), /cancel/i);
    const status = await opsflow.status(run.workflowId);
    assert.equal(status.phase, 'cancelled');
    assert.equal(status.steps.find((s) => s.name === 'scale-back')?.state, 'compensated');
    assert.deepEqual(await replicas(), { web: 3, worker: 2, annotated: false });
  });

  it('a window closes on its timer and then waits for pods Ready', async () => {
    const run = await opsflow.startMaintenance({ system: 'shop', reason: 'short', durationSeconds: 2, scaleTo: 0 });
    const result = await run.result();
    assert.equal(result.endedBy, 'timer');
    assert.deepEqual(result.readyAfter, { web: 3, worker: 2 });
  });

  it('a workload that does not exist fails the run at once, naming it, and changes nothing', async () => {
    const t0 = Date.now();
    const run = await opsflow.startMaintenance({ system: 'typo', reason: 'typo', scaleTo: 0 });
    await assert.rejects(run.result(), (err: Error) => {
      assert.ok(err instanceof WorkflowFailedError);
      assert.match(innermostMessage(err), /cannot read deployment shop\/wbe: .*not found/);
      return true;
    });
    assert.ok(Date.now() - t0 < 5_000, `failed after ${Date.now() - t0} ms`);
    assert.deepEqual(await replicas(), { web: 3, worker: 2, annotated: false });
  });

  it('refuses bad input before starting, naming the field', async () => {
    await assert.rejects(opsflow.startMaintenance({ system: 'shop', reason: '', scaleTo: -1 }), (err: Error) =>
      err.name === 'InvalidInput' && /reason/.test(err.message) && /scaleTo/.test(err.message));
  });
});
