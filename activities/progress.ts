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

export function startHeartbeats(progress: TransferProgress): () => void {
  const ctx = Context.current();
  ctx.heartbeat({ ...progress });
  const timer = setInterval(() => ctx.heartbeat({ ...progress }), 1000);
  return () => {
    clearInterval(timer);
    ctx.heartbeat({ ...progress });
  };
}
