/**
 * opsflow's own manifests (deploy/kubernetes) against the bed's real API
 * server: they apply cleanly, and the real RBAC authorizer allows every verb
 * opsflow's ServiceAccount needs in a target namespace and denies what it
 * must never do (delete namespaces, read Secrets outside its targets, change
 * RBAC, delete workloads).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../../deploy/bed/bed.ts';
import { AppsV1Api, KubeConfig } from '@kubernetes/client-node';
import { startKubernetes, type KubernetesBed } from '../../deploy/bed/kubernetes/cluster.ts';
import { Kubernetes } from '../../src/adapters/kubernetes/index.ts';
import { testDeployment } from '../support/kubernetes.ts';

const SERVICE_ACCOUNT = 'system:serviceaccount:opsflow:opsflow-worker';
let dir: string;
let bed: KubernetesBed;

function kubectl(...args: string[]): string {
  return execFileSync('kubectl', ['--kubeconfig', bed.kubeconfigPath, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

/** The API server's own answer (a SubjectAccessReview) for opsflow's ServiceAccount. */
function canI(verb: string, resourcePath: string, namespace?: string): boolean {
  // `pods/exec` as one word would mean "the pod named exec"; subresources go in their own flag.
  const [resource, subresource] = resourcePath.split('/');
  const args = ['--kubeconfig', bed.kubeconfigPath, 'auth', 'can-i', verb, resource!, `--as=${SERVICE_ACCOUNT}`];
  if (subresource) args.push(`--subresource=${subresource}`);
  if (namespace) args.push('-n', namespace);
  const r = spawnSync('kubectl', args, { encoding: 'utf8' });
  return r.stdout.trim() === 'yes';
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'opsflow-k8s-manifests-'));
  bed = await startKubernetes({ dir });
});

after(async () => {
  await bed?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('deploy/kubernetes manifests', () => {
  it('apply cleanly: the opsflow namespace with its worker, and a Role in a target namespace', () => {
    kubectl('apply', '-k', 'deploy/kubernetes/base');
    kubectl('create', 'namespace', 'shop');
    kubectl('create', 'namespace', 'other');
    kubectl('apply', '-k', 'deploy/kubernetes/target-namespace');
    const deployment = JSON.parse(kubectl('get', 'deployment', 'opsflow-worker', '-n', 'opsflow', '-o', 'json'));
    const container = deployment.spec.template.spec.containers[0];
    assert.equal(deployment.spec.template.spec.serviceAccountName, 'opsflow-worker');
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
    assert.equal(deployment.spec.template.spec.securityContext.runAsNonRoot, true);
    assert.equal(container.readinessProbe.httpGet.path, '/readyz');
    assert.match(kubectl('get', 'networkpolicy', '-n', 'opsflow', '-o', 'name'), /opsflow-worker/);
    assert.match(kubectl('get', 'rolebinding', 'opsflow-operator', '-n', 'shop', '-o', 'name'), /opsflow-operator/);
  });

  const allowed: [string, string][] = [
    ['get', 'deployments'], ['watch', 'deployments'], ['patch', 'deployments'], ['update', 'deployments/scale'],
    ['patch', 'statefulsets'], ['patch', 'statefulsets/scale'], ['list', 'replicasets'], ['list', 'controllerrevisions'],
    ['watch', 'pods'], ['get', 'pods/log'], ['get', 'pods/exec'], ['create', 'pods/exec'],
    ['create', 'jobs'], ['watch', 'jobs'], ['delete', 'jobs'],
    ['get', 'secrets'], ['update', 'secrets'], ['create', 'configmaps'], ['patch', 'configmaps'],
    ['list', 'services'], ['list', 'persistentvolumeclaims'], ['patch', 'services'], ['create', 'deployments'],
  ];
  for (const [verb, resource] of allowed) {
    it(`allows ${verb} ${resource} in the target namespace`, () => assert.equal(canI(verb, resource, 'shop'), true));
  }

  const denied: [string, string, string | undefined][] = [
    ['delete', 'namespaces', undefined],
    ['get', 'secrets', 'other'],
    ['get', 'secrets', 'kube-system'],
    ['patch', 'deployments', 'other'],
    ['create', 'roles', 'shop'],
    ['create', 'rolebindings', 'shop'],
    ['create', 'clusterrolebindings', undefined],
    ['delete', 'deployments', 'shop'],
    ['delete', 'secrets', 'shop'],
    ['delete', 'pods', 'shop'],
    ['create', 'pods/exec', 'other'],
    ['patch', 'deployments/scale', 'other'],
    ['list', 'nodes', undefined],
    ['delete', 'jobs', 'other'],
    ['list', 'events', 'shop'],
  ];
  for (const [verb, resource, namespace] of denied) {
    it(`denies ${verb} ${resource}${namespace ? ` in ${namespace}` : ' cluster-wide'}`, () => assert.equal(canI(verb, resource, namespace), false));
  }

  describe('opsflow\'s Kubernetes layer, authenticated as the worker\'s ServiceAccount', () => {
    let kube: Kubernetes;
    const api = { kind: 'Deployment', namespace: 'shop', name: 'api' } as const;

    before(async () => {
      const admin = Kubernetes.connect({ kubeconfig: bed.kubeconfigPath });
      await admin.kc.makeApiClient(AppsV1Api).createNamespacedDeployment({ namespace: 'shop', body: testDeployment('api', 'example/api:v1', 2) });
      await admin.objects.writeSecret('other', 'elsewhere', { token: 'not-for-opsflow' });
      // A token for opsflow-worker, as the kubelet would mount it in the worker's pod.
      const token = kubectl('create', 'token', 'opsflow-worker', '-n', 'opsflow').trim();
      const kc = new KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'bed', server: bed.server, caData: admin.kc.getCurrentCluster()!.caData }],
        users: [{ name: 'opsflow-worker', token }],
        contexts: [{ name: 'bed', cluster: 'bed', user: 'opsflow-worker' }],
        currentContext: 'bed',
      });
      kube = new Kubernetes(kc);
    });

    it('rolls out, sets an image, restarts, undoes, scales down and back, and waits for pods', async () => {
      const w = kube.workloads;
      await w.waitForRollout(api);
      await w.setImage(api, { app: 'example/api:v2' }, { changeCause: 'access test' });
      await w.waitForRollout(api);
      await w.restart(api, '2026-11-23T12:00:00Z');
      await w.waitForRollout(api);
      await w.setPaused('shop', 'api', true);
      await w.setPaused('shop', 'api', false);
      await w.undo('shop', 'api');
      await w.waitForRollout(api);
      assert.deepEqual(await w.scaleRemembering(api, 0, 'access-test'), { previous: 2 });
      await w.scaleBack(api, 'access-test');
      assert.equal((await w.waitForPodsReady(api, { timeoutMs: 30_000 })).ready, 2);
      assert.equal((await w.failingPods(api, { minRestarts: 1 })).length, 0);
    });

    it('reads and writes Secrets and ConfigMaps, exports the namespace and applies it again', async () => {
      const o = kube.objects;
      await o.writeSecret('shop', 'db', { password: 'first-secret' });
      assert.equal(await o.readSecretKey('shop', 'db', 'password'), 'first-secret');
      await o.writeConfigMap('shop', 'settings', { mode: 'live' });
      const manifests = await o.exportNamespace('shop');
      assert.deepEqual(manifests.map((m) => `${m.kind}/${m.metadata?.name}`).sort(), ['ConfigMap/settings', 'Deployment/api', 'Secret/db']);
      const applied = await o.apply(manifests);
      assert.equal(applied.created, 0);
    });

    it('is refused outside its target namespaces, with a clear error', async () => {
      await assert.rejects(kube.objects.readSecret('other', 'elsewhere'), (err: Error) => err.name === 'PeerRejected' && /forbidden/i.test(err.message) && !err.message.includes('not-for-opsflow'));
      await assert.rejects(kube.workloads.scale({ ...api, namespace: 'other' }, 0), (err: Error) => err.name === 'PeerRejected');
    });
  });
});
