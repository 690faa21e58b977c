/**
 * Child processes for the native tools opsflow streams through (pg_dump,
 * pg_restore, zstd). Credentials go in through the environment, never argv
 * (argv is visible in `ps`); stderr is kept (last 8 KiB) and redacted for the
 * error message; an abort signal kills the process.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { redact } from '../secrets.ts';
import { PeerUnavailableError } from '../errors.ts';

export interface Tool {
  child: ChildProcess;
  /** Resolves when the process exits 0; rejects with its stderr otherwise. */
  done: Promise<void>;
}

export interface ToolOptions {
  env?: NodeJS.ProcessEnv;
  stdio?: StdioOptions;
  signal?: AbortSignal;
  /** Maps a failed exit to a typed error; defaults to PeerUnavailable (retryable). */
  onFailure?: (message: string, stderr: string) => Error;
}

const STDERR_KEEP = 8 * 1024;

export function startTool(command: string, args: string[], options: ToolOptions = {}): Tool {
  const child = spawn(command, args, {
    env: { ...process.env, ...options.env },
    stdio: options.stdio ?? ['pipe', 'pipe', 'pipe'],
  });
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
  return { child, done };
}
