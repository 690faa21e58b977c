/**
 * `kubectl exec` for runbook steps that must run inside a pod (a dump through
 * the app's own client, a cache flush). Output is streamed with backpressure:
 * a slow consumer pauses the websocket instead of piling the output up in
 * memory, so a multi-GB dump costs no more memory than a small one. The pod
 * and container are checked first, so a typo reads "no container x", not
 * "Unexpected server response: 400".
 */
import { EventEmitter } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { CoreV1Api, Exec, type KubeConfig, type V1Pod, type V1Status } from '@kubernetes/client-node';
import { CommandFailedError, InvalidInputError, NotFoundError, PeerRejectedError, PeerUnavailableError } from '../../errors.ts';
import { redact } from '../../secrets.ts';
import { toKubernetesError } from './client.ts';
import { isPodReady } from './workloads.ts';

export interface ExecOptions {
  /**
   * Sent to the command. kwok (the test bed) passes the data on but never
   * closes the command's stdin, so a command that reads to EOF (`cat`) hangs
   * there; a real kubelet delivers the EOF.
   */
  stdin?: Readable;
  /** Receives the command's stdout as it comes. Not ended: end it on success, destroy it on failure. */
  stdout?: Writable;
  /** Receives the command's stderr as it comes (its tail also goes into CommandFailedError). */
  stderr?: Writable;
  /**
   * Closes the connection. Kubernetes does not signal the remote process on
   * a closed exec stream, so a long command may run on in the container.
   */
  signal?: AbortSignal;
  /** Reject with CommandFailedError on a non-zero exit (default); false resolves with the code instead. */
  throwOnNonZero?: boolean;
}

/** The websocket Exec returns (client-node's isomorphic-ws, typed without importing it). */
type ExecSocket = Awaited<ReturnType<Exec['exec']>>;

const STDERR_TAIL_BYTES = 4 * 1024;
/** The v5 protocol lets a client close stdin alone: a frame of [CLOSE, STDIN]. */
const CLOSE_STDIN_FRAME = Buffer.from([255, 0]);

export class PodExec {
  private readonly core: CoreV1Api;

  constructor(private readonly kc: KubeConfig) {
    this.core = kc.makeApiClient(CoreV1Api);
  }

  /**
   * Runs `command` (no shell unless you ask for one) in a container of a pod.
   * Resolves when the command has exited and every byte of its output has
   * been written to `stdout`/`stderr` (end them and await 'finish' to know
   * the consumer has it all).
   */
  async exec(namespace: string, pod: string, container: string, command: string[], options: ExecOptions = {}): Promise<{ exitCode: number }> {
    if (command.length === 0) throw new InvalidInputError('exec needs a command');
    options.signal?.throwIfAborted();
    await this.checkContainer(namespace, pod, container);
    const where = `container "${container}" of pod ${namespace}/${pod}`;

    let ws: ExecSocket | undefined;
    let stderrTail = Buffer.alloc(0);
    const stdout = options.stdout ? forwardTo(options.stdout, () => ws) : null;
    const stderr = forwardTo(options.stderr, () => ws, (chunk) => {
      stderrTail = Buffer.concat([stderrTail, chunk]).subarray(-STDERR_TAIL_BYTES);
    });
    // A stand-in that never emits: it makes Exec ask for stdin, which we then
    // pump ourselves, with backpressure (Exec's own pump has none).
    const stdinPlaceholder = options.stdin ? (new EventEmitter() as unknown as Readable) : null;

    let status: V1Status | undefined;
    const closed = new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        ws?.terminate();
        reject(options.signal!.reason ?? new Error('cancelled'));
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      new Exec(this.kc)
        .exec(namespace, pod, container, command, stdout, stderr, stdinPlaceholder, false, (s) => {
          status = s;
        })
        .then(
          (socket) => {
            ws = socket;
            if (options.signal?.aborted) socket.terminate();
            socket.on('close', () => {
              options.signal?.removeEventListener('abort', onAbort);
              resolve();
            });
            if (options.stdin) {
              pumpStdin(options.stdin, socket, (err) => {
                socket.terminate();
                reject(err);
              });
            }
          },
          (err: unknown) => {
            options.signal?.removeEventListener('abort', onAbort);
            reject(toKubernetesError(handshakeError(err), `cannot exec into ${where}`));
          },
        );
    });
    await closed;
    options.signal?.throwIfAborted();
    if (!status) throw new PeerUnavailableError(`exec into ${where} ended before the command reported its exit`);

    const exitCode = exitCodeOf(status);
    if (exitCode === undefined) {
      throw new PeerRejectedError(`command could not run in ${where}: ${redact(status.message ?? status.reason ?? 'unknown error')}`);
    }
    if (exitCode !== 0 && options.throwOnNonZero !== false) {
      const tail = redact(stderrTail.toString('utf8').trim());
      throw new CommandFailedError(`command in ${where} exited with code ${exitCode}${tail ? `; stderr ends:\n${tail}` : ''}`, exitCode, tail);
    }
    return { exitCode };
  }

  /** A Ready pod matching the selector (the first by name, so repeated calls agree). */
  async pickPod(namespace: string, labelSelector: string): Promise<string> {
    if (!labelSelector.trim()) throw new InvalidInputError('pickPod needs a label selector; an empty one matches every pod');
    let pods: V1Pod[];
    try {
      pods = (await this.core.listNamespacedPod({ namespace, labelSelector })).items;
    } catch (err) {
      throw toKubernetesError(err, `cannot list pods in ${namespace} matching "${labelSelector}"`);
    }
    const ready = pods.filter((p) => isPodReady(p) && !p.metadata?.deletionTimestamp).map((p) => p.metadata?.name ?? '').sort();
    if (ready[0]) return ready[0];
    if (pods.length === 0) throw new NotFoundError(`no pod in namespace ${namespace} matches "${labelSelector}"`);
    const states = pods.slice(0, 5).map((p) => `${p.metadata?.name}: ${p.metadata?.deletionTimestamp ? 'Terminating' : p.status?.phase ?? 'Pending'}`);
    throw new NotFoundError(`none of the ${pods.length} pods in namespace ${namespace} matching "${labelSelector}" is Ready (${states.join(', ')})`);
  }

  private async checkContainer(namespace: string, pod: string, container: string): Promise<void> {
    let p: V1Pod;
    try {
      p = await this.core.readNamespacedPod({ namespace, name: pod });
    } catch (err) {
      const mapped = toKubernetesError(err, `cannot exec into pod ${namespace}/${pod}`);
      // Picked a moment ago, gone now: its workload replaced it (a rollout, a restart). Retried, the caller picks another.
      if (mapped instanceof NotFoundError) throw new PeerUnavailableError(`${mapped.message} (gone since it was picked: replaced by its workload?)`);
      throw mapped;
    }
    const names = [...(p.spec?.containers ?? []), ...(p.spec?.ephemeralContainers ?? [])].map((c) => c.name);
    if (!names.includes(container)) {
      throw new NotFoundError(`pod ${namespace}/${pod} has no container "${container}" (has: ${names.join(', ') || 'none'})`);
    }
    const phase = p.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') throw new PeerRejectedError(`pod ${namespace}/${pod} has ended (${phase}); nothing runs in it to exec into`);
    if (phase === 'Pending') throw new PeerUnavailableError(`pod ${namespace}/${pod} is Pending; its containers are not running yet`);
  }
}

/**
 * What Exec writes to: passes each chunk on to `target` and, when the target
 * says it is full, pauses the websocket until it drains. Exec ignores the
 * return value of write(), so the pause is the only backpressure there is.
 * A few chunks already read may still arrive while paused; the target takes them.
 */
function forwardTo(target: Writable | undefined, socket: () => ExecSocket | undefined, tap?: (chunk: Buffer) => void): Writable {
  let paused = false;
  const sink = {
    write(chunk: Buffer): boolean {
      tap?.(chunk);
      if (!target || target.write(chunk)) return true;
      const ws = socket();
      if (ws && !paused) {
        paused = true;
        ws.pause();
        target.once('drain', () => {
          paused = false;
          ws.resume();
        });
      }
      return false;
    },
    // Exec ends its streams when the command exits; the caller's stream stays the caller's to end.
    end(): void {},
  };
  return sink as unknown as Writable;
}

/** One chunk in flight at a time: the next is read only once the socket has taken the last. */
function pumpStdin(stdin: Readable, ws: ExecSocket, fail: (err: Error) => void): void {
  const onData = (chunk: Buffer | string) => {
    const data = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    stdin.pause();
    ws.send(Buffer.concat([Buffer.from([0]), data]), (err?: Error) => (err ? fail(new PeerUnavailableError(`cannot send stdin to exec: ${err.message}`)) : stdin.resume()));
  };
  const onEnd = () => {
    // Older protocols cannot close stdin alone; the command then sees no EOF until the exec ends.
    if (ws.protocol === 'v5.channel.k8s.io' && ws.readyState === ws.OPEN) ws.send(CLOSE_STDIN_FRAME);
  };
  const onError = (err: Error) => fail(new PeerUnavailableError(`stdin of exec failed: ${err.message}`));
  stdin.on('data', onData).once('end', onEnd).once('error', onError);
  // The command may exit before stdin ends: stop reading it then, and leave the stream to its owner.
  ws.once('close', () => {
    stdin.off('data', onData).off('end', onEnd).off('error', onError);
    stdin.pause();
  });
}

/** A refused websocket upgrade says only "Unexpected server response: 403": give it the status code toKubernetesError maps. */
function handshakeError(err: unknown): unknown {
  const code = /Unexpected server response: (\d{3})/.exec((err as Error | undefined)?.message ?? '')?.[1];
  return code ? { code: Number(code), message: (err as Error).message } : err;
}

/**
 * The exit code in the status Kubernetes sends when the command ends: Success
 * is 0; a kubelet reports NonZeroExitCode with the code as a cause; kwok
 * reports an InternalError whose message ends "exit status N". Undefined when
 * the command did not run at all (not found, not executable).
 */
function exitCodeOf(status: V1Status): number | undefined {
  if (status.status === 'Success') return 0;
  if (status.reason === 'NonZeroExitCode') {
    const code = Number(status.details?.causes?.find((c) => c.reason === 'ExitCode')?.message);
    if (Number.isInteger(code)) return code;
  }
  const kwok = /exit status (\d+)\s*$/.exec(status.message ?? '');
  return kwok ? Number(kwok[1]) : undefined;
}
