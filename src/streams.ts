/** Small stream stages shared by the transfer activities. */
import { setTimeout as sleep } from 'node:timers/promises';

/** Passes chunks through, calling `onChunk` on each (hashing, counting). */
export async function* tap(source: AsyncIterable<Buffer>, onChunk: (chunk: Buffer) => void): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    onChunk(chunk);
    yield chunk;
  }
}

export interface Clock {
  now(): number;
  sleep(ms: number): Promise<unknown>;
}

const realClock: Clock = { now: () => Date.now(), sleep: (ms) => sleep(ms) };

/** How much unused allowance a stream may save up while its source is idle: then it bursts at most this long. */
const THROTTLE_BURST_MS = 1000;

/**
 * Caps a stream's rate, so a backup does not saturate the link or the
 * database during business hours. `bytesPerSecond` undefined = no cap. A
 * source that pauses (Redis preparing its snapshot, a slow disk) does not
 * earn the time back: after a pause the stream goes on at the cap.
 */
export async function* throttle(source: AsyncIterable<Buffer>, bytesPerSecond: number | undefined, clock: Clock = realClock): AsyncGenerator<Buffer> {
  if (!bytesPerSecond) return yield* source;
  /** When the bytes sent so far were due, at the cap. */
  let due = clock.now();
  for await (const chunk of source) {
    due = Math.max(due, clock.now() - THROTTLE_BURST_MS) + (chunk.length / bytesPerSecond) * 1000;
    const wait = due - clock.now();
    if (wait > 0) await clock.sleep(wait);
    yield chunk;
  }
}

/** Writes `source` into a child's stdin, honouring backpressure, then ends it. */
export async function feed(source: AsyncIterable<Buffer> | Iterable<Buffer>, sink: NodeJS.WritableStream, onChunk?: (chunk: Buffer) => void): Promise<void> {
  for await (const chunk of source) {
    onChunk?.(chunk);
    if (!sink.write(chunk)) await new Promise((resolve) => sink.once('drain', resolve));
  }
  sink.end();
}
