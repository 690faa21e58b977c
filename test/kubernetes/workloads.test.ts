/**
 * The Workloads part of the Kubernetes layer against the real control plane:
 * set image with its checks, rollout restart, StatefulSet rollouts, waiting
 * for pods Ready, and scale-downs that survive a lost result.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { startKubernetes, type KubernetesBed } from '../../deploy/bed/kubernetes/cluster.ts';
import { Kubernetes } from '../../src/adapters/kubernetes/index.ts';
import {
  CHANGE_CAUSE_ANNOTATION,
  REPLICAS_BEFORE_ANNOTATION,
  RESTARTED_AT_ANNOTATION,
  SCALED_BY_ANNOTATION,
  type Workloads,
} from '../../src/adapters/kubernetes/workloads.ts';
import { RolloutError } from '../../src/errors.ts';
import { testDeployment, testStatefulSet } from '../support/kubernetes.ts';

const namespace = 'shop';
const api = { kind: 'Deployment', namespace, name: 'api' } as const;
const db = { kind: 'StatefulSet', namespace, name: 'db' } as const;
let dir: string;
let bed: KubernetesBed;
let apps: AppsV1Api;
let core: CoreV1Api;
let workloads: Workloads;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'opsflow-k8s-workloads-'));
  bed = await startKubernetes({ dir });
  const kube = Kubernetes.connect({ kubeconfig: bed.kubeconfigPath });
  apps = kube.kc.makeApiClient(AppsV1Api);
  core = kube.kc.makeApiClient(CoreV1Api);
  workloads = kube.workloads;
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  await apps.createNamespacedDeployment({ namespace, body: testDeployment('api', 'example/api:v1', 2) });
  await apps.createNamespacedStatefulSet({ namespace, body: testStatefulSet('db', 'example/db:v1', 2) });
  await workloads.waitForRollout(api);
  await workloads.waitForRollout(db);
});

after(async () => {
  await bed?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function podsOf(app: string) {
  return (await core.listNamespacedPod({ namespace, labelSelector: `app=${app}` })).items.filter((p) => !p.metadata?.deletionTimestamp);
}

describe('set image (kubectl set image)', () => {
  it('refuses an invalid image reference before changing anything', async () => {
    const before = await workloads.readDeployment(namespace, 'api');
    await assert.rejects(workloads.setImage(api, { app: 'Example/API:v2' }), (err: Error) => {
      assert.equal(err.name, 'InvalidInput');
      assert.match(err.message, /image "Example\/API:v2" for container "app" has an invalid repository part "Example"/);
      return true;
    });
    await assert.rejects(workloads.setImage(api, { app: 'example/api:v2 ' }), /invalid tag/);
    const after = await workloads.readDeployment(namespace, 'api');
    assert.equal(after.metadata?.resourceVersion, before.metadata?.resourceVersion, 'nothing was written');
  });

  it('names an unknown container, workload and namespace', async () => {
    await assert.rejects(workloads.setImage(api, { web: 'example/api:v2' }), (err: Error) => {
      assert.equal(err.name, 'NotFound');
      assert.equal(err.message, 'deployment shop/api has no container "web" (has: app)');
      return true;
    });
    await assert.rejects(workloads.setImage({ ...api, name: 'nope' }, { app: 'example/api:v2' }), (err: Error) =>
      err.name === 'NotFound' && /cannot read deployment shop\/nope: .*not found/.test(err.message));
    await assert.rejects(workloads.setImage({ ...api, namespace: 'nowhere' }, { app: 'example/api:v2' }), (err: Error) =>
      err.name === 'NotFound' && /deployment nowhere\/api/.test(err.message));
  });

  it('rolls out the new image with a change cause, and a retry changes nothing', async () => {
    const first = await workloads.setImage(api, { app: 'example/api:v2' }, { changeCause: 'opsflow deploy run 1' });
    assert.deepEqual(first, { previous: { app: 'example/api:v1' }, changed: true });
    const afterFirst = await workloads.readDeployment(namespace, 'api');
    const retry = await workloads.setImage(api, { app: 'example/api:v2' }, { changeCause: 'opsflow deploy run 1' });
    assert.equal(retry.changed, false);
    assert.equal((await workloads.readDeployment(namespace, 'api')).metadata?.generation, afterFirst.metadata?.generation);
    await workloads.waitForRollout(api);
    const d = await workloads.readDeployment(namespace, 'api');
    assert.equal(d.metadata?.annotations?.[CHANGE_CAUSE_ANNOTATION], 'opsflow deploy run 1');
    assert.deepEqual((await podsOf('api')).map((p) => p.spec?.containers[0]?.image), ['example/api:v2', 'example/api:v2']);
  });
});

describe('rollout restart', () => {
  it('replaces every pod once; the same stamp again restarts nothing', async () => {
    const before = new Set((await podsOf('api')).map((p) => p.metadata?.name));
    const at = '2026-11-23T10:00:00Z';
    assert.deepEqual(await workloads.restart(api, at), { changed: true });
    assert.deepEqual(await workloads.restart(api, at), { changed: false });
    await workloads.waitForRollout(api);
    const d = await workloads.readDeployment(namespace, 'api');
    assert.equal(d.spec?.template.metadata?.annotations?.[RESTARTED_AT_ANNOTATION], at);
    const after = (await podsOf('api')).map((p) => p.metadata?.name);
    assert.equal(after.length, 2);
    assert.ok(after.every((n) => !before.has(n)), `new pods: ${after.join(', ')} (before: ${[...before].join(', ')})`);
  });

  it('works on a StatefulSet, whose rollout waits for the update revision', async () => {
    const seen: string[] = [];
    await workloads.restart(db, '2026-11-23T10:05:00Z');
    const s = await workloads.waitForRollout(db, { onStatus: (st) => seen.push(st.message) });
    assert.equal(s.state, 'complete');
    assert.match(s.message, /rolling update complete 2 pods at revision/);
    const sts = await apps.readNamespacedStatefulSet({ namespace, name: 'db' });
    assert.equal(sts.status?.currentRevision, sts.status?.updateRevision);
    const revisions = (await podsOf('db')).map((p) => p.metadata?.labels?.['controller-revision-hash']);
    assert.deepEqual(revisions, [sts.status?.updateRevision, sts.status?.updateRevision], 'every pod runs the new revision');
    assert.ok(seen.some((m) => /waiting|ready|revision/.test(m)), seen.join(' | '));
  });
});

describe('waiting for pods Ready', () => {
  it('resolves with every pod Ready', async () => {
    const s = await workloads.waitForPodsReady(db, { timeoutMs: 30_000 });
    assert.deepEqual([s.ready, s.expected], [2, 2]);
  });

  it('times out naming the pods that are not Ready and why', async () => {
    await apps.createNamespacedDeployment({ namespace, body: testDeployment('broken', 'example/broken:bad', 1) });
    await assert.rejects(workloads.waitForPodsReady({ ...api, name: 'broken' }, { timeoutMs: 3_000 }), (err: Error) => {
      assert.ok(err instanceof RolloutError);
      assert.equal(err.type, 'PodsNotReady');
      assert.match(err.message, /^0 of 1 pods of deployment shop\/broken Ready after 3 s; not ready: broken-[a-z0-9-]+: (CrashLoopBackOff|Pending)/);
      return true;
    });
  });
});

describe('scale down remembering the count', () => {
  it('a retry after a lost result still returns the original count; scale back restores it', async () => {
    const owner = 'maintenance/shop';
    assert.deepEqual(await workloads.scaleRemembering(api, 0, owner), { previous: 2 });
    // The first attempt's result was lost (worker crash): the retry must not answer 0.
    assert.deepEqual(await workloads.scaleRemembering(api, 0, owner), { previous: 2 });
    const down = await workloads.readDeployment(namespace, 'api');
    assert.equal(down.spec?.replicas, 0);
    assert.equal(down.metadata?.annotations?.[SCALED_BY_ANNOTATION], owner);
    assert.equal(down.metadata?.annotations?.[REPLICAS_BEFORE_ANNOTATION], '2');

    await assert.rejects(workloads.scaleRemembering(api, 1, 'restore/shop/live'), (err: Error) =>
      err.name === 'Conflict' && /scaled to 0 by maintenance\/shop, which has not scaled it back/.test(err.message));

    assert.deepEqual(await workloads.scaleBack(api, owner), { replicas: 2, changed: true });
    assert.deepEqual(await workloads.scaleBack(api, owner), { replicas: 2, changed: false }, 'a retry is a no-op');
    const up = await workloads.readDeployment(namespace, 'api');
    assert.equal(up.spec?.replicas, 2);
    assert.equal(up.metadata?.annotations?.[SCALED_BY_ANNOTATION], undefined);
    assert.equal((await workloads.waitForPodsReady(api, { timeoutMs: 30_000 })).ready, 2);
  });
});
