/**
 * The Kubernetes bed (deploy/bed/kubernetes/cluster.ts): real control plane,
 * kwok nodes. A Deployment rolls out through the real scheduler and
 * controllers; a bad release ends in ProgressDeadlineExceeded while the old
 * pods stay available; exec into a fake pod runs a local command.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppsV1Api, CoreV1Api, Exec, KubeConfig, type V1Deployment } from '@kubernetes/client-node';
import {
  FAKE_NODES,
  FAKE_NODE_SELECTOR,
  FAKE_NODE_TOLERATION,
  startKubernetes,
  type KubernetesBed,
} from '../../deploy/bed/kubernetes/cluster.ts';

const namespace = 'default';
const name = 'app';
const labels = { app: name };

let dir: string;
let bed: KubernetesBed;
let core: CoreV1Api;
let apps: AppsV1Api;
let kc: KubeConfig;

async function poll<T>(what: string, timeoutMs: number, read: () => Promise<T>, done: (v: T) => boolean): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (done(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${timeoutMs / 1000} s: ${JSON.stringify(v)}`);
    await sleep(250);
  }
}

const readDeployment = () => apps.readNamespacedDeployment({ name, namespace });

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'opsflow-k8s-'));
  bed = await startKubernetes({ dir, localExec: true });
  console.log(`kubernetes bed startup: ${bed.startupMs} ms (${dir})`);
  kc = new KubeConfig();
  kc.loadFromFile(bed.kubeconfigPath);
  core = kc.makeApiClient(CoreV1Api);
  apps = kc.makeApiClient(AppsV1Api);
});

after(async () => {
  await bed?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('kubernetes bed', () => {
  it('has its fake nodes Ready', async () => {
    const nodes = (await core.listNode({ labelSelector: 'type=kwok' })).items;
    assert.deepEqual(nodes.map((n) => n.metadata?.name).sort(), FAKE_NODES);
    for (const n of nodes) {
      assert.equal(n.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True', n.metadata?.name);
    }
  });

  it('rolls a Deployment out to 3 available replicas', async () => {
    const t0 = Date.now();
    const body: V1Deployment = {
      metadata: { name, labels },
      spec: {
        replicas: 3,
        selector: { matchLabels: labels },
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
        template: {
          metadata: { labels },
          spec: {
            nodeSelector: FAKE_NODE_SELECTOR,
            tolerations: [FAKE_NODE_TOLERATION],
            containers: [{ name, image: 'example/app:v1' }],
          },
        },
      },
    };
    await apps.createNamespacedDeployment({ namespace, body });
    const d = await poll('3 available replicas', 60_000, readDeployment, (d) =>
      d.status?.availableReplicas === 3 && d.status.updatedReplicas === 3 && d.status.observedGeneration === d.metadata?.generation);
    assert.equal(d.status?.readyReplicas, 3);
    const pods = (await core.listNamespacedPod({ namespace, labelSelector: `app=${name}` })).items;
    assert.ok(pods.every((p) => p.spec?.nodeName && FAKE_NODES.includes(p.spec.nodeName)), 'scheduled onto the fake nodes');
    console.log(`deployment available after ${Date.now() - t0} ms`);
  });

  it('reports ProgressDeadlineExceeded for a bad release and keeps 3 available', async () => {
    const t0 = Date.now();
    const d = await readDeployment();
    d.spec!.progressDeadlineSeconds = 10;
    d.spec!.template.spec!.containers[0]!.image = 'example/app:bad';
    await apps.replaceNamespacedDeployment({ name, namespace, body: d });

    let minAvailable = Infinity;
    const stuck = await poll('ProgressDeadlineExceeded', 60_000, readDeployment, (d) => {
      minAvailable = Math.min(minAvailable, d.status?.availableReplicas ?? 0);
      const progressing = d.status?.conditions?.find((c) => c.type === 'Progressing');
      return progressing?.status === 'False' && progressing.reason === 'ProgressDeadlineExceeded';
    });
    console.log(`ProgressDeadlineExceeded after ${Date.now() - t0} ms`);
    assert.equal(stuck.status?.availableReplicas, 3);
    assert.ok(minAvailable >= 3, `availableReplicas dropped to ${minAvailable}`);

    const bad = (await core.listNamespacedPod({ namespace, labelSelector: `app=${name}` })).items
      .filter((p) => p.spec?.containers[0]?.image === 'example/app:bad');
    assert.equal(bad.length, 1, 'maxSurge 1: one new pod');
    assert.equal(bad[0]!.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'False');
    assert.equal(bad[0]!.status?.containerStatuses?.[0]?.state?.waiting?.reason, 'CrashLoopBackOff');
  });

  it('runs `echo hello` through the exec API of a fake pod', async () => {
    const pod = (await core.listNamespacedPod({ namespace, labelSelector: `app=${name}` })).items
      .find((p) => p.spec?.containers[0]?.image === 'example/app:v1')!;
    let out = '';
    const stdout = new Writable({ write(chunk, _enc, cb) { out += chunk; cb(); } });
    let timer: NodeJS.Timeout | undefined;
    const status = await new Promise<string | undefined>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`exec timed out; stdout so far: ${out}`)), 20_000);
      new Exec(kc)
        .exec(namespace, pod.metadata!.name!, name, ['echo', 'hello'], stdout, null, null, false, (s) => resolve(s.status))
        .catch(reject);
    }).finally(() => clearTimeout(timer));
    assert.equal(status, 'Success');
    assert.equal(out, 'hello\n');
  });
});
