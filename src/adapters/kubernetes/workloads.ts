/**
 * Deployments and StatefulSets, done the way `kubectl` does them: scale,
 * set image, rollout restart, rollout undo, rollout status, and waiting for a
 * workload's pods to be Ready. Every change is idempotent (a retry after a
 * crash changes nothing more), and every wait is a watch that stops on abort.
 */
import { AppsV1Api, CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Deployment, type V1Pod, type V1StatefulSet } from '@kubernetes/client-node';
import { ConflictError, InvalidInputError, NotFoundError, PeerUnavailableError, RolloutError } from '../../errors.ts';
import { rolloutStatus, statefulSetRolloutStatus, type RolloutStatus } from '../../domain/rollout.ts';
import { imageReferenceProblem } from '../../domain/image.ts';
import { toKubernetesError, watchUntil } from './client.ts';

export type WorkloadKind = 'Deployment' | 'StatefulSet';
type Workload = V1Deployment | V1StatefulSet;

export interface WorkloadRef {
  kind: WorkloadKind;
  namespace: string;
  name: string;
}

export interface FailingPod {
  pod: string;
  container: string;
  reason: string;
  restarts: number;
}

/** Waiting reasons that mean the container will not start by waiting longer. */
const FAILING_REASONS = new Set(['CrashLoopBackOff', 'ImagePullBackOff', 'ErrImagePull', 'InvalidImageName', 'CreateContainerConfigError', 'CreateContainerError']);

export interface PodsReadyStatus {
  expected: number;
  ready: number;
  /** Pods not Ready and why, e.g. "app-7d9-x2: CrashLoopBackOff". */
  notReady: string[];
}

/** The annotation `kubectl rollout restart` sets; a new value makes the controller replace every pod. */
export const RESTARTED_AT_ANNOTATION = 'kubectl.kubernetes.io/restartedAt';
/** The annotation `kubectl --record` and `kubectl annotate` set; shown by `kubectl rollout history`. */
export const CHANGE_CAUSE_ANNOTATION = 'kubernetes.io/change-cause';
const REVISION_ANNOTATION = 'deployment.kubernetes.io/revision';
/** Set by `scaleRemembering`: which run scaled the workload down, and the count to put back. */
export const SCALED_BY_ANNOTATION = 'opsflow.io/scaled-by';
export const REPLICAS_BEFORE_ANNOTATION = 'opsflow.io/replicas-before';

const describe = (w: WorkloadRef) => `${w.kind.toLowerCase()} ${w.namespace}/${w.name}`;

export class Workloads {
  private readonly apps: AppsV1Api;
  private readonly core: CoreV1Api;

  constructor(private readonly kc: KubeConfig) {
    this.apps = kc.makeApiClient(AppsV1Api);
    this.core = kc.makeApiClient(CoreV1Api);
  }

  /** The label selector of `workload`'s pods (see podSelector). */
  podSelector(w: WorkloadRef, workload: Workload): string {
    return podSelector(w, workload);
  }

  async read(w: WorkloadRef): Promise<Workload> {
    try {
      return w.kind === 'Deployment'
        ? await this.apps.readNamespacedDeployment({ namespace: w.namespace, name: w.name })
        : await this.apps.readNamespacedStatefulSet({ namespace: w.namespace, name: w.name });
    } catch (err) {
      throw toKubernetesError(err, `cannot read ${describe(w)}`);
    }
  }

  async readDeployment(namespace: string, name: string): Promise<V1Deployment> {
    return (await this.read({ kind: 'Deployment', namespace, name })) as V1Deployment;
  }

  /** Container name → image, in the pod template. */
  async images(w: WorkloadRef): Promise<Record<string, string>> {
    const workload = await this.read(w);
    return Object.fromEntries((workload.spec?.template.spec?.containers ?? []).map((c) => [c.name, c.image ?? '']));
  }

  /**
   * Sets replicas through the scale subresource and returns the count it had.
   * Setting the count it already has is a no-op: safe to retry.
   */
  async scale(w: WorkloadRef, replicas: number): Promise<{ previous: number }> {
    const { namespace, name } = w;
    const body = [{ op: 'replace', path: '/spec/replicas', value: replicas }];
    try {
      const current =
        w.kind === 'Deployment'
          ? await this.apps.readNamespacedDeploymentScale({ namespace, name })
          : await this.apps.readNamespacedStatefulSetScale({ namespace, name });
      const previous = current.spec?.replicas ?? 0;
      if (previous !== replicas) {
        if (w.kind === 'Deployment') await this.apps.patchNamespacedDeploymentScale({ namespace, name, body });
        else await this.apps.patchNamespacedStatefulSetScale({ namespace, name, body });
      }
      return { previous };
    } catch (err) {
      throw toKubernetesError(err, `cannot scale ${describe(w)}`);
    }
  }

  /**
   * Scales to `replicas` and records on the workload itself, in the same
   * patch, who scaled it and the count it had. A retry whose first attempt
   * scaled but crashed before reporting still returns the original count, and
   * `kubectl get -o yaml` shows why the workload is down. A workload another
   * run scaled and has not scaled back is refused.
   */
  async scaleRemembering(w: WorkloadRef, replicas: number, owner: string): Promise<{ previous: number }> {
    const workload = await this.read(w);
    const annotations = workload.metadata?.annotations ?? {};
    const holder = annotations[SCALED_BY_ANNOTATION];
    if (holder && holder !== owner) {
      throw new ConflictError(`${describe(w)} was scaled to ${workload.spec?.replicas} by ${holder}, which has not scaled it back (annotation ${SCALED_BY_ANNOTATION})`);
    }
    const previous = holder === owner ? Number(annotations[REPLICAS_BEFORE_ANNOTATION]) : workload.spec?.replicas ?? 1;
    if (holder === owner && workload.spec?.replicas === replicas) return { previous };
    await this.jsonPatch(w, [
      { op: 'test', path: '/spec/replicas', value: workload.spec?.replicas },
      { op: 'replace', path: '/spec/replicas', value: replicas },
      ...annotationPatches(workload, { [SCALED_BY_ANNOTATION]: owner, [REPLICAS_BEFORE_ANNOTATION]: String(previous) }),
    ], `cannot scale ${describe(w)}`);
    return { previous };
  }

  /** Puts back the count `scaleRemembering` recorded and removes its record; a no-op once done. */
  async scaleBack(w: WorkloadRef, owner: string): Promise<{ replicas: number; changed: boolean }> {
    const workload = await this.read(w);
    const annotations = workload.metadata?.annotations ?? {};
    if (annotations[SCALED_BY_ANNOTATION] !== owner) return { replicas: workload.spec?.replicas ?? 1, changed: false };
    const replicas = Number(annotations[REPLICAS_BEFORE_ANNOTATION]);
    await this.jsonPatch(w, [
      { op: 'test', path: `/metadata/annotations/${pointerEscape(SCALED_BY_ANNOTATION)}`, value: owner },
      { op: 'replace', path: '/spec/replicas', value: replicas },
      { op: 'remove', path: `/metadata/annotations/${pointerEscape(SCALED_BY_ANNOTATION)}` },
      { op: 'remove', path: `/metadata/annotations/${pointerEscape(REPLICAS_BEFORE_ANNOTATION)}` },
    ], `cannot scale ${describe(w)} back`);
    return { replicas, changed: true };
  }

  /**
   * `kubectl set image`: checks every named container exists and every image
   * reference is valid before changing anything, then patches only what
   * differs (nothing at all on a retry). Returns the images it replaced.
   */
  async setImage(
    w: WorkloadRef,
    images: Record<string, string>,
    options: { changeCause?: string } = {},
  ): Promise<{ previous: Record<string, string>; changed: boolean }> {
    const workload = await this.checkImages(w, images);
    const containers = workload.spec?.template.spec?.containers ?? [];
    const previous = Object.fromEntries(containers.map((c) => [c.name, c.image ?? '']));
    const patch: object[] = [];
    containers.forEach((c, i) => {
      const image = images[c.name];
      if (image === undefined || image === c.image) return;
      // The test guards against a concurrent edit moving containers between our read and the patch.
      patch.push({ op: 'test', path: `/spec/template/spec/containers/${i}/name`, value: c.name });
      patch.push({ op: 'replace', path: `/spec/template/spec/containers/${i}/image`, value: image });
    });
    if (patch.length === 0) return { previous, changed: false };
    if (options.changeCause) patch.push(...annotationPatches(workload, { [CHANGE_CAUSE_ANNOTATION]: options.changeCause }));
    await this.jsonPatch(w, patch, `cannot set image of ${describe(w)}`);
    return { previous, changed: true };
  }

  /**
   * Checks, changing nothing, that every image reference is valid and every
   * named container exists; returns the workload as read.
   */
  async checkImages(w: WorkloadRef, images: Record<string, string>): Promise<Workload> {
    if (Object.keys(images).length === 0) throw new InvalidInputError('no image given: name at least one container and its new image');
    for (const [container, image] of Object.entries(images)) {
      const problem = imageReferenceProblem(image);
      if (problem) throw new InvalidInputError(`image "${image}" for container "${container}" ${problem}`);
    }
    const workload = await this.read(w);
    const names = (workload.spec?.template.spec?.containers ?? []).map((c) => c.name);
    const unknown = Object.keys(images).filter((c) => !names.includes(c));
    if (unknown.length) {
      throw new NotFoundError(`${describe(w)} has no container ${unknown.map((c) => `"${c}"`).join(', ')} (has: ${names.join(', ')})`);
    }
    return workload;
  }

  /** `kubectl rollout pause` / `resume`: a paused Deployment's controller makes no further changes. */
  async setPaused(namespace: string, name: string, paused: boolean): Promise<{ changed: boolean }> {
    const deployment = await this.readDeployment(namespace, name);
    if (Boolean(deployment.spec?.paused) === paused) return { changed: false };
    try {
      await this.apps.patchNamespacedDeployment({ namespace, name, body: { spec: { paused } } }, mergePatch);
    } catch (err) {
      throw toKubernetesError(err, `cannot ${paused ? 'pause' : 'resume'} deployment ${namespace}/${name}`);
    }
    return { changed: true };
  }

  /** The revision number the Deployment's template is at (its ReplicaSet's annotation). */
  async revision(namespace: string, name: string): Promise<number> {
    const deployment = await this.readDeployment(namespace, name);
    return Number(deployment.metadata?.annotations?.[REVISION_ANNOTATION] ?? 0);
  }

  /**
   * Pods of the workload that are failing rather than starting: waiting in
   * CrashLoopBackOff or an image/config error, or restarted at least
   * `minRestarts` times. Optionally only those running one of `images`.
   */
  async failingPods(w: WorkloadRef, options: { minRestarts: number; images?: string[] }): Promise<FailingPod[]> {
    const workload = await this.read(w);
    const labelSelector = podSelector(w, workload);
    let pods: V1Pod[];
    try {
      pods = (await this.core.listNamespacedPod({ namespace: w.namespace, labelSelector })).items;
    } catch (err) {
      throw toKubernetesError(err, `cannot list pods of ${describe(w)}`);
    }
    const failing: FailingPod[] = [];
    for (const pod of pods) {
      if (pod.metadata?.deletionTimestamp) continue;
      if (options.images && !pod.spec?.containers.some((c) => options.images!.includes(c.image ?? ''))) continue;
      for (const c of pod.status?.containerStatuses ?? []) {
        const waiting = c.state?.waiting?.reason;
        if ((waiting && FAILING_REASONS.has(waiting)) || c.restartCount >= options.minRestarts) {
          failing.push({ pod: pod.metadata?.name ?? '?', container: c.name, reason: waiting ?? `restarted ${c.restartCount} times`, restarts: c.restartCount });
        }
      }
    }
    return failing;
  }

  /**
   * `kubectl rollout restart`: stamps the pod template with `at`. The caller
   * passes a fixed time (the workflow's), so a retry sets the same value and
   * restarts nothing twice.
   */
  async restart(w: WorkloadRef, at: string): Promise<{ changed: boolean }> {
    const workload = await this.read(w);
    if (workload.spec?.template.metadata?.annotations?.[RESTARTED_AT_ANNOTATION] === at) return { changed: false };
    const body = { spec: { template: { metadata: { annotations: { [RESTARTED_AT_ANNOTATION]: at } } } } };
    try {
      const { namespace, name } = w;
      if (w.kind === 'Deployment') await this.apps.patchNamespacedDeployment({ namespace, name, body }, mergePatch);
      else await this.apps.patchNamespacedStatefulSet({ namespace, name, body }, mergePatch);
    } catch (err) {
      throw toKubernetesError(err, `cannot restart ${describe(w)}`);
    }
    return { changed: true };
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
    const revisionOf = (rs: (typeof replicaSets)[number]) => Number(rs.metadata?.annotations?.[REVISION_ANNOTATION] ?? 0);
    const byRevision = replicaSets.sort((a, b) => revisionOf(b) - revisionOf(a));
    const target = toRevision === undefined ? byRevision[1] : byRevision.find((rs) => revisionOf(rs) === toRevision);
    if (!target?.spec?.template) {
      throw new NotFoundError(`deployment ${namespace}/${name} has no ${toRevision === undefined ? 'previous revision' : `revision ${toRevision}`} to roll back to`);
    }
    const template = structuredClone(target.spec.template);
    delete template.metadata?.labels?.['pod-template-hash']; // the controller's label, not part of the spec
    await this.jsonPatch({ kind: 'Deployment', namespace, name }, [{ op: 'replace', path: '/spec/template', value: template }], `cannot roll back deployment ${namespace}/${name}`);
    return { revision: revisionOf(target) };
  }

  /**
   * Resolves when the rollout is complete; rejects with RolloutStalled or
   * RolloutPaused when it cannot complete on its own, and stops on `signal`.
   * `onStatus` sees every change (for heartbeats and the status query).
   */
  async waitForRollout(
    w: WorkloadRef,
    options: { signal?: AbortSignal; onStatus?: (s: RolloutStatus) => void } = {},
  ): Promise<RolloutStatus> {
    const { namespace, name } = w;
    const statusOf = (o: Workload) => (w.kind === 'Deployment' ? rolloutStatus(o as V1Deployment) : statefulSetRolloutStatus(o as V1StatefulSet));
    return watchUntil<Workload, RolloutStatus>(this.kc, {
      what: describe(w),
      path: `/apis/apps/v1/namespaces/${namespace}/${w.kind === 'Deployment' ? 'deployments' : 'statefulsets'}`,
      fieldSelector: `metadata.name=${name}`,
      list: async () => {
        const workload = await this.read(w);
        return { items: [workload], resourceVersion: workload.metadata?.resourceVersion };
      },
      judge: ([workload]) => {
        if (!workload) throw new NotFoundError(`${describe(w)} was deleted during the rollout`);
        const s = statusOf(workload);
        options.onStatus?.(s);
        if (s.state === 'complete') return s;
        if (s.state === 'stalled') throw new RolloutError('RolloutStalled', s.message);
        if (s.state === 'paused') throw new RolloutError('RolloutPaused', s.message);
        return undefined;
      },
      signal: options.signal,
    });
  }

  /**
   * Waits until as many of the workload's pods are Ready as it wants
   * replicas (and none is left terminating), as the runbooks' "wait for pods
   * Ready up to 300 s" does. On timeout it names the pods that are not Ready
   * and why (CrashLoopBackOff, Pending…).
   */
  async waitForPodsReady(
    w: WorkloadRef,
    options: { timeoutMs: number; signal?: AbortSignal; onStatus?: (s: PodsReadyStatus) => void },
  ): Promise<PodsReadyStatus> {
    const workload = await this.read(w);
    const expected = workload.spec?.replicas ?? 1;
    const labelSelector = podSelector(w, workload);
    let last: PodsReadyStatus = { expected, ready: 0, notReady: [] };
    const timeout = AbortSignal.timeout(options.timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    try {
      return await watchUntil<V1Pod, PodsReadyStatus>(this.kc, {
        what: `pods of ${describe(w)}`,
        path: `/api/v1/namespaces/${w.namespace}/pods`,
        labelSelector,
        list: async () => {
          try {
            const list = await this.core.listNamespacedPod({ namespace: w.namespace, labelSelector });
            return { items: list.items, resourceVersion: list.metadata?.resourceVersion };
          } catch (err) {
            throw toKubernetesError(err, `cannot list pods of ${describe(w)}`);
          }
        },
        judge: (pods) => {
          const live = pods.filter((p) => !p.metadata?.deletionTimestamp);
          const ready = live.filter(isPodReady);
          last = { expected, ready: ready.length, notReady: live.filter((p) => !isPodReady(p)).map(whyNotReady) };
          options.onStatus?.(last);
          return ready.length >= expected && live.length === pods.length && live.length === expected ? last : undefined;
        },
        signal,
      });
    } catch (err) {
      if (timeout.aborted && !options.signal?.aborted) {
        const pods = last.notReady.length ? `; not ready: ${last.notReady.join(', ')}` : '';
        throw new RolloutError('PodsNotReady', `${last.ready} of ${expected} pods of ${describe(w)} Ready after ${options.timeoutMs / 1000} s${pods}`);
      }
      throw err;
    }
  }

  /**
   * Applies a JSON patch whose `test` operations check that what was read is
   * still so. A failed test (422) means someone changed the object meanwhile:
   * reported as retryable, so the activity's retry reads it afresh.
   */
  private async jsonPatch(w: WorkloadRef, body: object[], what: string): Promise<void> {
    const { namespace, name } = w;
    try {
      if (w.kind === 'Deployment') await this.apps.patchNamespacedDeployment({ namespace, name, body });
      else await this.apps.patchNamespacedStatefulSet({ namespace, name, body });
    } catch (err) {
      if ((err as { code?: number }).code === 422 && body.some((op) => (op as { op: string }).op === 'test')) {
        throw new PeerUnavailableError(`${what}: it changed while being patched (a concurrent edit); read it again and retry`, err);
      }
      throw toKubernetesError(err, what);
    }
  }
}

/** client-node 1.x sends JSON patches unless told otherwise. */
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** JSON Patch operations that set annotations, creating the map when the object has none. */
function annotationPatches(o: Workload, values: Record<string, string>): object[] {
  if (!o.metadata?.annotations) return [{ op: 'add', path: '/metadata/annotations', value: values }];
  return Object.entries(values).map(([key, value]) => ({ op: 'add', path: `/metadata/annotations/${pointerEscape(key)}`, value }));
}

/** JSON Pointer escaping: "/" in an annotation key becomes ~1. */
function pointerEscape(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

/**
 * The label selector of a workload's pods. Without matchLabels it would match
 * every pod of the namespace, so that is refused.
 */
export function podSelector(w: WorkloadRef, workload: Workload): string {
  const selector = Object.entries(workload.spec?.selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(',');
  if (!selector) throw new InvalidInputError(`${describe(w)} has no matchLabels selector to find its pods by`);
  return selector;
}

export function isPodReady(pod: V1Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

function whyNotReady(pod: V1Pod): string {
  const waiting = pod.status?.containerStatuses?.find((c) => c.state?.waiting)?.state?.waiting?.reason;
  return `${pod.metadata?.name}: ${waiting ?? pod.status?.phase ?? 'Pending'}`;
}
