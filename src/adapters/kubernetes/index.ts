/**
 * The Kubernetes layer: the only code that talks to Kubernetes. One object
 * per cluster, built from the credentials in the config, with a part per
 * concern.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { loadKubeConfig, type KubernetesCredentials } from './client.ts';
import { Workloads } from './workloads.ts';

export class Kubernetes {
  readonly workloads: Workloads;

  constructor(readonly kc: KubeConfig) {
    this.workloads = new Workloads(kc);
  }

  static connect(credentials: KubernetesCredentials = {}): Kubernetes {
    return new Kubernetes(loadKubeConfig(credentials));
  }
}

export { loadKubeConfig, type KubernetesCredentials } from './client.ts';
export type { WorkloadKind, WorkloadRef, PodsReadyStatus } from './workloads.ts';
