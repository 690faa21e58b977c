/**
 * Rollout waiting against the real control plane (kube-controller-manager
 * writes the status, kwok runs the pods): a rollout that completes, a stall
 * from a bad image (ProgressDeadlineExceeded), a paused Deployment, and
 * cancellation of a wait.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppsV1Api } from '@kubernetes/client-node';
import { startKubernetes, type KubernetesBed } from '../../deploy/bed/kubernetes/cluster.ts';
import { testDeployment } from '../support/kubernetes.ts';
import { Kubernetes } from '../../src/adapters/kubernetes/index.ts';
import type { Workloads } from '../../src/adapters/kubernetes/workloads.ts';
import { RolloutError } from '../../src/errors.ts';

const namespace = 'default';
let dir: string;
let bed: KubernetesBed;
let apps: AppsV1Api;
let k8s: Workloads;
const web = { kind: 'Deployment', namespace, name: 'web' } as const;

const deployment = (name: string, image: string) => testDeployment(name, image);

async function setImage(name: string, image: string) {
  await apps.patchNamespacedDeployment(
    { namespace, name, body: [{ op: 'replace', path: '/spec/template/spec/containers/0/image', value: image }] },
  );
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'opsflow-k8s-rollout-'));
  bed = await startKubernetes({ dir });
  const kube = Kubernetes.connect({ kubeconfig: bed.kubeconfigPath });
  apps = kube.kc.makeApiClient(AppsV1Api);
  k8s = kube.workloads;
});

after(async () => {
  await bed?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('waitForRollout (kubectl rollout status semantics)', () => {
  it('resolves when a new Deployment is fully rolled out, reporting progress on the way', async () => {
    await apps.createNamespacedDeployment({ namespace, body: deployment('web', 'example/web:v1') });
    const seen: string[] = [];
    const s = await k8s.waitForRollout(web, { onStatus: (st) => seen.push(st.state) });
    assert.equal(s.state, 'complete');
    assert.deepEqual([s.updated, s.available, s.total], [3, 3, 3]);
    assert.ok(seen.includes('waiting'), `saw ${seen.join(',')}`);
  });

  it('an image update is not complete until the controller observed it and replaced every pod', async () => {
    await setImage('web', 'example/web:v2');
    const s = await k8s.waitForRollout(web);
    assert.equal(s.state, 'complete');
    const d = await k8s.readDeployment(namespace, 'web');
    assert.equal(d.status?.observedGeneration, d.metadata?.generation);
    assert.equal(d.spec?.template.spec?.containers[0]?.image, 'example/web:v2');
  });

  it('a bad image ends in RolloutStalled (ProgressDeadlineExceeded), not an endless wait', async () => {
    await setImage('web', 'example/web:bad');
    const t0 = Date.now();
    await assert.rejects(k8s.waitForRollout(web), (err: Error) => {
      assert.ok(err instanceof RolloutError);
      assert.equal(err.type, 'RolloutStalled');
      assert.match(err.message, /exceeded its progress deadline/);
      return true;
    });
    assert.ok(Date.now() - t0 < 60_000);
    const d = await k8s.readDeployment(namespace, 'web');
    assert.equal(d.status?.availableReplicas, 3, 'maxUnavailable 0 kept the old pods serving');
  });

  it('undo returns to the previous template and waits until that is rolled out', async () => {
    const { revision } = await k8s.undo(namespace, 'web');
    assert.equal(revision, 2, 'revision 2 held example/web:v2');
    const s = await k8s.waitForRollout(web);
    assert.equal(s.state, 'complete');
    const d = await k8s.readDeployment(namespace, 'web');
    assert.equal(d.spec?.template.spec?.containers[0]?.image, 'example/web:v2');
    assert.equal(d.status?.availableReplicas, 3);
  });

  it('scale down and back up restores the replica count it reported', async () => {
    const down = await k8s.scale(web, 0);
    assert.equal(down.previous, 3);
    assert.equal((await k8s.scale(web, 0)).previous, 0, 'a retry is a no-op');
    await k8s.scale(web, down.previous);
    assert.equal((await k8s.waitForRollout(web)).available, 3);
    await assert.rejects(k8s.scale({ ...web, name: 'nope' }, 1), (err: Error) => err.name === 'NotFound');
  });

  it('a paused Deployment is reported at once as RolloutPaused', async () => {
    await apps.createNamespacedDeployment({ namespace, body: { ...deployment('paused', 'example/p:v1'), spec: { ...deployment('paused', 'example/p:v1').spec!, paused: true } } });
    await assert.rejects(k8s.waitForRollout({ ...web, name: 'paused' }), (err: Error) => err instanceof RolloutError && err.type === 'RolloutPaused');
  });

  it('a wait stops when its signal aborts', async () => {
    // A fresh bad release: still within its progress deadline, so only the abort can end the wait.
    await apps.createNamespacedDeployment({ namespace, body: deployment('slow', 'example/slow:bad') });
    const controller = new AbortController();
    const waiting = k8s.waitForRollout({ ...web, name: 'slow' }, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('cancelled by test')), 300);
    await assert.rejects(waiting, /cancelled by test/);
  });
});
