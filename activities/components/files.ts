/**
 * Files and directories as a tar stream, from the worker's filesystem or
 * from a pod through the exec API. The tree's digest (paths, types, modes,
 * contents) is taken from the archive as it goes by, and a restore must give
 * the same digest before the staged tree replaces the live one.
 */
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  digestingTar,
  discardInPod,
  discardLocal,
  removeInPod,
  removeLocal,
  stageInPod,
  stageLocalFromProcess,
  swapBackLocal,
  swapBackPod,
  swapInLocal,
  swapInPod,
  tarFromPod,
  tarLocal,
  type PodTarget,
  type TreeDigest,
} from '../../src/adapters/files.ts';
import type { PodExec } from '../../src/adapters/kubernetes/exec.ts';
import { withScratchDir } from '../../src/scratch.ts';
import { IntegrityError } from '../../src/errors.ts';
import { consumeDownload, downloadArtifact, uploadArtifact } from '../artifacts.ts';
import type { ComponentOf, ConfigOf, Driver, DriverContext } from './driver.ts';
import { podTarget, tearDownInPod } from './pods.ts';

type FilesComponent = ComponentOf<'files'>;

function describeTree(t: TreeDigest): string {
  return `${t.files} files, ${t.directories} directories, ${t.symlinks} symlinks, ${t.bytes} bytes`;
}

function checkTree(component: FilesComponent, actual: TreeDigest): void {
  if (actual.sha256 !== component.tree.sha256) {
    throw new IntegrityError(`${component.name}: the restored tree (${describeTree(actual)}) differs from the backup's (${describeTree(component.tree)})`);
  }
}

/** Where the component lives: a local path, or a path in a pod with the exec API to reach it. */
async function sourceOf(ctx: DriverContext, config: ConfigOf<'files'>): Promise<{ label: string; pod?: { at: PodTarget; exec: PodExec } }> {
  if (!config.pod) return { label: config.path };
  const at = await podTarget(ctx, config.pod, config.path);
  const { exec } = await ctx.systems.kubernetes(ctx.system);
  return { label: `pod:${at.namespace}/${config.pod.workload}/${at.container}:${config.path}`, pod: { at, exec } };
}

export const filesDriver: Driver<'files'> = {
  fileName: (config) => `${config.name}.tar.zst`,

  async check(ctx, config) {
    const { label } = await sourceOf(ctx, config);
    return `directory ${label}`;
  },

  async backup(ctx, config, key) {
    const startedAt = new Date().toISOString();
    const { label, pod } = await sourceOf(ctx, config);
    const tar = pod ? tarFromPod(pod.exec, pod.at, { signal: ctx.signal }) : tarLocal(config.path, { signal: ctx.signal });
    const digest = digestingTar();
    const stored = await uploadArtifact(key, digest.tap(tar.stream as AsyncIterable<Buffer>), tar.done, ctx.artifacts);
    return { ...stored, kind: 'files', name: config.name, source: label, format: 'tar', tree: digest.result(), startedAt, completedAt: new Date().toISOString() };
  },

  async stage(ctx, component, config, tag) {
    const { pod } = await sourceOf(ctx, config);
    // Here, zstd writes straight into tar; into a pod, the archive goes through the exec API.
    const download = downloadArtifact(component, ctx.artifacts, { toProcess: !pod });
    const staged = await consumeDownload(download, (stream: Readable) =>
      pod
        ? stageInPod(pod.exec, pod.at, tag, stream, { expectedBytes: component.rawBytes, signal: ctx.signal })
        : stageLocalFromProcess(config.path, tag, stream, { expected: component.tree, expectedBytes: component.rawBytes, signal: ctx.signal }),
    );
    checkTree(component, staged.digest);
    return `${describeTree(staged.digest)} staged beside ${config.path}, as in the manifest`;
  },

  async swapIn(ctx, _component, config, tag) {
    const { pod } = await sourceOf(ctx, config);
    if (pod) await swapInPod(pod.exec, pod.at, tag);
    else await swapInLocal(config.path, tag);
  },

  async swapBack(ctx, _component, config, tag) {
    const { pod } = await sourceOf(ctx, config);
    if (pod) await swapBackPod(pod.exec, pod.at, tag);
    else await swapBackLocal(config.path, tag);
  },

  async discard(ctx, _component, config, tag) {
    const { pod } = await sourceOf(ctx, config);
    if (pod) await discardInPod(pod.exec, pod.at, tag);
    else await discardLocal(config.path, tag);
  },

  async tearDown(ctx, config, tag) {
    if (!config.pod) {
      await removeLocal(config.path, tag);
      return `${config.path} removed`;
    }
    return tearDownInPod(ctx, config.pod, config.path, (exec, at) => removeInPod(exec, at, tag, { signal: ctx.signal }));
  },

  async verify(ctx, component) {
    return withScratchDir('verify', async (dir) => {
      const target = join(dir, 'tree');
      const staged = await consumeDownload(downloadArtifact(component, ctx.artifacts, { toProcess: true }), (stream: Readable) =>
        stageLocalFromProcess(target, 'verify', stream, { expected: component.tree, expectedBytes: component.rawBytes, signal: ctx.signal }),
      );
      checkTree(component, staged.digest);
      return `${describeTree(staged.digest)} extracted into a temporary directory, as in the manifest`;
    });
  },
};
