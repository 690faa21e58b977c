/**
 * Kubernetes objects of the system's namespace (ConfigMaps, Secrets,
 * Deployments, Services…) as JSON lines, one canonical manifest a line. A
 * restore applies them server-side into the target system's namespace (names
 * mapped); what they replace is exported first and kept, encrypted like the
 * set, until the restore commits, so a failed recovery re-applies it.
 */
import type { Readable } from 'node:stream';
import type { Manifest as KubeManifest } from '../../src/adapters/kubernetes/objects.ts';
import { IntegrityError } from '../../src/errors.ts';
import { restoreScratchPrefix } from '../../src/domain/names.ts';
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
    const objects = await ctx.systems.kubernetes(ctx.system).objects.exportNamespace(namespace, { kinds: config.kinds, signal: ctx.signal });
    return `namespace ${namespace}: ${objects.length} objects`;
  },

  async backup(ctx, config, key) {
    const namespace = targetNamespace(ctx);
    const startedAt = new Date().toISOString();
    const manifests = await ctx.systems.kubernetes(ctx.system).objects.exportNamespace(namespace, { kinds: config.kinds, signal: ctx.signal });
    const stored = await uploadArtifact(key, jsonLines(manifests), Promise.resolve(), ctx.artifacts);
    return { ...stored, kind: 'kubernetes', name: config.name, namespace, format: 'json-lines', objects: countByKind(manifests), startedAt, completedAt: new Date().toISOString() };
  },

  async stage(ctx, component) {
    const manifests = await readObjects(ctx, component);
    return `${manifests.length} objects read and checked, for namespace ${targetNamespace(ctx)}`;
  },

  async swapIn(ctx, component, config, tag) {
    const objects = ctx.systems.kubernetes(ctx.system).objects;
    const namespace = targetNamespace(ctx);
    const keep = previousKey(ctx, config, tag);
    // Exported once (its record is written last): a retry must not take the restored state for the previous one.
    if (!(await ctx.artifacts.store.head(`${keep}.json`))) {
      const kinds = [...new Set(Object.keys(component.objects))];
      const current = await objects.exportNamespace(namespace, { kinds, signal: ctx.signal }).catch(() => []);
      const progress = { step: 'keep', bytesIn: 0, bytesOut: 0 };
      const stored = await uploadArtifact(keep, jsonLines(current), Promise.resolve(), { ...ctx.artifacts, progress });
      await ctx.artifacts.store.putJson(`${keep}.json`, stored);
    }
    await objects.apply(await readObjects(ctx, component), { namespace, createNamespace: true, signal: ctx.signal });
  },

  async swapBack(ctx, _component, config, tag) {
    const keep = previousKey(ctx, config, tag);
    if (!(await ctx.artifacts.store.head(`${keep}.json`))) return; // never swapped in
    const stored = (await ctx.artifacts.store.getJson(`${keep}.json`)) as StoredArtifact;
    const previous = await consumeDownload(downloadArtifact(stored, ctx.artifacts), (s) => parseLines(s, keep));
    if (previous.length) await ctx.systems.kubernetes(ctx.system).objects.apply(previous, { namespace: targetNamespace(ctx), signal: ctx.signal });
  },

  async discard(ctx, _component, config, tag) {
    const keep = previousKey(ctx, config, tag);
    await ctx.artifacts.store.deleteObjects([keep, `${keep}.json`]);
  },

  async verify(ctx, component) {
    const manifests = await readObjects(ctx, component);
    return `${manifests.length} objects read back, counts per kind as in the manifest`;
  },
};
