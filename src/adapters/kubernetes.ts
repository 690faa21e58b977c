/**
 * The only code that talks to Kubernetes. Waiting uses a watch (no polling
 * loop), re-established when the server closes it, and judges each version
 * of the object with the same rules as `kubectl rollout status`.
 */
import { AppsV1Api, KubeConfig, Watch, type V1Deployment } from '@kubernetes/client-node';
import { NotFoundError, PeerRejectedError, PeerUnavailableError, RolloutError, OpsflowError } from '../errors.ts';
import { rolloutStatus, type RolloutStatus } from '../domain/rollout.ts';

export function loadKubeConfig(options: { kubeconfig?: string; context?: string } = {}): KubeConfig {
  const kc = new KubeConfig();
  if (options.kubeconfig) kc.loadFromFile(options.kubeconfig);
  else kc.loadFromDefault(); // KUBECONFIG, ~/.kube/config, or the in-cluster service account
  if (options.context) kc.setCurrentContext(options.context);
  return kc;
}

function toKubernetesError(err: unknown, what: string): Error {
  if (err instanceof OpsflowError) return err;
  const e = err as { code?: number; statusCode?: number; message?: string; body?: unknown };
  const status = e.code ?? e.statusCode;
  const message = `${what}: ${e.message ?? String(err)}`;
  if (status === 404) return new NotFoundError(message);
  if (status === 401 || status === 403 || status === 422) return new PeerRejectedError(message);
  return new PeerUnavailableError(message, err);
}

export class KubernetesAdapter {
  private readonly apps: AppsV1Api;

  constructor(private readonly kc: KubeConfig) {
    this.apps = kc.makeApiClient(AppsV1Api);
  }

  /**
   * Sets a Deployment's or StatefulSet's replicas through the scale
   * subresource and returns the count it had, so the caller can put it back.
   * Setting the count it already has is a no-op: safe to retry.
   */
  async scale(kind: 'Deployment' | 'StatefulSet', namespace: string, name: string, replicas: number): Promise<{ previous: number }> {
    const body = [{ op: 'replace', path: '/spec/replicas', value: replicas }];
    try {
      const current =
        kind === 'Deployment'
          ? await this.apps.readNamespacedDeploymentScale({ namespace, name })
          : await this.apps.readNamespacedStatefulSetScale({ namespace, name });
      const previous = current.spec?.replicas ?? 0;
      if (previous !== replicas) {
        if (kind === 'Deployment') await this.apps.patchNamespacedDeploymentScale({ namespace, name, body });
        else await this.apps.patchNamespacedStatefulSetScale({ namespace, name, body });
      }
      return { previous };
    } catch (err) {
      throw toKubernetesError(err, `cannot scale ${kind.toLowerCase()} ${namespace}/${name}`);
    }
  }

  /**
   * `kubectl rollout undo`: puts back the pod template of the previous
   * revision (or `toRevision`), read from the Deployment's ReplicaSets.
   * Returns the revision restored; wait with `waitForRollout`.
   */
  async undo(namespace: string, name: string, toRevision?: number): Promise<{ revision: number }> {
    const deployment = await this.readDeployment(namespace, name);
    let replicaSets;
    try {
      replicaSets = (await this.apps.listNamespacedReplicaSet({ namespace })).items.filter((rs) =>
        rs.metadata?.ownerReferences?.some((o) => o.kind === 'Deployment' && o.uid === deployment.metadata?.uid),
      );
    } catch (err) {
      throw toKubernetesError(err, `cannot list replica sets of ${namespace}/${name}`);
    }
    const revisionOf = (rs: (typeof replicaSets)[number]) => Number(rs.metadata?.annotations?.['deployment.kubernetes.io/revision'] ?? 0);
    const byRevision = replicaSets.sort((a, b) => revisionOf(b) - revisionOf(a));
    const target = toRevision === undefined ? byRevision[1] : byRevision.find((rs) => revisionOf(rs) === toRevision);
    if (!target?.spec?.template) {
      throw new NotFoundError(`deployment ${namespace}/${name} has no ${toRevision === undefined ? 'previous revision' : `revision ${toRevision}`} to roll back to`);
    }
    const template = structuredClone(target.spec.template);
    delete template.metadata?.labels?.['pod-template-hash']; // the controller's label, not part of the spec
    try {
      await this.apps.patchNamespacedDeployment({ namespace, name, body: [{ op: 'replace', path: '/spec/template', value: template }] });
    } catch (err) {
      throw toKubernetesError(err, `cannot roll back deployment ${namespace}/${name}`);
    }
    return { revision: revisionOf(target) };
  }

  async readDeployment(namespace: string, name: string): Promise<V1Deployment> {
    try {
      return await this.apps.readNamespacedDeployment({ namespace, name });
    } catch (err) {
      throw toKubernetesError(err, `cannot read deployment ${namespace}/${name}`);
    }
  }

  /**
   * Resolves when the rollout is complete; rejects with RolloutStalled or
   * RolloutPaused when it cannot complete on its own, and stops on `signal`.
   * `onStatus` sees every change (for heartbeats and the status query).
   */
  async waitForRollout(
    namespace: string,
    name: string,
    options: { signal?: AbortSignal; onStatus?: (s: RolloutStatus) => void } = {},
  ): Promise<RolloutStatus> {
    const judge = (d: V1Deployment): RolloutStatus | undefined => {
      const s = rolloutStatus(d);
      options.onStatus?.(s);
      if (s.state === 'complete') return s;
      if (s.state === 'stalled') throw new RolloutError('RolloutStalled', s.message);
      if (s.state === 'paused') throw new RolloutError('RolloutPaused', s.message);
      return undefined;
    };

    const first = await this.readDeployment(namespace, name);
    const done = judge(first);
    if (done) return done;

    const watch = new Watch(this.kc);
    return new Promise<RolloutStatus>((resolve, reject) => {
      let current: AbortController | undefined;
      let finished = false;
      const finish = (fn: () => void) => {
        if (finished) return;
        finished = true;
        options.signal?.removeEventListener('abort', onAbort);
        current?.abort();
        fn();
      };
      const onAbort = () => finish(() => reject(options.signal!.reason ?? new Error('cancelled')));
      options.signal?.addEventListener('abort', onAbort, { once: true });

      const resume = async () => {
        if (finished) return;
        try {
          const latest = await this.readDeployment(namespace, name);
          const s = judge(latest);
          if (s) finish(() => resolve(s));
          else start(latest.metadata?.resourceVersion);
        } catch (err) {
          finish(() => reject(err));
        }
      };
      const start = (resourceVersion?: string) => {
        if (finished) return;
        watch
          .watch(
            `/apis/apps/v1/namespaces/${namespace}/deployments`,
            { fieldSelector: `metadata.name=${name}`, resourceVersion, allowWatchBookmarks: true },
            (phase, obj: V1Deployment) => {
              if (phase === 'DELETED') return finish(() => reject(new NotFoundError(`deployment ${namespace}/${name} was deleted during the rollout`)));
              if (phase !== 'ADDED' && phase !== 'MODIFIED') return;
              resourceVersion = obj.metadata?.resourceVersion;
              try {
                const s = judge(obj);
                if (s) finish(() => resolve(s));
              } catch (err) {
                finish(() => reject(err));
              }
            },
            // The server ends watches now and then (or the version expired):
            // read the object afresh, judge it, and watch on from there.
            () => setTimeout(() => void resume(), 500),
          )
          .then((c) => (current = c), (err) => finish(() => reject(toKubernetesError(err, `cannot watch deployment ${namespace}/${name}`))));
      };
      start(first.metadata?.resourceVersion);
    });
  }
}
