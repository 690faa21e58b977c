/**
 * Kubernetes objects of the system's namespace (ConfigMaps, Secrets,
 * Deployments, Services…) as JSON lines, one canonical manifest a line. A
 * restore applies them server-side into the target system's namespace (names
 * mapped); what they replace is exported first and kept, encrypted like the
 * set, until the restore commits, so a failed recovery re-applies it and
 * deletes what the restore created. Workloads that exist keep their live
 * replica count: scaling is the recovery's business (it holds them at 0).
 * Verification applies the objects into a scratch namespace, with nothing
 * able to run, reads them back, and deletes the namespace.
 */
import type { Readable } from 'node:stream';
import type { Manifest as KubeManifest } from '../../src/adapters/kubernetes/objects.ts';
import { resolveSetting } from '../../src/config.ts';
import { IntegrityError, InvalidInputError, NotFoundError } from '../../src/errors.ts';
import { resolveSecret, type SecretRef } from '../../src/secrets.ts';
import { restoreScratchPrefix, scratchNamespaceName } from '../../src/domain/names.ts';
import { consumeDownload, downloadArtifact, uploadArtifact, type StoredArtifact } from '../artifacts.ts';
import type { ComponentOf, ConfigOf, Driver, DriverContext } from './driver.ts';

type KubernetesComponent = ComponentOf<'kubernetes'>;

function* jsonLines(manifests: KubeManifest[]): Generator<Buffer> {
  for (const m of manifests) yield Buffer.from(`${JSON.stringify(m)}\n`);
}

async function parseLines(stream: Readable, what: string): Promise<KubeManifest[]> {
  let text = '';
  for await (const chunk of stream) text += (chunk as Buffer).toString('utf8');
  const manifests: KubeManifest[] = [];
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '') continue;
    try {
      manifests.push(JSON.parse(line) as KubeManifest);
    } catch {
      throw new IntegrityError(`${what}: line ${i + 1} is not a JSON object`);
    }
  }
  return manifests;
}

function countByKind(manifests: KubeManifest[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const m of manifests) counts[m.kind] = (counts[m.kind] ?? 0) + 1;
  return counts;
}

/** The set's manifests, checked against the manifest's counts per kind. */
async function readObjects(ctx: DriverContext, component: KubernetesComponent): Promise<KubeManifest[]> {
  const manifests = await consumeDownload(downloadArtifact(component, ctx.artifacts), (s) => parseLines(s, component.key));
  const actual = countByKind(manifests);
  const kinds = new Set([...Object.keys(actual), ...Object.keys(component.objects)]);
  for (const kind of kinds) {
    if ((actual[kind] ?? 0) !== (component.objects[kind] ?? 0)) {
      throw new IntegrityError(`${component.name}: ${actual[kind] ?? 0} ${kind} object(s) read back, the manifest says ${component.objects[kind] ?? 0}`);
    }
  }
  return manifests;
}

const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet']);
const identity = (m: KubeManifest) => `${m.kind}/${m.metadata.name}`;

/** The set's ConfigMaps and Secrets with the target's configured keys in place of theirs (`overrides`). */
function withOverrides(ctx: DriverContext, config: ConfigOf<'kubernetes'>, manifests: KubeManifest[]): KubeManifest[] {
  if (!config.overrides.length) return manifests;
  const out = [...manifests];
  config.overrides.forEach((o, i) => {
    const where = `systems.${ctx.system}.backup.components.${config.name}.overrides.${i}`;
    const at = out.findIndex((m) => identity(m) === `${o.kind}/${o.name}`);
    if (at < 0) throw new InvalidInputError(`${where}: the set holds no ${o.kind} ${o.name} to override`);
    const m = out[at]!;
    const data = { ...(m.data as Record<string, string> | undefined) };
    const binaryData = { ...(m.binaryData as Record<string, string> | undefined) };
    for (const [key, value] of Object.entries(o.data)) {
      // A Secret's value is a reference (the config refuses inline ones): resolved as a secret, kept out of logs.
      const text = o.kind === 'Secret' ? resolveSecret(value as SecretRef, `${where}.data.${key}`) : resolveSetting(value, `${where}.data.${key}`);
      data[key] = o.kind === 'Secret' ? Buffer.from(text).toString('base64') : text;
      delete binaryData[key];
    }
    out[at] = { ...m, data, ...(m.binaryData ? { binaryData } : {}) };
  });
  return out;
}

/** The set's workloads that exist already get their live replica count, so applying them starts nothing. */
async function withLiveReplicas(ctx: DriverContext, namespace: string, manifests: KubeManifest[]): Promise<KubeManifest[]> {
  const kinds = [...new Set(manifests.map((m) => m.kind).filter((k) => WORKLOAD_KINDS.has(k)))];
  if (!kinds.length) return manifests;
  // Only a namespace that is not there yet has no replicas to keep; an API that fails must not let the set's replicas through.
  const live = await (await ctx.systems.kubernetes(ctx.system)).objects.exportNamespace(namespace, { kinds, signal: ctx.signal }).catch((err: unknown) => {
    if (err instanceof NotFoundError) return [];
    throw err;
  });
  const liveReplicas = new Map(live.map((m) => [identity(m), (m.spec as { replicas?: number } | undefined)?.replicas]));
  return manifests.map((m) => {
    const replicas = liveReplicas.get(identity(m));
    return replicas === undefined ? m : { ...m, spec: { ...(m.spec as object), replicas } };
  });
}

/**
 * A copy that can sit in a scratch namespace without running or exposing
 * anything: workloads at 0 replicas, CronJobs suspended, DaemonSets on no
 * node, Services without a load balancer.
 */
function inert(m: KubeManifest): KubeManifest {
  const spec = { ...(m.spec as Record<string, unknown> | undefined) };
  if (WORKLOAD_KINDS.has(m.kind)) spec.replicas = 0;
  else if (m.kind === 'CronJob') spec.suspend = true;
  else if (m.kind === 'DaemonSet') {
    const template = structuredClone((spec.template ?? {}) as { spec?: Record<string, unknown> });
    template.spec = { ...template.spec, nodeSelector: { 'opsflow.dev/verify': 'no-node' } };
    spec.template = template;
  } else if (m.kind === 'Service' && spec.type === 'LoadBalancer') spec.type = 'ClusterIP';
  else return m; // an HorizontalPodAutoscaler never scales a workload up from 0
  return { ...m, spec };
}

/** What verification compares exactly: configuration's data; every other object must be there by name. */
function payload(m: KubeManifest): string | undefined {
  return m.kind === 'ConfigMap' || m.kind === 'Secret' ? JSON.stringify([m.data ?? {}, m.binaryData ?? {}, m.stringData ?? {}]) : undefined;
}

function targetNamespace(ctx: DriverContext): string {
  return ctx.systems.kubernetesConfig(ctx.system).namespace;
}

function previousKey(ctx: DriverContext, config: ConfigOf<'kubernetes'>, tag: string): string {
  return `${restoreScratchPrefix(ctx.systems.s3Prefix(ctx.system), ctx.system, tag)}${config.name}.previous.jsonl.zst`;
}

export const kubernetesDriver: Driver<'kubernetes'> = {
  fileName: (config) => `${config.name}.jsonl.zst`,

  async check(ctx, config) {
    const namespace = targetNamespace(ctx);
    const objects = await (await ctx.systems.kubernetes(ctx.system)).objects.exportNamespace(namespace, { kinds: config.kinds, signal: ctx.signal });
    return `namespace ${namespace}: ${objects.length} objects`;
  },

  async backup(ctx, config, key) {
    const namespace = targetNamespace(ctx);
    const startedAt = new Date().toISOString();
    const manifests = await (await ctx.systems.kubernetes(ctx.system)).objects.exportNamespace(namespace, { kinds: config.kinds, signal: ctx.signal });
    const stored = await uploadArtifact(key, jsonLines(manifests), Promise.resolve(), ctx.artifacts);
    return { ...stored, kind: 'kubernetes', name: config.name, namespace, format: 'json-lines', objects: countByKind(manifests), startedAt, completedAt: new Date().toISOString() };
  },

  async stage(ctx, component, config) {
    const manifests = withOverrides(ctx, config, await readObjects(ctx, component)); // a bad override fails here, before anything live changes
    const overridden = config.overrides.length ? `, ${config.overrides.length} overridden` : '';
    return `${manifests.length} objects read and checked${overridden}, for namespace ${targetNamespace(ctx)}`;
  },

  async swapIn(ctx, component, config, tag) {
    const objects = (await ctx.systems.kubernetes(ctx.system)).objects;
    const namespace = targetNamespace(ctx);
    const keep = previousKey(ctx, config, tag);
    // Exported once (its record is written last): a retry must not take the restored state for the previous one.
    if (!(await ctx.artifacts.store.head(`${keep}.json`))) {
      const kinds = [...new Set(Object.keys(component.objects))];
      // No namespace yet (new infrastructure): nothing to keep. Any other failure stops the swap.
      const current = await objects.exportNamespace(namespace, { kinds, signal: ctx.signal }).catch((err: unknown) => {
        if (err instanceof NotFoundError) return [];
        throw err;
      });
      const progress = { step: 'keep', bytesIn: 0, bytesOut: 0 };
      const stored = await uploadArtifact(keep, jsonLines(current), Promise.resolve(), { ...ctx.artifacts, progress });
      await ctx.artifacts.store.putJson(`${keep}.json`, stored);
    }
    const manifests = await withLiveReplicas(ctx, namespace, withOverrides(ctx, config, await readObjects(ctx, component)));
    await objects.apply(manifests, { namespace, createNamespace: true, signal: ctx.signal });
  },

  async swapBack(ctx, component, config, tag) {
    const keep = previousKey(ctx, config, tag);
    if (!(await ctx.artifacts.store.head(`${keep}.json`))) return; // never swapped in
    const stored = (await ctx.artifacts.store.getJson(`${keep}.json`)) as StoredArtifact;
    const previous = await consumeDownload(downloadArtifact(stored, ctx.artifacts), (s) => parseLines(s, keep));
    const objects = (await ctx.systems.kubernetes(ctx.system)).objects;
    const namespace = targetNamespace(ctx);
    if (previous.length) await objects.apply(await withLiveReplicas(ctx, namespace, previous), { namespace, signal: ctx.signal });
    // What the restore created (in the set, not there before) goes again.
    const existed = new Set(previous.map(identity));
    const created = (await readObjects(ctx, component)).filter((m) => !existed.has(identity(m)));
    await objects.remove(created, { namespace, signal: ctx.signal });
  },

  async discard(ctx, _component, config, tag) {
    const keep = previousKey(ctx, config, tag);
    await ctx.artifacts.store.deleteObjects([keep, `${keep}.json`]);
  },

  async verify(ctx, component) {
    const manifests = await readObjects(ctx, component);
    const objects = (await ctx.systems.kubernetes(ctx.system)).objects;
    const scratch = scratchNamespaceName(targetNamespace(ctx), component.key);
    try {
      await objects.apply(manifests.map(inert), { namespace: scratch, createNamespace: true, signal: ctx.signal });
      const kinds = Object.keys(component.objects);
      const applied = new Map((await objects.exportNamespace(scratch, { kinds, signal: ctx.signal })).map((m) => [identity(m), m]));
      for (const m of manifests) {
        const back = applied.get(identity(m));
        if (!back) throw new IntegrityError(`${component.name}: ${identity(m)} is missing after applying the set into ${scratch}`);
        if (payload(back) !== payload(m)) throw new IntegrityError(`${component.name}: ${identity(m)} reads back with other data than the set holds`);
      }
      return `${manifests.length} objects applied into scratch namespace ${scratch} and read back, configuration data equal`;
    } finally {
      await objects.deleteNamespace(scratch, { signal: ctx.signal });
    }
  },

  /** The scratch system's namespace deleted, with all in it (the restore's kept copy goes with `discard`). */
  async tearDown(ctx, config, tag) {
    const namespace = targetNamespace(ctx);
    await (await ctx.systems.kubernetes(ctx.system)).objects.deleteNamespace(namespace, { signal: ctx.signal });
    const keep = previousKey(ctx, config, tag);
    await ctx.artifacts.store.deleteObjects([keep, `${keep}.json`]);
    return `namespace ${namespace} deleted`;
  },
};
