/**
 * Directory trees in a pod, through PodExec against the real apiserver with
 * kwok running the commands on this machine (bed option localExec, so "the
 * container's" paths are local paths we can inspect): a backup's digest is
 * the tree's; a restore is staged, swapped in and swapped back, each step
 * repeatable; a short stream cannot hang on the stdin EOF kwok never sends;
 * missing containers and directories are named.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startKubernetes, type KubernetesBed } from '../../deploy/bed/kubernetes/cluster.ts';
import type { PodExec } from '../../src/adapters/kubernetes/exec.ts';
import {
  digestingTar,
  digestOfPodTree,
  discardInPod,
  restorePaths,
  stageInPod,
  swapBackPod,
  swapInPod,
  tarFromPod,
  tarLocal,
  treeDigest,
  type PodTarget,
  type TreeDigest,
} from '../../src/adapters/files.ts';
import { IntegrityError, NotFoundError } from '../../src/errors.ts';
import { podToExecInto } from '../support/kubernetes.ts';

const namespace = 'default';
const pod = 'files';
let dir: string;
/** Where kwok runs the pod's commands: "inside the container" is here. */
let podRoot: string;
let bed: KubernetesBed;
let podExec: PodExec;

const at = (path: string, container = 'app'): PodTarget => ({ namespace, pod, container, dir: path });

/** A tree with the cases that matter for tar: modes, long and non-ASCII names, symlinks, empty things. */
function buildTree(path: string, bigBytes = 0): void {
  mkdirSync(join(path, 'nested/deeper/still'), { recursive: true });
  mkdirSync(join(path, 'empty-dir'));
  writeFileSync(join(path, 'empty'), '');
  writeFileSync(join(path, 'nested/deeper/still/data.bin'), randomBytes(100_000));
  writeFileSync(join(path, 'secret'), 'only me\n');
  chmodSync(join(path, 'secret'), 0o600);
  writeFileSync(join(path, 'run.sh'), '#!/bin/sh\n');
  chmodSync(join(path, 'run.sh'), 0o755);
  writeFileSync(join(path, 'group'), 'team\n');
  chmodSync(join(path, 'group'), 0o640);
  writeFileSync(join(path, `long-${'x'.repeat(140)}`), 'long name\n');
  writeFileSync(join(path, 'ünïcødé-名前'), 'non-ASCII\n');
  symlinkSync('secret', join(path, 'link'));
  if (bigBytes) writeFileSync(join(path, 'big.bin'), randomBytes(bigBytes));
}

async function* chunksOf(data: Buffer, size = 256 * 1024): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < data.length; offset += size) yield data.subarray(offset, offset + size);
}

/** Backs up a directory in the pod: the archive's bytes and their digest, taken as they streamed by. */
async function backup(path: string): Promise<{ data: Buffer; digest: TreeDigest; ms: number }> {
  const t0 = Date.now();
  const tar = tarFromPod(podExec, at(path));
  const digest = digestingTar();
  const chunks: Buffer[] = [];
  for await (const chunk of digest.tap(tar.stream)) chunks.push(chunk);
  await tar.done;
  return { data: Buffer.concat(chunks), digest: digest.result(), ms: Date.now() - t0 };
}

const besides = (path: string) => readdirSync(join(path, '..')).filter((n) => n.startsWith(`${path.split('/').pop()}.`));

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'opsflow-k8s-files-'));
  bed = await startKubernetes({ dir, localExec: true });
  podRoot = join(dir, 'exec');
  podExec = await podToExecInto(bed.kubeconfigPath, namespace, pod);
});

after(async () => {
  await bed?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('files in a pod', () => {
  it('a backup through tarFromPod has the digest of the tree, and is the archive tar makes here', async () => {
    const data = join(podRoot, 'data');
    buildTree(data, 20 * 1024 * 1024);
    const onDisk = await treeDigest(data);
    const fromPod = await backup(data);
    assert.deepEqual(fromPod.digest, onDisk);
    assert.deepEqual(await digestOfPodTree(podExec, at(data)), onDisk);

    const here = tarLocal(data);
    const chunks: Buffer[] = [];
    for await (const chunk of here.stream) chunks.push(chunk);
    await here.done;
    assert.ok(Buffer.concat(chunks).equals(fromPod.data), 'the same bytes as a local backup');
    console.log(`tarFromPod: ${(fromPod.data.length / 1e6).toFixed(1)} MB in ${fromPod.ms} ms = ${(fromPod.data.length / 1e6 / (fromPod.ms / 1000)).toFixed(0)} MB/s`);
  });

  it('stage and swap into another directory in the pod; swap back restores the previous tree; steps repeat as no-ops', async () => {
    const archive = await backup(join(podRoot, 'data'));
    // Quotes, spaces and $ in the path: arguments reach sh as "$1", never as script text.
    const live = join(podRoot, `it's a "restore" $HOME`);
    mkdirSync(join(live, 'old'), { recursive: true });
    writeFileSync(join(live, 'old/version'), 'previous\n');
    const before = await treeDigest(live);

    const t0 = Date.now();
    const { staged, digest } = await stageInPod(podExec, at(live), 'r1', chunksOf(archive.data), { expectedBytes: archive.data.length });
    const stageMs = Date.now() - t0;
    console.log(`stageInPod: ${(archive.data.length / 1e6).toFixed(1)} MB extracted and read back in ${stageMs} ms`);
    assert.equal(staged, restorePaths(live, 'r1').staged);
    assert.deepEqual(digest, archive.digest);
    assert.deepEqual(await treeDigest(staged), archive.digest);
    assert.deepEqual(await treeDigest(live), before, 'staging leaves the live tree alone');

    await swapInPod(podExec, at(live), 'r1');
    await swapInPod(podExec, at(live), 'r1');
    assert.deepEqual(await treeDigest(live), archive.digest);
    assert.deepEqual(await digestOfPodTree(podExec, at(live)), archive.digest);
    assert.deepEqual(await treeDigest(restorePaths(live, 'r1').previous), before);

    await swapBackPod(podExec, at(live), 'r1');
    await swapBackPod(podExec, at(live), 'r1');
    assert.deepEqual(await treeDigest(live), before);
    await discardInPod(podExec, at(live), 'r1');
    assert.deepEqual(besides(live), []);

    // And kept this time: discard drops the previous tree only.
    await stageInPod(podExec, at(live), 'r2', chunksOf(archive.data), { expectedBytes: archive.data.length });
    await swapInPod(podExec, at(live), 'r2');
    await discardInPod(podExec, at(live), 'r2');
    await discardInPod(podExec, at(live), 'r2');
    assert.deepEqual(await treeDigest(live), archive.digest);
    assert.deepEqual(besides(live), []);
  });

  it('a stream shorter than expectedBytes fails at once instead of waiting for an EOF kwok never sends', async () => {
    const archive = await backup(join(podRoot, 'data'));
    const live = join(podRoot, 'short');
    mkdirSync(live);
    writeFileSync(join(live, 'keep'), 'untouched\n');
    const before = await treeDigest(live);
    const t0 = Date.now();
    await assert.rejects(stageInPod(podExec, at(live), 'r3', chunksOf(archive.data.subarray(0, 1_000_000)), { expectedBytes: archive.data.length }), (err: Error) => {
      assert.ok(err instanceof IntegrityError, String(err));
      assert.match(err.message, new RegExp(`ended after 1000000 of the expected ${archive.data.length} bytes`));
      return true;
    });
    assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
    assert.deepEqual(await treeDigest(live), before);
    await assert.rejects(swapInPod(podExec, at(live), 'r3'), NotFoundError, 'a failed stage cannot be swapped in');
    await discardInPod(podExec, at(live), 'r3');
  });

  it('a missing container or directory is NotFound, naming it', async () => {
    await assert.rejects(digestOfPodTree(podExec, at(join(podRoot, 'data'), 'nope')), (err: Error) => {
      assert.ok(err instanceof NotFoundError, String(err));
      assert.equal(err.message, `pod ${namespace}/${pod} has no container "nope" (has: app)`);
      return true;
    });
    const missing = join(podRoot, 'no-such-dir');
    const tar = tarFromPod(podExec, at(missing));
    await assert.rejects(tar.done, (err: Error) => {
      assert.ok(err instanceof NotFoundError, String(err));
      assert.equal(err.message, `no directory ${missing} in container "app" of pod ${namespace}/${pod}`);
      return true;
    });
    await assert.rejects(swapInPod(podExec, at(missing), 'r4'), (err: Error) =>
      err instanceof NotFoundError && err.message === `nothing is staged for ${missing} (no ${missing}.opsflow-staged-r4) in container "app" of pod ${namespace}/${pod}`);
    assert.equal(existsSync(missing), false);
  });
});
