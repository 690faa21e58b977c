/**
 * The Kubernetes layer: the only code that talks to Kubernetes. One object
 * per cluster, built from the credentials in the config, with a part per
 * concern.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { loadKubeConfig, type KubernetesCredentials } from './client.ts';
import { Workloads } from './workloads.ts';
import { Jobs } from './jobs.ts';
import { PodExec } from './exec.ts';
import { KubernetesObjects } from './objects.ts';

export class Kubernetes {
  /** Deployments and StatefulSets: scale, set image, restart, undo, rollout status, pods Ready. */
  readonly workloads: Workloads;
  /** One-off Jobs (migrations), with the failed pod's logs on failure. */
  readonly jobs: Jobs;
  /** Commands in a pod through the exec API, streamed. */
  readonly exec: PodExec;
  /** Secrets, ConfigMaps, namespace export and apply. */
  readonly objects: KubernetesObjects;

  constructor(readonly kc: KubeConfig) {
    this.workloads = new Workloads(kc);
    this.jobs = new Jobs(kc);
    this.exec = new PodExec(kc);
    this.objects = new KubernetesObjects(kc);
  }

  static connect(credentials: KubernetesCredentials = {}): Kubernetes {
    return new Kubernetes(loadKubeConfig(credentials));
  }
}

export { loadKubeConfig, type KubernetesCredentials } from './client.ts';
export type { WorkloadKind, WorkloadRef, PodsReadyStatus } from './workloads.ts';
