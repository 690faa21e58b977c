/**
 * Workloads for tests on the Kubernetes bed: pods land on kwok's fake nodes,
 * roll out with maxUnavailable 0, and stall quickly on a bad image.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, KubeConfig, type V1Deployment, type V1StatefulSet } from '@kubernetes/client-node';
import { FAKE_NODE_SELECTOR, FAKE_NODE_TOLERATION } from '../../deploy/bed/kubernetes/cluster.ts';
import { PodExec } from '../../src/adapters/kubernetes/exec.ts';
import { isPodReady } from '../../src/adapters/kubernetes/workloads.ts';

export function testDeployment(name: string, image: string, replicas = 3): V1Deployment {
  const labels = { app: name };
  return {
    metadata: { name, labels },
    spec: {
      replicas,
      progressDeadlineSeconds: 10,
      selector: { matchLabels: labels },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: { labels },
        spec: { nodeSelector: FAKE_NODE_SELECTOR, tolerations: [FAKE_NODE_TOLERATION], containers: [{ name: 'app', image }] },
      },
    },
  };
}

export function testStatefulSet(name: string, image: string, replicas = 2): V1StatefulSet {
  const labels = { app: name };
  return {
    metadata: { name, labels },
    spec: {
      replicas,
      serviceName: name,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: { nodeSelector: FAKE_NODE_SELECTOR, tolerations: [FAKE_NODE_TOLERATION], containers: [{ name: 'db', image }] },
      },
    },
  };
}

/**
 * A bare pod with one container "app" on a fake node, Ready, and a PodExec
 * to run commands in it (on a bed with localExec, they run on this machine).
 */
export async function podToExecInto(kubeconfigPath: string, namespace: string, pod: string, image = 'example/app:v1'): Promise<PodExec> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespacedPod({
    namespace,
    body: { metadata: { name: pod }, spec: { nodeSelector: FAKE_NODE_SELECTOR, tolerations: [FAKE_NODE_TOLERATION], containers: [{ name: 'app', image }] } },
  });
  for (let i = 0; !isPodReady(await core.readNamespacedPod({ namespace, name: pod })); i++) {
    if (i > 100) throw new Error(`${pod} not Ready after 10 s`);
    await sleep(100);
  }
  return new PodExec(kc);
}

