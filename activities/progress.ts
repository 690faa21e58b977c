/**
 * Heartbeats for long activities: progress goes out once a second (the SDK
 * throttles further), so a crashed worker is noticed within the heartbeat
 * timeout and `opsflow status` can show bytes moving.
 */
import { Context } from '@temporalio/activity';

export interface TransferProgress {
  step: string;
  bytesIn: number;
  bytesOut: number;
  totalBytes?: number;
}

/**
 * A share of `whole` for one of several streams moving at once (a
 * component's parallel parts): each stream counts its own bytes, as if it
 * were alone, and `whole` shows their sum.
 */
export function shareOf(whole: TransferProgress): TransferProgress {
  let bytesIn = 0;
  let bytesOut = 0;
  return {
    step: whole.step,
    get bytesIn() {
      return bytesIn;
    },
    set bytesIn(value: number) {
      whole.bytesIn += value - bytesIn;
      bytesIn = value;
    },
    get bytesOut() {
      return bytesOut;
    },
    set bytesOut(value: number) {
      whole.bytesOut += value - bytesOut;
      bytesOut = value;
    },
  };
}

/** A wait on something outside (a rollout, pods, a Job): what it is waiting for, in words. */
export interface WaitProgress {
  step: string;
  message: string;
}

export type Progress = TransferProgress | WaitProgress;

/** Heartbeats `progress` (mutated by the caller as work moves) until the returned function is called. */
export function startHeartbeats(progress: Progress): () => void {
  const ctx = Context.current();
  ctx.heartbeat({ ...progress });
  const timer = setInterval(() => ctx.heartbeat({ ...progress }), 1000);
  return () => {
    clearInterval(timer);
    ctx.heartbeat({ ...progress });
  };
}

/**
 * Heartbeats while `fn` runs, for short activities a crash-sensitive
 * procedure (disaster recovery) runs with a heartbeat timeout: a worker that
 * dies mid-call is noticed in seconds instead of at the start-to-close timeout.
 */
export async function keepAlive<T>(step: string, fn: () => Promise<T>): Promise<T> {
  // The CLI and /metrics call catalog functions in their own process; a local
  // activity cannot heartbeat (the SDK would log each one as failed).
  if (!inActivity() || Context.current().info.isLocal) return fn();
  const stop = startHeartbeats({ step, message: 'working' });
  try {
    return await fn();
  } finally {
    stop();
  }
}

function inActivity(): boolean {
  try {
    Context.current();
    return true;
  } catch {
    return false;
  }
}
