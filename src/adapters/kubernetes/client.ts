/**
 * What every part of the Kubernetes layer shares: loading credentials, turning
 * API errors into opsflow's typed errors, and `watchUntil`, the one way this
 * layer waits for the cluster to reach a state (a watch, never a polling loop).
 */
import { KubeConfig, Watch, type KubernetesObject } from '@kubernetes/client-node';
import { NotFoundError, OpsflowError, PeerRejectedError, PeerUnavailableError } from '../../errors.ts';

export interface KubernetesCredentials {
  /** Path of a kubeconfig file; without it: KUBECONFIG, ~/.kube/config, or the in-cluster service account. */
  kubeconfig?: string;
  /** Context of that kubeconfig to use instead of its current one. */
  context?: string;
}

export function loadKubeConfig(options: KubernetesCredentials = {}): KubeConfig {
  const kc = new KubeConfig();
  if (options.kubeconfig) kc.loadFromFile(options.kubeconfig);
  else kc.loadFromDefault();
  if (options.context) {
    if (!kc.getContextObject(options.context)) {
      const known = kc.getContexts().map((c) => c.name).join(', ') || 'none';
      throw new NotFoundError(`kubeconfig has no context "${options.context}" (has: ${known})`);
    }
    kc.setCurrentContext(options.context);
  }
  return kc;
}

/** 404 → NotFound, auth and validation → rejected (not retried), anything else → unavailable (retried). */
export function toKubernetesError(err: unknown, what: string): Error {
  if (err instanceof OpsflowError) return err;
  const e = err as { code?: number; statusCode?: number; message?: string; body?: unknown };
  const status = e.code ?? e.statusCode;
  const message = `${what}: ${statusMessage(e) ?? e.message ?? String(err)}`;
  if (status === 404) return new NotFoundError(message);
  if (status === 400 || status === 401 || status === 403 || status === 409 || status === 422) return new PeerRejectedError(message);
  return new PeerUnavailableError(message, err);
}

/** The API server's own explanation (a Status object's message), which says more than "HTTP 422". */
function statusMessage(e: { body?: unknown }): string | undefined {
  let body = e.body;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  const message = (body as { message?: unknown } | undefined)?.message;
  return typeof message === 'string' ? message : undefined;
}

export interface WatchSpec<O extends KubernetesObject, R> {
  /** Collection path, e.g. /apis/apps/v1/namespaces/ns/deployments. */
  path: string;
  fieldSelector?: string;
  labelSelector?: string;
  /** Lists the objects the watch covers (with the list's resourceVersion to watch from). */
  list(): Promise<{ items: O[]; resourceVersion?: string }>;
  /**
   * Judges the current set of objects: a result ends the wait, undefined
   * waits on, a throw fails it. Called after the first list and every event.
   */
  judge(objects: O[]): R | undefined;
  /** For messages: "deployment ns/name". */
  what: string;
  signal?: AbortSignal;
}

/**
 * Lists, judges, then watches from the list's resourceVersion and judges
 * again on every event until `judge` returns or throws. When the server ends
 * the watch (it does now and then, or the version expired) it lists afresh
 * and watches on from there, so no change is missed.
 */
export async function watchUntil<O extends KubernetesObject, R>(kc: KubeConfig, spec: WatchSpec<O, R>): Promise<R> {
  spec.signal?.throwIfAborted();
  const watch = new Watch(kc);
  const objects = new Map<string, O>();

  return new Promise<R>((resolve, reject) => {
    let current: AbortController | undefined;
    let finished = false;
    const finish = (fn: () => void) => {
      if (finished) return;
      finished = true;
      spec.signal?.removeEventListener('abort', onAbort);
      current?.abort();
      fn();
    };
    const onAbort = () => finish(() => reject(spec.signal!.reason ?? new Error('cancelled')));
    spec.signal?.addEventListener('abort', onAbort, { once: true });

    const judge = (): boolean => {
      try {
        const result = spec.judge([...objects.values()]);
        if (result === undefined) return false;
        finish(() => resolve(result));
      } catch (err) {
        finish(() => reject(err));
      }
      return true;
    };

    const listAndWatch = async () => {
      if (finished) return;
      let resourceVersion: string | undefined;
      try {
        const listed = await spec.list();
        objects.clear();
        for (const o of listed.items) objects.set(keyOf(o), o);
        resourceVersion = listed.resourceVersion;
      } catch (err) {
        return finish(() => reject(err));
      }
      if (judge() || finished) return;
      const query: Record<string, string | boolean> = { allowWatchBookmarks: true };
      if (resourceVersion) query.resourceVersion = resourceVersion;
      if (spec.fieldSelector) query.fieldSelector = spec.fieldSelector;
      if (spec.labelSelector) query.labelSelector = spec.labelSelector;
      watch
        .watch(
          spec.path,
          query,
          (phase, obj: O) => {
            if (finished) return;
            if (phase === 'ADDED' || phase === 'MODIFIED') objects.set(keyOf(obj), obj);
            else if (phase === 'DELETED') objects.delete(keyOf(obj));
            else return; // BOOKMARK, ERROR: the done callback follows an error
            judge();
          },
          () => setTimeout(() => void listAndWatch(), 500),
        )
        .then(
          (c) => {
            current = c;
            if (finished) c.abort();
          },
          (err) => finish(() => reject(toKubernetesError(err, `cannot watch ${spec.what}`))),
        );
    };
    void listAndWatch();
  });
}

function keyOf(o: KubernetesObject): string {
  return `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
}
