/**
 * Child processes for the native tools opsflow streams through (pg_dump,
 * pg_restore, zstd). Credentials go in through the environment, never argv
 * (argv is visible in `ps`); stderr is kept (last 8 KiB) and redacted for the
 * error message; an abort signal kills the process.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { PassThrough, pipeline, type Readable } from 'node:stream';
import { redact } from '../secrets.ts';
import { PeerUnavailableError } from '../errors.ts';

export interface Tool {
  child: ChildProcess;
  /** Resolves when the process exits 0; rejects with its stderr otherwise. */
  done: Promise<void>;
  /** Its stdout, buffered from the start (with `keepOutput`). */
  output?: Readable;
}

export interface ToolOptions {
  env?: NodeJS.ProcessEnv;
  stdio?: StdioOptions;
  signal?: AbortSignal;
  /**
   * This process reads the tool's stdout (rather than handing it to another
   * tool): take it through `output`, which holds it from the first byte.
   * Node discards a child's unread stdout once the child exits, so a reader
   * that starts after an await would lose a small output whole.
   */
  keepOutput?: boolean;
  /** Maps a failed exit to a typed error; defaults to PeerUnavailable (retryable). */
  onFailure?: (message: string, stderr: string) => Error;
}

const STDERR_KEEP = 8 * 1024;

export function startTool(command: string, args: string[], options: ToolOptions = {}): Tool {
  const stdio = options.stdio ?? ['pipe', 'pipe', 'pipe'];
  const child = spawn(command, args, { env: { ...process.env, ...options.env }, stdio });
  // A stream given as stdio (another tool's stdout) now belongs to the child,
  // which holds its own copy of the pipe: close ours, or the producer's
  // 'close' event would wait forever for us to drain it.
  if (Array.isArray(stdio)) {
    for (const s of stdio) if (s && typeof s === 'object' && 'destroy' in s) (s as Readable).destroy();
  }
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-STDERR_KEEP);
  });
  const onAbort = () => child.kill('SIGKILL');
  options.signal?.addEventListener('abort', onAbort, { once: true });

  const done = new Promise<void>((resolve, reject) => {
    child.once('error', (err) => reject(new PeerUnavailableError(`${command} could not start: ${err.message}`)));
    child.once('close', (code, signal) => {
      options.signal?.removeEventListener('abort', onAbort);
      if (code === 0) return resolve();
      const why = signal ? `was killed (${signal})` : `exited with code ${code}`;
      const detail = redact(stderr.trim());
      const message = `${command} ${why}${detail ? `: ${detail}` : ''}`;
      reject(options.onFailure ? options.onFailure(message, detail) : new PeerUnavailableError(message));
    });
  });
  // Callers await `done` later; keep an early failure from becoming unhandled.
  done.catch(() => undefined);
  const output = options.keepOutput ? pipeline(child.stdout!, new PassThrough(), () => undefined) : undefined;
  return { child, done, output };
}

/**
 * Counts the bytes of a stream between two tools without copying them through
 * Node: `pv` splices the pipe and reports the running total once a second.
 */
export function startByteCounter(input: Readable, onBytes: (total: number) => void, signal?: AbortSignal): Tool & { stdout: Readable } {
  const tool = startTool('pv', ['--numeric', '--bytes', '--interval', '1', '--force'], { stdio: [input, 'pipe', 'pipe'], signal });
  let partial = '';
  tool.child.stderr!.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (/^\d+$/.test(line.trim())) onBytes(Number(line.trim()));
  });
  return { ...tool, stdout: tool.child.stdout! };
}
