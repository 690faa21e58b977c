/**
 * Where opsflow's small sh scripts run: this machine, or a container of a pod
 * through the exec API. Paths go in as arguments ("$1"), never spliced into
 * the script text; exit codes NOT_FOUND and CONFLICT come back as
 * NotFoundError and ConflictError, anything else as PeerRejectedError.
 */
import { posix, resolve } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CommandFailedError, ConflictError, InvalidInputError, NotFoundError, PeerRejectedError } from '../errors.ts';
import type { PodExec } from './kubernetes/exec.ts';
import { startTool } from './process.ts';

export interface Io {
  stdin?: AsyncIterable<Buffer>;
  /** Another process's stdout, handed over as the script's stdin (local only): its bytes never pass through Node. */
  stdinFrom?: Readable;
  /** Receives stdout; not ended. */
  stdout?: Writable;
  signal?: AbortSignal;
}

export interface Runner {
  /** Appended to messages: "" here, ` in container "c" of pod ns/p` in a pod. */
  where: string;
  /** A directory as the scripts will see it: absolute, no trailing slash. */
  path(dir: string): string;
  /** Runs `sh -c script sh ...args`; `what` starts the message of a failure. */
  run(what: string, script: string, args: string[], io?: Io): Promise<void>;
}

/** Exit codes our scripts use for the failures they detect themselves: NotFoundError and ConflictError. */
export const NOT_FOUND = 3;
export const CONFLICT = 4;

function scriptError(what: string, code: number | null, detail: string, where: string): Error {
  if (code === NOT_FOUND) return new NotFoundError(`${detail}${where}`);
  if (code === CONFLICT) return new ConflictError(`${what}${where}: ${detail}`);
  return new PeerRejectedError(`${what}${where}: ${detail}`);
}

const READER_GONE = new Set(['EPIPE', 'ERR_STREAM_PREMATURE_CLOSE']);

export const local: Runner = {
  where: '',
  path: (dir) => resolve(dir),
  async run(what, script, args, io = {}) {
    const tool = startTool('sh', ['-c', script, 'sh', ...args], {
      stdio: [io.stdinFrom ?? (io.stdin ? 'pipe' : 'ignore'), io.stdout ? 'pipe' : 'ignore', 'pipe'],
      signal: io.signal,
      onFailure: (message, stderr) => scriptError(what, tool.child.exitCode, stderr || message, ''),
    });
    const [exit, output, input] = await Promise.allSettled([
      tool.done,
      io.stdout && pipeline(tool.child.stdout!, io.stdout, { end: false }),
      io.stdin && pipeline(Readable.from(io.stdin), tool.child.stdin!),
    ]);
    io.signal?.throwIfAborted();
    if (exit.status === 'rejected') throw exit.reason;
    if (output.status === 'rejected') throw output.reason;
    // tar stops reading at the end-of-archive block: the rest (padding) finding the pipe closed is no failure.
    if (input.status === 'rejected' && !READER_GONE.has((input.reason as NodeJS.ErrnoException).code ?? '')) throw input.reason;
  },
};

export function inPod(exec: PodExec, target: { namespace: string; pod: string; container: string }): Runner {
  const where = ` in container "${target.container}" of pod ${target.namespace}/${target.pod}`;
  return {
    where,
    path(dir) {
      if (!posix.isAbsolute(dir)) throw new InvalidInputError(`the directory${where} must be an absolute path, not "${dir}"`);
      return posix.normalize(dir).replace(/(.)\/+$/, '$1');
    },
    async run(what, script, args, io = {}) {
      if (io.stdinFrom) throw new Error('a process cannot hand its output to a command in a pod: pass it as stdin');
      // A reader that stops reading would leave the exec paused for good: end it with them.
      const stopped = new AbortController();
      io.stdout?.once('close', () => stopped.abort(new PeerRejectedError(`${what}${where}: the reader stopped before the end`)));
      const stdin = io.stdin && Readable.from(io.stdin);
      // The exec stops listening once the command exits; a source failing after that is the caller's to report.
      stdin?.on('error', () => undefined);
      try {
        await exec.exec(target.namespace, target.pod, target.container, ['sh', '-c', script, 'sh', ...args], {
          stdin,
          stdout: io.stdout,
          signal: io.signal ? AbortSignal.any([io.signal, stopped.signal]) : stopped.signal,
        });
      } catch (err) {
        if (err instanceof CommandFailedError) throw scriptError(what, err.exitCode, err.stderrTail || err.message, where);
        throw err;
      } finally {
        stdin?.destroy();
      }
    },
  };
}
