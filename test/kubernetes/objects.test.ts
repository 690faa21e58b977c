/**
 * Secrets, ConfigMaps, namespace export and apply against the real control
 * plane: values come back byte for byte (binary, newlines), writes are
 * idempotent down to the resourceVersion and hand back what they replaced,
 * errors name what is missing but never a secret value, an export holds only
 * the user's objects without server fields, and applying it into another
 * namespace recreates equal objects whose Deployment rolls out (kwok runs the
 * pods), while applying again changes nothing.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api, KubeConfig, NetworkingV1Api, type V1Deployment } from '@kubernetes/client-node';
import { FAKE_NODE_SELECTOR, FAKE_NODE_TOLERATION, startKubernetes, type KubernetesBed } from '../../deploy/bed/kubernetes/cluster.ts';
import { loadKubeConfig } from '../../src/adapters/kubernetes/client.ts';
import { KubernetesObjects, type Manifest } from '../../src/adapters/kubernetes/objects.ts';
import { Workloads } from '../../src/adapters/kubernetes/workloads.ts';
import { InvalidInputError, NotFoundError } from '../../src/errors.ts';
import { redact } from '../../src/secrets.ts';

const VAULT = 'vault'; // Secrets and ConfigMaps tests
const SRC = 'shop';
const DST = 'shop-copy';

const PASSWORD = 'hunter2-Ü-✓-s3cret';
const PEM = '-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----\n';
// Not UTF-8 (0xff, 0xfe, a lone 0x80), with a NUL and a newline.
const KEYSTORE = Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x0a, 0x41, 0x42, 0x43]);

let dir: string;
let bed: KubernetesBed;
let kc: KubeConfig;
let core: CoreV1Api;
let apps: AppsV1Api;
let objects: KubernetesObjects;
let workloads: Workloads;

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function secretResourceVersion(namespace: string, name: string): Promise<string | undefined> {
  return (await core.readNamespacedSecret({ namespace, name })).metadata?.resourceVersion;
}

function deployment(name: string): V1Deployment {
  const labels = { app: name };
  return {
    metadata: { name, labels },
    spec: {
      replicas: 2,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels, annotations: { 'example.com/config-hash': 'abc123' } },
        spec: {
          nodeSelector: FAKE_NODE_SELECTOR,
          tolerations: [FAKE_NODE_TOLERATION],
          containers: [{ name: 'app', image: 'example/web:v1', ports: [{ containerPort: 8080 }], envFrom: [{ configMapRef: { name: 'app-config' } }] }],
        },
      },
    },
  };
}

/** Every key anywhere in a value, for "no server field survived" checks. */
function allKeys(value: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(value)) value.forEach((v) => allKeys(v, out));
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      out.add(k);
      allKeys(v, out);
    }
  }
  return out;
}

const ids = (ms: { kind: string; metadata?: { name?: string }; name?: string }[]) => ms.map((m) => `${m.kind}/${m.metadata?.name ?? m.name}`);
const sha256 = (v: unknown) => createHash('sha256').update(JSON.stringify(v)).digest('hex');
const inNamespace = (ms: Manifest[], namespace: string) => ms.map((m) => ({ ...m, metadata: { ...m.metadata, namespace } }));

/** resourceVersion of every exported object as it is in `namespace` now. */
async function resourceVersions(ms: Manifest[], namespace: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const m of ms) {
    const name = m.metadata.name;
    const o =
      m.kind === 'Deployment' ? await apps.readNamespacedDeployment({ namespace, name })
      : m.kind === 'Service' ? await core.readNamespacedService({ namespace, name })
      : m.kind === 'Secret' ? await core.readNamespacedSecret({ namespace, name })
      : m.kind === 'ConfigMap' ? await core.readNamespacedConfigMap({ namespace, name })
      : await kc.makeApiClient(NetworkingV1Api).readNamespacedNetworkPolicy({ namespace, name });
    out[`${m.kind}/${name}`] = o.metadata!.resourceVersion!;
  }
  return out;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'opsflow-k8s-objects-'));
  bed = await startKubernetes({ dir });
  kc = loadKubeConfig({ kubeconfig: bed.kubeconfigPath });
  core = kc.makeApiClient(CoreV1Api);
  apps = kc.makeApiClient(AppsV1Api);
  objects = new KubernetesObjects(kc);
  workloads = new Workloads(kc);
  await core.createNamespace({ body: { metadata: { name: VAULT } } });
});

after(async () => {
  await bed?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('Secrets', () => {
  it('round trip: text with newlines and non-ASCII, and bytes that are not UTF-8, come back exact', async () => {
    const w = await objects.writeSecret(VAULT, 'db', { password: PASSWORD, 'tls.key': PEM, keystore: KEYSTORE });
    assert.deepEqual(w, { changed: true });

    const bytes = await objects.readSecretBytes(VAULT, 'db');
    assert.deepEqual(Object.keys(bytes).sort(), ['keystore', 'password', 'tls.key']);
    assert.ok(bytes.keystore!.equals(KEYSTORE), 'binary value byte for byte');
    assert.equal(bytes.password!.toString('utf8'), PASSWORD);
    assert.equal(await objects.readSecretKey(VAULT, 'db', 'tls.key'), PEM, 'newlines, including the last, kept');
    assert.equal(await objects.readSecretKey(VAULT, 'db', 'password'), PASSWORD);
    assert.equal((await core.readNamespacedSecret({ namespace: VAULT, name: 'db' })).type, 'Opaque');

    // As text, the binary key is an error naming the key, not a silently mangled value.
    await assert.rejects(objects.readSecret(VAULT, 'db'), (err: Error) => {
      assert.ok(err instanceof InvalidInputError);
      assert.match(err.message, /secret vault\/db key "keystore" is binary .*readSecretBytes/);
      return true;
    });
    await objects.writeSecret(VAULT, 'text-only', { password: PASSWORD, 'tls.key': PEM });
    assert.deepEqual(await objects.readSecret(VAULT, 'text-only'), { password: PASSWORD, 'tls.key': PEM });

    // Every value read is known to redact, as text and in its base64 (manifest) form.
    const logLine = `connecting with ${PASSWORD} / ${Buffer.from(PASSWORD).toString('base64')} / ${KEYSTORE.toString('base64')}`;
    assert.equal(redact(logLine), 'connecting with *** / *** / ***');
  });

  it('an identical write changes nothing (resourceVersion unchanged) and returns what was there', async () => {
    const rv = await secretResourceVersion(VAULT, 'db');
    const w = await objects.writeSecret(VAULT, 'db', { password: PASSWORD, 'tls.key': PEM, keystore: KEYSTORE });
    assert.equal(w.changed, false);
    assert.equal(w.previous?.password, PASSWORD);
    assert.equal(w.previous?.['tls.key'], PEM);
    assert.ok(Buffer.isBuffer(w.previous?.keystore) && w.previous.keystore.equals(KEYSTORE), 'a binary previous value is bytes');
    assert.equal(await secretResourceVersion(VAULT, 'db'), rv);
  });

  it('rotation: a write changes only its keys; writing previous back with replace restores the Secret exactly', async () => {
    const original = await objects.readSecretBytes(VAULT, 'db');
    const rotated = await objects.writeSecret(VAULT, 'db', { password: 'rotated-Pa55word', 'rotated-at': '2026-11-23T14:25:01Z' });
    assert.equal(rotated.changed, true);
    assert.equal(rotated.previous?.password, PASSWORD, 'the old password, to put back');
    const now = await objects.readSecretBytes(VAULT, 'db');
    assert.equal(now.password!.toString(), 'rotated-Pa55word');
    assert.ok(now.keystore!.equals(KEYSTORE), 'keys not written are kept');
    assert.equal(now['tls.key']!.toString(), PEM);

    const undo = await objects.writeSecret(VAULT, 'db', rotated.previous!, { replace: true });
    assert.equal(undo.changed, true);
    assert.deepEqual(await objects.readSecretBytes(VAULT, 'db'), original, 'the added key is gone, every old value back');
    assert.equal((await objects.writeSecret(VAULT, 'db', rotated.previous!, { replace: true })).changed, false, 'undo is idempotent too');

    const labelled = await objects.writeSecret(VAULT, 'db', {}, { labels: { 'app.kubernetes.io/part-of': 'shop' } });
    assert.equal(labelled.changed, true);
    const rv = await secretResourceVersion(VAULT, 'db');
    assert.equal((await objects.writeSecret(VAULT, 'db', {}, { labels: { 'app.kubernetes.io/part-of': 'shop' } })).changed, false);
    assert.equal(await secretResourceVersion(VAULT, 'db'), rv);
  });

  it('a missing key or Secret is NotFound naming namespace, name and key, and never a value', async () => {
    await assert.rejects(objects.readSecretKey(VAULT, 'db', 'api-token'), (err: Error) => {
      assert.ok(err instanceof NotFoundError);
      assert.match(err.message, /secret vault\/db has no key "api-token"/);
      for (const value of [PASSWORD, PEM, 'MIIBVQ', Buffer.from(PASSWORD).toString('base64'), KEYSTORE.toString('base64')]) {
        assert.ok(!err.message.includes(value), `message leaks a value: ${err.message}`);
      }
      return true;
    });
    await assert.rejects(objects.readSecret(VAULT, 'absent'), (err: Error) => err instanceof NotFoundError && err.message === 'secret vault/absent does not exist');
  });

  it('ConfigMaps: write, read, identical write changes nothing, previous to put back', async () => {
    const first = await objects.writeConfigMap(VAULT, 'settings', { 'app.yaml': 'port: 8080\nlog: info\n', FEATURE_X: 'on' }, { labels: { app: 'shop' } });
    assert.deepEqual(first, { changed: true });
    assert.deepEqual(await objects.readConfigMap(VAULT, 'settings'), { 'app.yaml': 'port: 8080\nlog: info\n', FEATURE_X: 'on' });
    const rv = (await core.readNamespacedConfigMap({ namespace: VAULT, name: 'settings' })).metadata?.resourceVersion;
    const again = await objects.writeConfigMap(VAULT, 'settings', { FEATURE_X: 'on' }, { labels: { app: 'shop' } });
    assert.equal(again.changed, false);
    assert.equal((await core.readNamespacedConfigMap({ namespace: VAULT, name: 'settings' })).metadata?.resourceVersion, rv);
    const flip = await objects.writeConfigMap(VAULT, 'settings', { FEATURE_X: 'off' });
    assert.equal(flip.previous?.FEATURE_X, 'on');
    await objects.writeConfigMap(VAULT, 'settings', flip.previous!, { replace: true });
    assert.equal((await objects.readConfigMap(VAULT, 'settings')).FEATURE_X, 'on');
  });

  it('a namespace that does not exist is NotFound naming it, and nothing is created', async () => {
    const missing = (err: Error) => err instanceof NotFoundError && err.message === 'namespace nope does not exist';
    await assert.rejects(objects.readSecret('nope', 'db'), missing);
    await assert.rejects(objects.readSecretKey('nope', 'db', 'password'), missing);
    await assert.rejects(objects.readConfigMap('nope', 'settings'), missing);
    await assert.rejects(objects.writeSecret('nope', 'db', { password: PASSWORD }), missing);
    await assert.rejects(objects.writeConfigMap('nope', 'settings', { a: 'b' }), missing);
    await assert.rejects(objects.exportNamespace('nope'), missing);
    const cm: Manifest = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', namespace: 'nope' }, data: { a: 'b' } };
    await assert.rejects(objects.apply([cm]), missing);
    await assert.rejects(core.readNamespace({ name: 'nope' }), 'apply did not create it');
  });

  it('names, keys and manifests are checked before any call, naming the field', async () => {
    // A cluster that is not there: any call would fail with PeerUnavailable, not InvalidInput.
    const offline = new KubeConfig();
    offline.loadFromOptions({
      clusters: [{ name: 'none', server: 'https://127.0.0.1:1', skipTLSVerify: true }],
      users: [{ name: 'none' }],
      contexts: [{ name: 'none', cluster: 'none', user: 'none' }],
      currentContext: 'none',
    });
    const o = new KubernetesObjects(offline);
    const invalid = (field: RegExp) => (err: Error) => err instanceof InvalidInputError && field.test(err.message);
    await assert.rejects(o.readSecret('Vault', 'db'), invalid(/^namespace: "Vault" is not a namespace name/));
    await assert.rejects(o.readSecret('vault', 'db_password'), invalid(/^name: "db_password" is not an object name/));
    await assert.rejects(o.readSecretKey('vault', 'db', 'bad/key'), invalid(/^key: "bad\/key"/));
    await assert.rejects(o.writeSecret('vault', 'db', { 'bad key': PASSWORD }), (err: Error) => invalid(/^data key: "bad key"/)(err) && !err.message.includes(PASSWORD));
    await assert.rejects(o.writeConfigMap('a'.repeat(64), 'x', {}), invalid(/^namespace: /));
    await assert.rejects(o.exportNamespace('vault', { kinds: ['Pod'] }), invalid(/^kinds: unknown kind "Pod"/));
    await assert.rejects(o.apply([{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'Upper', namespace: 'vault' } }]), invalid(/^manifests\[0\]\.metadata\.name: "Upper"/));
    await assert.rejects(o.apply([{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } }]), invalid(/^manifests\[0\]\.metadata\.namespace: required/));
    await assert.rejects(o.apply([], { namespace: 'Shop' }), invalid(/^namespace: "Shop"/));
  });
});

describe('exportNamespace and apply', () => {
  let exported: Manifest[];

  before(async () => {
    await core.createNamespace({ body: { metadata: { name: SRC } } });
    await core.createNamespacedConfigMap({
      namespace: SRC,
      body: {
        metadata: {
          name: 'app-config',
          annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"kind":"ConfigMap"}', 'example.com/owner': 'team-shop' },
        },
        data: { LOG_LEVEL: 'info', 'app.yaml': 'port: 8080\n' },
      },
    });
    await core.createNamespacedSecret({ namespace: SRC, body: { metadata: { name: 'app-secret' }, data: { token: Buffer.from('tok-7f3a9c-secret').toString('base64'), raw: KEYSTORE.toString('base64') } } });
    await core.createNamespacedService({
      namespace: SRC,
      body: { metadata: { name: 'web' }, spec: { type: 'NodePort', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
    });
    await apps.createNamespacedDeployment({ namespace: SRC, body: deployment('web') });
    // Not a default kind; exported on request below. The typed API spells `from` as `_from`, which a plain manifest must not.
    await kc.makeApiClient(NetworkingV1Api).createNamespacedNetworkPolicy({
      namespace: SRC,
      body: {
        metadata: { name: 'web-from-frontend' },
        spec: { podSelector: { matchLabels: { app: 'web' } }, ingress: [{ _from: [{ podSelector: { matchLabels: { role: 'frontend' } } }], ports: [{ port: 8080 }] }] },
      },
    });
    assert.equal((await workloads.waitForRollout({ kind: 'Deployment', namespace: SRC, name: 'web' })).available, 2);
    // What the cluster made must exist, or skipping it proves nothing.
    await eventually('default ServiceAccount', async () => (await core.readNamespacedServiceAccount({ namespace: SRC, name: 'default' })).metadata?.name);
    await eventually('kube-root-ca.crt', async () => (await core.readNamespacedConfigMap({ namespace: SRC, name: 'kube-root-ca.crt' })).metadata?.name);
    assert.equal((await apps.listNamespacedReplicaSet({ namespace: SRC })).items.length, 1);
    assert.equal((await core.listNamespacedPod({ namespace: SRC })).items.length, 2);
  });

  it('exports exactly the user objects, server fields stripped, in a stable order', async (t) => {
    const t0 = performance.now();
    exported = await objects.exportNamespace(SRC);
    t.diagnostic(`export of ${exported.length} objects: ${(performance.now() - t0).toFixed(0)} ms`);
    assert.deepEqual(ids(exported), ['Secret/app-secret', 'ConfigMap/app-config', 'Service/web', 'Deployment/web']);

    const keys = allKeys(exported);
    for (const field of ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'selfLink', 'status', 'ownerReferences', 'clusterIP', 'clusterIPs', 'nodePort']) {
      assert.ok(!keys.has(field), `${field} was not stripped`);
    }
    const [secret, configMap, service, web] = exported as [Manifest, Manifest, Manifest, Manifest];
    for (const m of exported) assert.equal(m.metadata.namespace, SRC);
    assert.deepEqual(configMap.metadata.annotations, { 'example.com/owner': 'team-shop' }, 'last-applied-configuration stripped, the user annotation kept');
    assert.equal(web.metadata.annotations, undefined, 'deployment.kubernetes.io/revision stripped');
    assert.deepEqual(configMap.data, { LOG_LEVEL: 'info', 'app.yaml': 'port: 8080\n' });
    assert.equal(Buffer.from((secret.data as Record<string, string>).raw!, 'base64').equals(KEYSTORE), true);
    assert.deepEqual((service.spec as { ports: unknown }).ports, [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }]);
    assert.equal((web.spec as { replicas: number }).replicas, 2);
    assert.deepEqual(Object.keys(web).slice(0, 3), ['apiVersion', 'kind', 'metadata']);

    // Deterministic: the same state exports to the same bytes, however it is paged.
    assert.equal(sha256(await objects.exportNamespace(SRC)), sha256(exported));
    assert.equal(sha256(await objects.exportNamespace(SRC, { pageSize: 1 })), sha256(exported));
    assert.deepEqual(ids(await objects.exportNamespace(SRC, { kinds: ['Deployment', 'ConfigMap'] })), ['ConfigMap/app-config', 'Deployment/web']);
    // The exported token is now known to redact.
    assert.equal(redact('token=tok-7f3a9c-secret'), 'token=***');
  });

  it('applies the export into another namespace as equal objects, and the Deployment rolls out there', async (t) => {
    await assert.rejects(objects.apply(exported, { namespace: DST }), (err: Error) => err instanceof NotFoundError && err.message === `namespace ${DST} does not exist`);

    const t0 = performance.now();
    const result = await objects.apply(exported, { namespace: DST, createNamespace: true });
    t.diagnostic(`apply of ${exported.length} objects (create): ${(performance.now() - t0).toFixed(0)} ms`);
    assert.deepEqual([result.created, result.changed, result.unchanged], [4, 0, 0]);
    assert.deepEqual(ids(result.objects), ['Secret/app-secret', 'ConfigMap/app-config', 'Service/web', 'Deployment/web'], 'config and Service before the workload');

    const rollout = await workloads.waitForRollout({ kind: 'Deployment', namespace: DST, name: 'web' });
    assert.equal(rollout.state, 'complete');
    assert.equal(rollout.available, 2);

    // The copy exports to the very same manifests, but for the namespace.
    assert.deepEqual(await objects.exportNamespace(DST), inNamespace(exported, DST));
    // And field by field, from the typed API:
    const [src, dst] = await Promise.all([SRC, DST].map((namespace) => apps.readNamespacedDeployment({ namespace, name: 'web' })));
    assert.deepEqual(dst!.spec?.template, src!.spec?.template);
    assert.deepEqual(await objects.readConfigMap(DST, 'app-config'), await objects.readConfigMap(SRC, 'app-config'));
    assert.deepEqual(await objects.readSecretBytes(DST, 'app-secret'), await objects.readSecretBytes(SRC, 'app-secret'));
    const ports = async (namespace: string) => (await core.readNamespacedService({ namespace, name: 'web' })).spec?.ports?.map(({ nodePort: _, ...p }) => p);
    assert.deepEqual(await ports(DST), await ports(SRC));
    const [srcSvc, dstSvc] = await Promise.all([SRC, DST].map((namespace) => core.readNamespacedService({ namespace, name: 'web' })));
    assert.notEqual(dstSvc!.spec?.clusterIP, srcSvc!.spec?.clusterIP, 'the copy got its own cluster IP');
    assert.notEqual(dstSvc!.spec?.ports?.[0]?.nodePort, srcSvc!.spec?.ports?.[0]?.nodePort, 'and its own node port');
  });

  it('applying again changes nothing: every resourceVersion unchanged', async (t) => {
    const before = await resourceVersions(exported, DST);
    const t0 = performance.now();
    const result = await objects.apply(exported, { namespace: DST });
    t.diagnostic(`apply of ${exported.length} objects (no-op): ${(performance.now() - t0).toFixed(0)} ms`);
    assert.deepEqual([result.created, result.changed, result.unchanged], [0, 0, 4]);
    assert.deepEqual(await resourceVersions(exported, DST), before);

    // A real change is reported as one, and only for that object.
    const edited = exported.map((m) => (m.kind === 'ConfigMap' ? { ...m, data: { ...(m.data as object), LOG_LEVEL: 'debug' } } : m));
    const changed = await objects.apply(edited, { namespace: DST });
    assert.deepEqual([changed.created, changed.changed, changed.unchanged], [0, 1, 3]);
    assert.equal((await objects.readConfigMap(DST, 'app-config')).LOG_LEVEL, 'debug');
    await objects.apply(exported, { namespace: DST });
  });

  it('keeps fields client-node models rename: a NetworkPolicy keeps its ingress `from`', async () => {
    const [policy] = await objects.exportNamespace(SRC, { kinds: ['NetworkPolicy'] });
    const ingress = (policy!.spec as { ingress: { from: unknown }[] }).ingress;
    assert.deepEqual(ingress[0]!.from, [{ podSelector: { matchLabels: { role: 'frontend' } } }]);
    const result = await objects.apply([policy!], { namespace: DST });
    assert.equal(result.created, 1);
    const copy = await kc.makeApiClient(NetworkingV1Api).readNamespacedNetworkPolicy({ namespace: DST, name: 'web-from-frontend' });
    assert.deepEqual(copy.spec?.ingress?.[0]?._from?.map((peer) => peer.podSelector?.matchLabels), [{ role: 'frontend' }], 'not widened to allow-all');
    assert.equal((await objects.apply([policy!], { namespace: DST })).unchanged, 1);
  });

  it('checks every manifest, and that the cluster serves its kind, before writing anything', async () => {
    const cm: Manifest = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'must-not-exist' }, data: { a: 'b' } };
    await assert.rejects(
      objects.apply([cm, { apiVersion: 'v1', kind: 'Widget', metadata: { name: 'w' } }], { namespace: DST }),
      (err: Error) => err instanceof InvalidInputError && /^manifests\[1\]\.kind: the cluster has no kind Widget in v1/.test(err.message),
    );
    await assert.rejects(
      objects.apply([cm, { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } }], { namespace: DST }),
      (err: Error) => err instanceof InvalidInputError && /^manifests\[1\]\.apiVersion: the cluster does not serve example.com\/v1/.test(err.message),
    );
    await assert.rejects(
      objects.apply([cm, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'other' } }], { namespace: DST }),
      (err: Error) => err instanceof InvalidInputError && /not namespaced/.test(err.message),
    );
    await assert.rejects(objects.apply([cm, cm], { namespace: DST }), (err: Error) => err instanceof InvalidInputError && /more than once/.test(err.message));
    await assert.rejects(objects.readConfigMap(DST, 'must-not-exist'), NotFoundError);
    // A field the server does not know fails loudly instead of vanishing.
    await assert.rejects(objects.apply([{ ...cm, dataa: { a: 'b' } }], { namespace: DST }), (err: Error) => err instanceof InvalidInputError && /^manifests\[0\]: configmap shop-copy\/must-not-exist does not match the cluster's schema: .*\.dataa: field not declared in schema/.test(err.message));
  });

  it('a namespace of 300 objects exports in pages and applies, then re-applies as a no-op', async (t) => {
    const BULK = 'bulk';
    await core.createNamespace({ body: { metadata: { name: BULK } } });
    const creates: Promise<unknown>[] = [];
    for (let i = 0; i < 200; i++) creates.push(core.createNamespacedConfigMap({ namespace: BULK, body: { metadata: { name: `cm-${String(i).padStart(3, '0')}` }, data: { i: String(i), blob: 'x'.repeat(512) } } }));
    for (let i = 0; i < 100; i++) creates.push(core.createNamespacedSecret({ namespace: BULK, body: { metadata: { name: `s-${String(i).padStart(3, '0')}` }, stringData: { password: `bulk-password-${i}` } } }));
    await Promise.all(creates);

    let t0 = performance.now();
    const bulk = await objects.exportNamespace(BULK, { pageSize: 50 });
    const exportMs = performance.now() - t0;
    assert.equal(bulk.length, 300);
    assert.equal(bulk[0]!.kind, 'Secret');
    assert.equal(bulk[299]!.metadata.name, 'cm-199');

    t0 = performance.now();
    const created = await objects.apply(bulk, { namespace: 'bulk-copy', createNamespace: true });
    const createMs = performance.now() - t0;
    assert.equal(created.created, 300);

    t0 = performance.now();
    const again = await objects.apply(bulk, { namespace: 'bulk-copy' });
    const noopMs = performance.now() - t0;
    assert.equal(again.unchanged, 300);
    t.diagnostic(`300 objects: export ${exportMs.toFixed(0)} ms (pages of 50), apply ${createMs.toFixed(0)} ms (create), re-apply ${noopMs.toFixed(0)} ms (no-op)`);
  });
});
