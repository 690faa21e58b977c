/**
 * PodExec against the real apiserver, with kwok running the commands on this
 * machine (bed option localExec): output streamed byte for byte, a slow
 * consumer that must not make the output pile up in memory, stdin, exit
 * codes, names that do not exist, cancellation, and picking a Ready pod.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { FAKE_NODE_SELECTOR, FAKE_NODE_TOLERATION, startKubernetes, type KubernetesBed } from '../../deploy/bed/kubernetes/cluster.ts';
import { PodExec } from '../../src/adapters/kubernetes/exec.ts';
import { isPodReady } from '../../src/adapters/kubernetes/workloads.ts';
import { CommandFailedError, NotFoundError, PeerRejectedError, PeerUnavailableError } from '../../src/errors.ts';

const namespace = 'default';
let dir: string;
let bed: KubernetesBed;
let core: CoreV1Api;
let podExec: PodExec;
/** The pod the exec tests run in: the one pickPod must choose. */
const pod = 'tools-b';

function podManifest(name: string, onFakeNodes: boolean): V1Pod {
  return {
    metadata: { name, labels: { app: 'tools' } },
    spec: {
      ...(onFakeNodes ? { nodeSelector: FAKE_NODE_SELECTOR, tolerations: [FAKE_NODE_TOLERATION] } : {}),
      containers: [{ name: 'shell', image: 'example/tools:v1' }, { name: 'sidecar', image: 'example/proxy:v1' }],
    },
  };
}

/** Counts and hashes what it is given; optionally slow, with a small buffer, and records the most it ever held. */
function sink(options: { delayMs?: number; highWaterMark?: number } = {}) {
  const hash = createHash('sha256');
  const state = { bytes: 0, maxBuffered: 0, text: '', digest: () => hash.digest('hex') };
  const stream = new Writable({
    highWaterMark: options.highWaterMark ?? 16 * 1024,
    write(chunk: Buffer, _enc, cb) {
      state.bytes += chunk.length;
      state.maxBuffered = Math.max(state.maxBuffered, stream.writableLength);
      if (state.text.length < 4096) state.text += chunk.toString('utf8');
      hash.update(chunk);
      if (options.delayMs) setTimeout(cb, options.delayMs);
      else cb();
    },
  });
  return { stream, state };
}

/** Ends a sink and waits until it has consumed everything exec wrote to it (exec leaves ending to the caller). */
async function consumed(s: ReturnType<typeof sink>) {
  s.stream.end();
  await finished(s.stream);
  return s.state;
}

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'opsflow-k8s-exec-'));
  bed = await startKubernetes({ dir, localExec: true });
  const kc = new KubeConfig();
  kc.loadFromFile(bed.kubeconfigPath);
  core = kc.makeApiClient(CoreV1Api);
  podExec = new PodExec(kc);
  // tools-a never leaves Pending (it cannot go to the fake nodes); tools-b becomes Ready.
  await core.createNamespacedPod({ namespace, body: podManifest('tools-a', false) });
  await core.createNamespacedPod({ namespace, body: podManifest(pod, true) });
  for (let i = 0; !isPodReady(await core.readNamespacedPod({ namespace, name: pod })); i++) {
    if (i > 100) throw new Error(`${pod} not Ready after 10 s`);
    await sleep(100);
  }
});

after(async () => {
  await bed?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('PodExec.pickPod', () => {
  it('returns a Ready pod, not the Pending one that sorts first', async () => {
    assert.equal(await podExec.pickPod(namespace, 'app=tools'), pod);
  });

  it('NotFound when nothing matches or nothing matching is Ready', async () => {
    await assert.rejects(podExec.pickPod(namespace, 'app=nope'), (err: Error) =>
      err instanceof NotFoundError && err.message === 'no pod in namespace default matches "app=nope"');
    await core.deleteNamespacedPod({ namespace, name: 'tools-a' }); // gone at once: it never had a node
    await core.createNamespacedPod({ namespace, body: { ...podManifest('lonely', false), metadata: { name: 'lonely', labels: { app: 'lonely' } } } });
    await assert.rejects(podExec.pickPod(namespace, 'app=lonely'), (err: Error) => {
      assert.ok(err instanceof NotFoundError);
      assert.match(err.message, /none of the 1 pods in namespace default matching "app=lonely" is Ready \(lonely: Pending\)/);
      return true;
    });
  });
});

describe('PodExec.exec', () => {
  it('streams a multi-MB stdout byte for byte', async () => {
    // `seq 1 1000000`: 6,888,896 bytes whose content, not just length, is checked.
    const expected = Array.from({ length: 1_000_000 }, (_, i) => `${i + 1}\n`).join('');
    const out = sink();
    const t0 = Date.now();
    const result = await podExec.exec(namespace, pod, 'shell', ['seq', '1', '1000000'], { stdout: out.stream });
    await consumed(out);
    const ms = Date.now() - t0;
    assert.deepEqual(result, { exitCode: 0 });
    assert.equal(out.state.bytes, expected.length);
    assert.equal(out.state.digest(), sha256(expected));

    const zeros = sink();
    const t1 = Date.now();
    await podExec.exec(namespace, pod, 'shell', ['head', '-c', '50000000', '/dev/zero'], { stdout: zeros.stream });
    await consumed(zeros);
    const zeroMs = Date.now() - t1;
    assert.equal(zeros.state.bytes, 50_000_000);
    assert.equal(zeros.state.digest(), sha256(Buffer.alloc(50_000_000)));
    console.log(`exec stdout: seq 6.9 MB in ${ms} ms; 50 MB in ${zeroMs} ms = ${(50 / (zeroMs / 1000)).toFixed(0)} MB/s`);
  });

  it('a slow consumer pauses the stream instead of letting output pile up', async () => {
    // 8 MB into a consumer taking ~2 ms per chunk: without backpressure its buffer would hold megabytes.
    const slow = sink({ delayMs: 2, highWaterMark: 64 * 1024 });
    const t0 = Date.now();
    await podExec.exec(namespace, pod, 'shell', ['head', '-c', '8000000', '/dev/zero'], { stdout: slow.stream });
    await consumed(slow);
    console.log(`slow consumer: 8 MB in ${Date.now() - t0} ms, at most ${slow.state.maxBuffered} bytes waiting in it`);
    assert.equal(slow.state.bytes, 8_000_000);
    assert.ok(slow.state.maxBuffered < 1024 * 1024, `consumer held up to ${slow.state.maxBuffered} bytes`);
  });

  it('sends stdin to the command (2 MB round trip)', async () => {
    // `head -c N` stops by itself: kwok never delivers stdin's EOF (see ExecOptions.stdin).
    const input = randomBytes(2_000_000);
    const out = sink();
    const result = await podExec.exec(namespace, pod, 'shell', ['head', '-c', String(input.length)], {
      stdin: Readable.from([input.subarray(0, 1_000_000), input.subarray(1_000_000)]),
      stdout: out.stream,
    });
    await consumed(out);
    assert.equal(result.exitCode, 0);
    assert.equal(out.state.bytes, input.length);
    assert.equal(out.state.digest(), sha256(input));
  });

  it('a non-zero exit rejects with its code and the end of stderr, or resolves with it when asked', async () => {
    const command = ['sh', '-c', 'echo starting; echo "fatal: no such table" >&2; exit 3'];
    const err = sink();
    await assert.rejects(podExec.exec(namespace, pod, 'shell', command, { stderr: err.stream }), (e: Error) => {
      assert.ok(e instanceof CommandFailedError, String(e));
      assert.equal(e.exitCode, 3);
      assert.equal(e.stderrTail, 'fatal: no such table');
      assert.equal(e.type, 'PeerRejected');
      assert.equal(e.message, 'command in container "shell" of pod default/tools-b exited with code 3; stderr ends:\nfatal: no such table');
      return true;
    });
    assert.equal((await consumed(err)).text, 'fatal: no such table\n', 'stderr streamed to the caller too');

    const out = sink();
    assert.deepEqual(await podExec.exec(namespace, pod, 'shell', command, { stdout: out.stream, throwOnNonZero: false }), { exitCode: 3 });
    assert.equal((await consumed(out)).text, 'starting\n');
  });

  it('a command that cannot start is rejected, not reported as an exit code', async () => {
    await assert.rejects(podExec.exec(namespace, pod, 'shell', ['no-such-command-xyz']), (e: Error) => {
      assert.ok(e instanceof PeerRejectedError && !(e instanceof CommandFailedError), String(e));
      assert.match(e.message, /command could not run in container "shell" of pod default\/tools-b: .*no-such-command-xyz/);
      return true;
    });
  });

  it('an unknown container is NotFound, naming it; a pod gone since it was picked is worth a retry (which picks another)', async () => {
    await assert.rejects(podExec.exec(namespace, pod, 'shel', ['true']), (e: Error) => {
      assert.ok(e instanceof NotFoundError, String(e));
      assert.equal(e.message, 'pod default/tools-b has no container "shel" (has: shell, sidecar)');
      return true;
    });
    await assert.rejects(podExec.exec(namespace, 'tools-z', 'shell', ['true']), (e: Error) => {
      assert.ok(e instanceof PeerUnavailableError, String(e));
      assert.match(e.message, /tools-z.*gone since it was picked/);
      return true;
    });
  });

  it('a Pending pod is unavailable (worth a retry), not an error of the command', async () => {
    // "lonely" (from the pickPod tests) can never be scheduled.
    await assert.rejects(podExec.exec(namespace, 'lonely', 'shell', ['true']), (e: Error) =>
      e instanceof PeerUnavailableError && e.message === 'pod default/lonely is Pending; its containers are not running yet');
  });

  it('abort closes the connection and rejects at once', async () => {
    const controller = new AbortController();
    const out = new PassThrough();
    const running = podExec.exec(namespace, pod, 'shell', ['sh', '-c', 'echo started; sleep 5'], { stdout: out, signal: controller.signal });
    // Abort once the command is surely running: its first line has arrived.
    await new Promise((resolve) => out.once('data', resolve));
    const t0 = Date.now();
    controller.abort(new Error('cancelled by test'));
    await assert.rejects(running, /cancelled by test/);
    assert.ok(Date.now() - t0 < 1_000, `took ${Date.now() - t0} ms`);
    await assert.rejects(podExec.exec(namespace, pod, 'shell', ['true'], { signal: controller.signal }), /cancelled by test/);
  });

  it('works again after all that (nothing left broken)', async () => {
    const out = sink();
    await podExec.exec(namespace, pod, 'sidecar', ['echo', 'hello'], { stdout: out.stream });
    assert.equal((await consumed(out)).text, 'hello\n');
  });
});
