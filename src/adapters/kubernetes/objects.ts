/**
 * Configuration objects and whole namespaces: reading and writing Secrets and
 * ConfigMaps (credential rotation, config backup), exporting a namespace as
 * portable manifests, and applying manifests with server-side apply (restore,
 * cloning an environment). Every write is idempotent and says whether it
 * changed anything; every Secret value read is remembered so `redact` scrubs
 * it, and no message ever carries one.
 */
import {
  ApiException,
  CoreV1Api,
  HttpMethod,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type KubernetesObject,
  type ResponseContext,
  type V1ConfigMap,
  type V1Secret,
} from '@kubernetes/client-node';
import { ConflictError, InvalidInputError, NotFoundError } from '../../errors.ts';
import { redact, rememberSecret } from '../../secrets.ts';
import { toKubernetesError } from './client.ts';

/** A plain object as the API server reads and writes it: apiVersion, kind, metadata, then spec, data… */
export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [field: string]: unknown;
  };
  [field: string]: unknown;
}

/** Text values are strings; values that are not UTF-8 (keystores, DER keys) are bytes. */
export type SecretValue = string | Uint8Array;

export interface WriteOptions {
  /** Added to the object's labels; labels it already has are kept. */
  labels?: Record<string, string>;
  /**
   * Make the data exactly `data`, removing keys not in it. Without it only the
   * given keys change: a rotation of `password` keeps `username`. To undo a
   * write, write its `previous` back with `replace: true`.
   */
  replace?: boolean;
}

export interface WriteResult<V> {
  /** The whole data before the write; undefined when the object did not exist. */
  previous?: Record<string, V>;
  changed: boolean;
}

export interface ExportOptions {
  /** Kinds to export (see EXPORTABLE_KINDS); DEFAULT_EXPORT_KINDS without it. */
  kinds?: string[];
  /**
   * Keep Services' nodePorts and healthCheckNodePort. Off by default: the
   * cluster allocates them, and applying a copy beside the original (or in a
   * cluster where the port is taken) fails with "port already allocated".
   */
  keepNodePorts?: boolean;
  /** Objects per list request; a big namespace is read in pages of this size. */
  pageSize?: number;
  signal?: AbortSignal;
}

export interface ApplyOptions {
  /** Apply every manifest into this namespace instead of its own metadata.namespace. */
  namespace?: string;
  /** Server-side apply's field manager: the owner of every field applied. */
  fieldManager?: string;
  /** Create a missing target namespace instead of failing with NotFound. */
  createNamespace?: boolean;
  signal?: AbortSignal;
}

export type ApplyOutcome = 'created' | 'changed' | 'unchanged';

export interface ApplyResult {
  created: number;
  changed: number;
  unchanged: number;
  /** In the order applied. */
  objects: { kind: string; namespace: string; name: string; outcome: ApplyOutcome }[];
}

/**
 * The namespaced kinds this layer knows, in the order Helm installs them
 * (policies and identities, then config and storage, then Services, then
 * workloads, then what refers to workloads), which is also the order exports
 * list them in and apply applies them in.
 */
export const EXPORTABLE_KINDS: Readonly<Record<string, string>> = {
  NetworkPolicy: 'networking.k8s.io/v1',
  PodDisruptionBudget: 'policy/v1',
  ServiceAccount: 'v1',
  Secret: 'v1',
  ConfigMap: 'v1',
  PersistentVolumeClaim: 'v1',
  Role: 'rbac.authorization.k8s.io/v1',
  RoleBinding: 'rbac.authorization.k8s.io/v1',
  Service: 'v1',
  DaemonSet: 'apps/v1',
  Deployment: 'apps/v1',
  HorizontalPodAutoscaler: 'autoscaling/v2',
  StatefulSet: 'apps/v1',
  CronJob: 'batch/v1',
  Ingress: 'networking.k8s.io/v1',
};

/**
 * What an application is made of and what opsflow's Role in a target
 * namespace may read (deploy/kubernetes/target-namespace/role.yaml), so a
 * default export works with the shipped permissions. Roles and RoleBindings
 * are left out: that Role may not touch RBAC, the API server refuses to let
 * anyone grant what it does not hold itself, and bindings name subjects in the
 * source namespace. Jobs are left out: applying one runs it again.
 */
export const DEFAULT_EXPORT_KINDS = ['ServiceAccount', 'Secret', 'ConfigMap', 'PersistentVolumeClaim', 'Service', 'Deployment', 'StatefulSet'] as const;

const KIND_ORDER = Object.keys(EXPORTABLE_KINDS);
const DEFAULT_PAGE_SIZE = 250;
const APPLY_CONCURRENCY = 8;
const WRITE_ATTEMPTS = 5;

/** Set by controllers and tools for their own bookkeeping; meaningless, or wrong, on a copy. */
const SERVER_ANNOTATIONS = [
  'deployment.kubernetes.io/revision',
  'kubectl.kubernetes.io/last-applied-configuration',
  'pv.kubernetes.io/bind-completed',
  'pv.kubernetes.io/bound-by-controller',
  'volume.beta.kubernetes.io/storage-provisioner',
  'volume.kubernetes.io/storage-provisioner',
  'volume.kubernetes.io/selected-node', // names a node of the source cluster
];
const SERVER_METADATA = ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'selfLink', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generateName'];

/** client-node 1.x sends JSON patches unless told otherwise. */
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/**
 * KubernetesObjectApi (URLs from discovery, the kubeconfig's auth and TLS)
 * with the server's JSON passed through as is. client-node's typed models drop
 * fields they do not know (a newer server's) and rename some (NetworkPolicy's
 * `from` is `_from`), in both directions: an export or an apply built on them
 * would lose fields without a word.
 */
class PlainObjectApi extends KubernetesObjectApi {
  protected override async processResponse<T extends KubernetesObject>(response: ResponseContext): Promise<T> {
    if (response.httpStatusCode >= 200 && response.httpStatusCode <= 299) return JSON.parse(await response.body.text()) as T;
    throw new ApiException(response.httpStatusCode, 'Unsuccessful HTTP Request', await response.getBodyAsAny(), response.headers);
  }

  /** Discovery's entry for a kind (cached), undefined when the group/version does not have it. */
  async describeKind(apiVersion: string, kind: string): Promise<{ namespaced: boolean } | undefined> {
    return this.resource(apiVersion, kind);
  }

  /**
   * Server-side apply, forced: this manager takes over fields another one
   * set, as a restore must. A field the schema does not have is refused (an
   * error, never dropped).
   */
  async serverSideApply(manifest: Manifest, fieldManager: string): Promise<Manifest> {
    const path = await this.specUriPath(manifest, 'patch');
    const request = this.configuration.baseServer.makeRequestContext(path, HttpMethod.PATCH);
    request.setHeaderParam('Accept', 'application/json');
    request.setHeaderParam('Content-Type', PatchStrategy.ServerSideApply); // JSON is YAML
    request.setQueryParam('fieldManager', fieldManager);
    request.setQueryParam('force', 'true');
    request.setQueryParam('fieldValidation', 'Strict');
    request.setBody(JSON.stringify(manifest));
    return this.requestPromise(request);
  }
}

export class KubernetesObjects {
  private readonly core: CoreV1Api;
  private readonly api: PlainObjectApi;

  constructor(kc: KubeConfig) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.api = kc.makeApiClient(PlainObjectApi);
  }

  // ── Secrets ──────────────────────────────────────────────────────────────

  /** Every key's value as text; a value that is not UTF-8 is an error naming its key (use readSecretBytes). */
  async readSecret(namespace: string, name: string): Promise<Record<string, string>> {
    const bytes = await this.readSecretBytes(namespace, name);
    return Object.fromEntries(Object.entries(bytes).map(([key, value]) => [key, asText(value, `secret ${namespace}/${name} key "${key}"`)]));
  }

  /** Every key's value as the exact bytes stored. */
  async readSecretBytes(namespace: string, name: string): Promise<Record<string, Buffer>> {
    checkName(namespace, name);
    const secret = await this.readSecretObject(namespace, name);
    if (!secret) throw new NotFoundError(`secret ${namespace}/${name} does not exist`);
    return decodeSecretData(secret.data);
  }

  async readSecretKey(namespace: string, name: string, key: string): Promise<string> {
    checkDataKey(key, 'key');
    const bytes = await this.readSecretBytes(namespace, name);
    const value = bytes[key];
    if (value === undefined) {
      // Key names are not secret; listing them tells the caller what went wrong.
      throw new NotFoundError(`secret ${namespace}/${name} has no key "${key}" (has: ${Object.keys(bytes).sort().join(', ') || 'no keys'})`);
    }
    return asText(value, `secret ${namespace}/${name} key "${key}"`);
  }

  /**
   * Creates the Secret or changes only what differs (nothing at all on a
   * retry). Returns the data it had, text values as strings and others as
   * bytes, so writing `previous` back with `replace: true` restores it exactly.
   */
  async writeSecret(namespace: string, name: string, data: Record<string, SecretValue>, options: WriteOptions = {}): Promise<WriteResult<string | Buffer>> {
    checkName(namespace, name);
    checkData(data, options.labels, true);
    const encoded: Record<string, string> = {};
    for (const [key, value] of Object.entries(data)) {
      const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
      rememberBytes(bytes);
      encoded[key] = bytes.toString('base64');
    }
    const { previous, changed } = await this.upsert('secret', namespace, name, encoded, options);
    if (!previous) return { changed };
    const decoded = decodeSecretData(previous);
    return { previous: Object.fromEntries(Object.entries(decoded).map(([key, bytes]) => [key, utf8(bytes) ?? bytes])), changed };
  }

  // ── ConfigMaps ───────────────────────────────────────────────────────────

  /** The ConfigMap's `data` (its `binaryData`, if any, is not included). */
  async readConfigMap(namespace: string, name: string): Promise<Record<string, string>> {
    checkName(namespace, name);
    const configMap = await this.readConfigMapObject(namespace, name);
    if (!configMap) throw new NotFoundError(`configmap ${namespace}/${name} does not exist`);
    return { ...configMap.data };
  }

  /** As writeSecret, for a ConfigMap's `data`. */
  async writeConfigMap(namespace: string, name: string, data: Record<string, string>, options: WriteOptions = {}): Promise<WriteResult<string>> {
    checkName(namespace, name);
    checkData(data, options.labels, false);
    return this.upsert('configmap', namespace, name, data, options);
  }

  // ── Namespaces ───────────────────────────────────────────────────────────

  /**
   * The namespace's own objects as manifests that can be applied elsewhere:
   * what the cluster generates is skipped (objects with ownerReferences such
   * as ReplicaSets, the default ServiceAccount, kube-root-ca.crt,
   * service-account tokens) and server-set fields are stripped. Sorted by
   * kind (apply order) then name, keys sorted, so two exports of the same
   * state are byte-identical once serialized, for diffs and hashes.
   */
  async exportNamespace(namespace: string, options: ExportOptions = {}): Promise<Manifest[]> {
    checkNamespace(namespace, 'namespace');
    const kinds = options.kinds ?? [...DEFAULT_EXPORT_KINDS];
    const unknown = kinds.filter((k) => !(k in EXPORTABLE_KINDS));
    if (unknown.length) throw new InvalidInputError(`kinds: unknown kind ${unknown.map((k) => `"${k}"`).join(', ')} (known: ${KIND_ORDER.join(', ')})`);
    const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
    if (!Number.isInteger(pageSize) || pageSize < 1) throw new InvalidInputError(`pageSize: must be a positive integer`);
    // A list in a namespace that does not exist is simply empty: ask first.
    await this.requireNamespace(namespace);

    const distinct = [...new Set(kinds)];
    const listed = await Promise.all(distinct.map((kind) => this.listAll(EXPORTABLE_KINDS[kind]!, kind, namespace, pageSize, options.signal)));
    const manifests: Manifest[] = [];
    for (const [i, items] of listed.entries()) {
      const kind = distinct[i]!;
      for (const item of items) {
        const object = { ...item, apiVersion: EXPORTABLE_KINDS[kind]!, kind } as Manifest; // list items carry no kind
        if (isGenerated(object)) continue;
        if (kind === 'Secret') rememberSecretData(object.data as Record<string, string> | undefined);
        manifests.push(canonical(portable(object, options)));
      }
    }
    return manifests.sort(byApplyOrder);
  }

  /**
   * Server-side applies each manifest (forced, as `fieldManager`), in apply
   * order: ServiceAccounts, Secrets, ConfigMaps, PVCs and Services before the
   * workloads that use them. Idempotent: applying the same manifests again
   * changes nothing. Every input is checked, and every target namespace
   * found, before the first write.
   */
  async apply(manifests: Manifest[], options: ApplyOptions = {}): Promise<ApplyResult> {
    const fieldManager = options.fieldManager ?? 'opsflow';
    if (!fieldManager || fieldManager.length > 128 || !/^[\x21-\x7e]+$/.test(fieldManager)) {
      throw new InvalidInputError(`fieldManager: must be 1 to 128 printable characters without spaces`);
    }
    if (options.namespace !== undefined) checkNamespace(options.namespace, 'namespace');

    const targets = manifests.map((m, i) => this.prepare(m, i, options.namespace));
    const indexOf = new Map(targets.map((t, i) => [t, i]));
    const seen = new Set<string>();
    for (const [i, t] of targets.entries()) {
      const key = `${t.apiVersion}/${t.kind}/${t.metadata.namespace}/${t.metadata.name}`;
      if (seen.has(key)) throw new InvalidInputError(`manifests[${i}]: ${describe(t)} appears more than once`);
      seen.add(key);
    }
    await this.checkKinds(targets);
    for (const namespace of new Set(targets.map((t) => t.metadata.namespace!))) {
      options.signal?.throwIfAborted();
      if (options.createNamespace) await this.ensureNamespace(namespace);
      else await this.requireNamespace(namespace);
    }

    const result: ApplyResult = { created: 0, changed: 0, unchanged: 0, objects: [] };
    // Objects of one kind do not depend on each other: apply them side by side, kind after kind.
    const groups = new Map<string, Manifest[]>();
    for (const t of [...targets].sort(byApplyOrder)) groups.set(t.kind, [...(groups.get(t.kind) ?? []), t]);
    for (const group of groups.values()) {
      const outcomes = await mapLimited(group, APPLY_CONCURRENCY, (t) => this.applyOne(t, indexOf.get(t)!, fieldManager, options.signal));
      for (const [i, outcome] of outcomes.entries()) {
        const t = group[i]!;
        result[outcome]++;
        result.objects.push({ kind: t.kind, namespace: t.metadata.namespace!, name: t.metadata.name, outcome });
      }
    }
    return result;
  }

  /** Deletes these objects from `namespace` (their own without it); one already gone is not an error. Returns how many were deleted. */
  async remove(manifests: Manifest[], options: { namespace?: string; signal?: AbortSignal } = {}): Promise<number> {
    let deleted = 0;
    for (const m of manifests) {
      options.signal?.throwIfAborted();
      const namespace = options.namespace ?? m.metadata.namespace;
      const ref = { apiVersion: m.apiVersion, kind: m.kind, metadata: { name: m.metadata.name, namespace } };
      try {
        await this.api.delete(ref, undefined, undefined, undefined, undefined, 'Background');
        deleted++;
      } catch (err) {
        if (statusOf(err) !== 404) throw this.error(err, `cannot delete ${describe(ref as Manifest)}`);
      }
    }
    return deleted;
  }

  /**
   * Deletes a namespace and waits until the namespace controller has removed
   * it and everything in it; one that does not exist is not an error.
   */
  async deleteNamespace(namespace: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
    checkNamespace(namespace, 'namespace');
    try {
      await this.core.deleteNamespace({ name: namespace });
    } catch (err) {
      if (statusOf(err) === 404) return;
      throw this.error(err, `cannot delete namespace ${namespace}`);
    }
    const deadline = Date.now() + (options.timeoutMs ?? 120_000);
    for (;;) {
      options.signal?.throwIfAborted();
      try {
        await this.core.readNamespace({ name: namespace });
      } catch (err) {
        if (statusOf(err) === 404) return;
        throw this.error(err, `cannot read namespace ${namespace}`);
      }
      if (Date.now() > deadline) throw new ConflictError(`namespace ${namespace} is still terminating after ${Math.round((options.timeoutMs ?? 120_000) / 1000)} s`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  // ── internals ────────────────────────────────────────────────────────────

  /** A copy ready to apply: checked, in its target namespace, without what only the server may set. */
  private prepare(manifest: Manifest, index: number, namespace: string | undefined): Manifest {
    const at = `manifests[${index}]`;
    if (!manifest || typeof manifest !== 'object') throw new InvalidInputError(`${at}: must be an object`);
    if (typeof manifest.apiVersion !== 'string' || !manifest.apiVersion) throw new InvalidInputError(`${at}.apiVersion: required`);
    if (typeof manifest.kind !== 'string' || !manifest.kind) throw new InvalidInputError(`${at}.kind: required`);
    if (typeof manifest.metadata !== 'object' || manifest.metadata === null) throw new InvalidInputError(`${at}.metadata: required`);
    checkObjectName(manifest.metadata.name, `${at}.metadata.name`);
    const target = structuredClone(manifest);
    target.metadata.namespace = namespace ?? manifest.metadata.namespace;
    if (target.metadata.namespace === undefined) throw new InvalidInputError(`${at}.metadata.namespace: required (or pass options.namespace)`);
    checkNamespace(target.metadata.namespace, `${at}.metadata.namespace`);
    for (const field of SERVER_METADATA) delete target.metadata[field];
    delete target.metadata.ownerReferences; // they name uids of the source cluster
    delete target.status;
    if (target.kind === 'Secret') {
      rememberSecretData(target.data as Record<string, string> | undefined);
      for (const value of Object.values((target.stringData as Record<string, string> | undefined) ?? {})) rememberSecret(String(value));
    }
    return target;
  }

  /** Every kind is served by the cluster and namespaced, or nothing is applied. */
  private async checkKinds(targets: Manifest[]): Promise<void> {
    const checked = new Set<string>();
    for (const [i, t] of targets.entries()) {
      const key = `${t.apiVersion} ${t.kind}`;
      if (checked.has(key)) continue;
      checked.add(key);
      let resource;
      try {
        resource = await this.api.describeKind(t.apiVersion, t.kind);
      } catch (err) {
        if (statusOf(err) === 404) throw new InvalidInputError(`manifests[${i}].apiVersion: the cluster does not serve ${t.apiVersion}`);
        throw this.error(err, `cannot look up ${t.apiVersion} ${t.kind}`);
      }
      if (!resource) throw new InvalidInputError(`manifests[${i}].kind: the cluster has no kind ${t.kind} in ${t.apiVersion}`);
      if (!resource.namespaced) throw new InvalidInputError(`manifests[${i}].kind: ${t.kind} is not namespaced; apply takes namespaced objects only`);
    }
  }

  /** Reads the resourceVersion before and after: the apply changed the object exactly when it moved. */
  private async applyOne(target: Manifest, index: number, fieldManager: string, signal: AbortSignal | undefined): Promise<ApplyOutcome> {
    signal?.throwIfAborted();
    const { apiVersion, kind, metadata } = target;
    const ref = { apiVersion, kind, metadata: { name: metadata.name, namespace: metadata.namespace } };
    let before: string | undefined;
    try {
      before = (await this.api.read(ref)).metadata?.resourceVersion;
    } catch (err) {
      if (statusOf(err) !== 404) throw this.error(err, `cannot read ${describe(target)}`);
    }
    signal?.throwIfAborted();
    let after: Manifest;
    try {
      after = await this.api.serverSideApply(target, fieldManager);
    } catch (err) {
      if (isNamespaceMissing(err)) throw new NotFoundError(`namespace ${metadata.namespace} does not exist`);
      // The server answers a field its schema lacks with a 500; retrying cannot fix the manifest.
      const message = serverMessage(err);
      if (statusOf(err) === 500 && message?.includes('field not declared in schema')) {
        throw new InvalidInputError(redact(`manifests[${index}]: ${describe(target)} does not match the cluster's schema: ${message}`));
      }
      throw this.error(err, `cannot apply ${describe(target)}`);
    }
    if (before === undefined) return 'created';
    return after.metadata.resourceVersion === before ? 'unchanged' : 'changed';
  }

  /** Every object of a kind, page by page; starts again if the server expires the continue token (410). */
  private async listAll(apiVersion: string, kind: string, namespace: string, pageSize: number, signal: AbortSignal | undefined): Promise<Manifest[]> {
    for (let attempt = 1; ; attempt++) {
      const items: Manifest[] = [];
      let token: string | undefined;
      try {
        do {
          signal?.throwIfAborted();
          const page = await this.api.list<Manifest>(apiVersion, kind, namespace, undefined, undefined, undefined, undefined, undefined, pageSize, token);
          items.push(...page.items);
          // Raw JSON: the field is `continue` (client-node's typed ListMeta calls it `_continue`).
          token = (page.metadata as { continue?: string } | undefined)?.continue || undefined;
        } while (token);
        return items;
      } catch (err) {
        if (statusOf(err) === 410 && token && attempt < 3) continue;
        throw this.error(err, `cannot list ${kind} objects in namespace ${namespace}`);
      }
    }
  }

  /**
   * Read-modify-write with the read's resourceVersion as a precondition, so a
   * concurrent change is never overwritten: on a conflict it reads again.
   * `desired` holds the stored form (base64 for Secrets).
   */
  private async upsert(
    kind: 'secret' | 'configmap',
    namespace: string,
    name: string,
    desired: Record<string, string>,
    options: WriteOptions,
  ): Promise<WriteResult<string>> {
    const what = `${kind} ${namespace}/${name}`;
    for (let attempt = 1; ; attempt++) {
      const current = kind === 'secret' ? await this.readSecretObject(namespace, name) : await this.readConfigMapObject(namespace, name);
      try {
        if (!current) {
          const metadata = { name, namespace, labels: options.labels };
          if (kind === 'secret') await this.core.createNamespacedSecret({ namespace, body: { metadata, type: 'Opaque', data: desired } });
          else await this.core.createNamespacedConfigMap({ namespace, body: { metadata, data: desired } });
          return { changed: true };
        }
        const previous = { ...current.data };
        const next = options.replace ? desired : { ...previous, ...desired };
        const dataPatch = changes(previous, next);
        const labels = current.metadata?.labels ?? {};
        const labelPatch = Object.fromEntries(Object.entries(options.labels ?? {}).filter(([k, v]) => labels[k] !== v));
        if (!dataPatch && Object.keys(labelPatch).length === 0) return { previous, changed: false };
        const metadata = { resourceVersion: current.metadata?.resourceVersion, ...(Object.keys(labelPatch).length ? { labels: labelPatch } : {}) };
        const body = { metadata, ...(dataPatch ? { data: dataPatch } : {}) };
        if (kind === 'secret') await this.core.patchNamespacedSecret({ namespace, name, body }, mergePatch);
        else await this.core.patchNamespacedConfigMap({ namespace, name, body }, mergePatch);
        return { previous, changed: true };
      } catch (err) {
        // 409: created or changed by someone else since our read. Read again.
        if (statusOf(err) === 409 && attempt < WRITE_ATTEMPTS) continue;
        if (statusOf(err) === 409) throw new ConflictError(`${what} kept changing under us: gave up after ${WRITE_ATTEMPTS} attempts`);
        if (isNamespaceMissing(err)) throw new NotFoundError(`namespace ${namespace} does not exist`);
        throw this.error(err, `cannot write ${what}`);
      }
    }
  }

  /** The Secret, undefined when it does not exist; NotFound when its namespace does not. */
  private async readSecretObject(namespace: string, name: string): Promise<V1Secret | undefined> {
    try {
      return await this.core.readNamespacedSecret({ namespace, name });
    } catch (err) {
      if (statusOf(err) !== 404) throw this.error(err, `cannot read secret ${namespace}/${name}`);
      await this.requireNamespace(namespace);
      return undefined;
    }
  }

  private async readConfigMapObject(namespace: string, name: string): Promise<V1ConfigMap | undefined> {
    try {
      return await this.core.readNamespacedConfigMap({ namespace, name });
    } catch (err) {
      if (statusOf(err) !== 404) throw this.error(err, `cannot read configmap ${namespace}/${name}`);
      await this.requireNamespace(namespace);
      return undefined;
    }
  }

  /**
   * NotFound when the namespace certainly does not exist. opsflow's Role is
   * namespaced and may not read Namespace objects (403): then it cannot tell,
   * goes on, and a missing namespace shows as the next call's 403 or 404.
   */
  private async requireNamespace(namespace: string): Promise<void> {
    try {
      await this.core.readNamespace({ name: namespace });
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) throw new NotFoundError(`namespace ${namespace} does not exist`);
      if (status !== 403) throw this.error(err, `cannot read namespace ${namespace}`);
    }
  }

  private async ensureNamespace(namespace: string): Promise<void> {
    try {
      await this.core.createNamespace({ body: { metadata: { name: namespace } } });
    } catch (err) {
      if (statusOf(err) !== 409) throw this.error(err, `cannot create namespace ${namespace}`); // 409: it exists
    }
  }

  /** toKubernetesError, with any known secret value scrubbed from what the server said. */
  private error(err: unknown, what: string): Error {
    const e = toKubernetesError(err, what);
    e.message = redact(e.message);
    return e;
  }
}

// ── portable manifests ─────────────────────────────────────────────────────

/** Made by the cluster for every namespace or by a controller; a copy would fight the original. */
function isGenerated(o: Manifest): boolean {
  const { name, namespace, ownerReferences, labels } = o.metadata;
  if (Array.isArray(ownerReferences) && ownerReferences.length > 0) return true;
  if (o.kind === 'ServiceAccount' && name === 'default') return true;
  if (o.kind === 'ConfigMap' && (name === 'kube-root-ca.crt' || name === 'openshift-service-ca.crt')) return true;
  if (o.kind === 'Secret' && o.type === 'kubernetes.io/service-account-token') return true;
  // The API server's own Service, in `default`.
  if (o.kind === 'Service' && namespace === 'default' && name === 'kubernetes' && labels?.provider === 'kubernetes') return true;
  return false;
}

/** Strips what the server set (identity, bookkeeping, status, allocations) so the manifest applies anywhere. */
function portable(o: Manifest, options: ExportOptions): Manifest {
  const m = structuredClone(o);
  for (const field of SERVER_METADATA) delete m.metadata[field];
  const annotations = m.metadata.annotations;
  if (annotations) {
    for (const key of SERVER_ANNOTATIONS) delete annotations[key];
    if (Object.keys(annotations).length === 0) delete m.metadata.annotations;
  }
  // System finalizers (PVC protection) are the cluster's; others are the owner's intent.
  const finalizers = (m.metadata.finalizers as string[] | undefined)?.filter((f) => !f.startsWith('kubernetes.io/'));
  if (finalizers?.length) m.metadata.finalizers = finalizers;
  else delete m.metadata.finalizers;
  delete m.status;

  const spec = m.spec as Record<string, unknown> | undefined;
  if (m.kind === 'Service' && spec) {
    // Allocated from this cluster's ranges. "None" is a choice (a headless Service) and stays.
    if (spec.clusterIP !== 'None') {
      delete spec.clusterIP;
      delete spec.clusterIPs;
    }
    if (!options.keepNodePorts) {
      delete spec.healthCheckNodePort;
      for (const port of (spec.ports as Record<string, unknown>[] | undefined) ?? []) delete port.nodePort;
    }
  }
  if (m.kind === 'PersistentVolumeClaim' && spec) delete spec.volumeName; // the bound volume is this cluster's
  if (m.kind === 'StatefulSet' && spec) {
    for (const claim of (spec.volumeClaimTemplates as Record<string, unknown>[] | undefined) ?? []) delete claim.status;
  }
  return dropNullTimestamps(m);
}

/** Older servers write `creationTimestamp: null` into pod templates; it means nothing. */
function dropNullTimestamps<T>(value: T): T {
  if (Array.isArray(value)) value.forEach(dropNullTimestamps);
  else if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if (o.creationTimestamp === null) delete o.creationTimestamp;
    Object.values(o).forEach(dropNullTimestamps);
  }
  return value;
}

/** Keys sorted at every level (apiVersion, kind, metadata first), so equal objects serialize identically. */
function canonical(m: Manifest): Manifest {
  const sorted = sortKeys(m) as Manifest;
  const { apiVersion, kind, metadata, ...rest } = sorted;
  return { apiVersion, kind, metadata, ...rest };
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

function byApplyOrder(a: Manifest, b: Manifest): number {
  const rank = (m: Manifest) => {
    const i = KIND_ORDER.indexOf(m.kind);
    return i === -1 ? KIND_ORDER.length : i; // kinds this layer does not know go last
  };
  return (
    rank(a) - rank(b) ||
    compare(a.kind, b.kind) ||
    compare(a.metadata.namespace ?? '', b.metadata.namespace ?? '') ||
    compare(a.metadata.name, b.metadata.name)
  );
}

/** Code-point order, the same on every machine (localeCompare is not). */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

const describe = (m: Manifest) => `${m.kind.toLowerCase()} ${m.metadata.namespace}/${m.metadata.name}`;

// ── data values ────────────────────────────────────────────────────────────

/** A merge patch turning `from` into `to` (removed keys as null); undefined when they are equal. */
function changes(from: Record<string, string>, to: Record<string, string>): Record<string, string | null> | undefined {
  const patch: Record<string, string | null> = {};
  for (const [k, v] of Object.entries(to)) if (from[k] !== v) patch[k] = v;
  for (const k of Object.keys(from)) if (!(k in to)) patch[k] = null;
  return Object.keys(patch).length ? patch : undefined;
}

function decodeSecretData(data: Record<string, string> | undefined): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [key, encoded] of Object.entries(data ?? {})) {
    const bytes = Buffer.from(encoded, 'base64');
    rememberBytes(bytes);
    out[key] = bytes;
  }
  return out;
}

function rememberSecretData(data: Record<string, string> | undefined): void {
  for (const encoded of Object.values(data ?? {})) rememberBytes(Buffer.from(encoded, 'base64'));
}

/** The value as text and as base64 (the form it takes in a manifest), so either is scrubbed from logs. */
function rememberBytes(bytes: Buffer): void {
  const text = utf8(bytes);
  if (text !== undefined) rememberSecret(text);
  rememberSecret(bytes.toString('base64'));
}

// fatal: invalid UTF-8 is an error, not U+FFFD; ignoreBOM: a leading BOM is part of the value.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function utf8(bytes: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

function asText(bytes: Buffer, what: string): string {
  const text = utf8(bytes);
  if (text === undefined) throw new InvalidInputError(`${what} is binary (not UTF-8) and cannot be read as text; use readSecretBytes`);
  return text;
}

// ── input checks (before any call) ─────────────────────────────────────────

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DATA_KEY = /^[-._a-zA-Z0-9]+$/;

function checkNamespace(value: unknown, field: string): void {
  if (typeof value !== 'string' || value.length > 63 || !DNS1123_LABEL.test(value)) {
    throw new InvalidInputError(`${field}: ${JSON.stringify(value)} is not a namespace name (DNS-1123 label: at most 63 lowercase letters, digits and "-", starting and ending with a letter or digit)`);
  }
}

function checkObjectName(value: unknown, field: string): void {
  if (typeof value !== 'string' || value.length > 253 || !DNS1123_SUBDOMAIN.test(value)) {
    throw new InvalidInputError(`${field}: ${JSON.stringify(value)} is not an object name (DNS-1123 subdomain: at most 253 lowercase letters, digits, "-" and ".", starting and ending with a letter or digit)`);
  }
}

function checkName(namespace: unknown, name: unknown): void {
  checkNamespace(namespace, 'namespace');
  checkObjectName(name, 'name');
}

function checkDataKey(key: unknown, field: string): void {
  if (typeof key !== 'string' || key.length > 253 || !DATA_KEY.test(key) || key === '.' || key === '..') {
    throw new InvalidInputError(`${field}: ${JSON.stringify(key)} is not a data key (letters, digits, "-", "_" and ".", at most 253)`);
  }
}

function checkData(data: Record<string, unknown>, labels: Record<string, string> | undefined, allowBytes: boolean): void {
  if (!data || typeof data !== 'object') throw new InvalidInputError('data: required');
  for (const [key, value] of Object.entries(data)) {
    checkDataKey(key, 'data key');
    // Only the key is named: the value may be a secret.
    const ok = typeof value === 'string' || (allowBytes && value instanceof Uint8Array);
    if (!ok) throw new InvalidInputError(`data.${key}: must be a string${allowBytes ? ' or bytes' : ''}`);
  }
  for (const [key, value] of Object.entries(labels ?? {})) {
    if (typeof value !== 'string') throw new InvalidInputError(`labels.${key}: must be a string`);
  }
}

// ── errors ─────────────────────────────────────────────────────────────────

function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown };
  const status = e?.code ?? e?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

/** The Status object the API server sent with an error, if any. */
function statusBody(err: unknown): { message?: string; details?: { kind?: string } } | undefined {
  const body = (err as { body?: unknown } | undefined)?.body;
  if (typeof body !== 'string') return body as ReturnType<typeof statusBody>;
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}

function serverMessage(err: unknown): string | undefined {
  const message = statusBody(err)?.message;
  return typeof message === 'string' ? message : undefined;
}

/** A 404 whose Status names the namespace (a create or apply into a namespace that is not there). */
function isNamespaceMissing(err: unknown): boolean {
  return statusOf(err) === 404 && statusBody(err)?.details?.kind === 'namespaces';
}

/** `fn` over `items` with at most `limit` at a time; results in input order; the first failure stops the rest. */
async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
