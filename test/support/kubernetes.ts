/**
 * Workloads for tests on the Kubernetes bed: pods land on kwok's fake nodes,
 * roll out with maxUnavailable 0, and stall quickly on a bad image.
 */
import type { V1Deployment, V1StatefulSet } from '@kubernetes/client-node';
import { FAKE_NODE_SELECTOR, FAKE_NODE_TOLERATION } from '../../deploy/bed/kubernetes/cluster.ts';

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
