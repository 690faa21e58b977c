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
 * A transfer cap, so a backup does not saturate the link or the database
 * during business hours. One cap may be shared by several streams (a
 * component's parallel parts): together they stay under it. A source that
 * pauses (Redis preparing its snapshot, a slow disk) does not earn the time
 * back: after a pause the streams go on at the cap.
 */
export class RateCap {
  /** When the bytes passed so far were due, at the cap. */
  private due: number;

  constructor(private readonly bytesPerSecond: number, private readonly clock: Clock = realClock) {
    this.due = clock.now();
  }

  /** Resolves when `bytes` more may go. */
  async pass(bytes: number): Promise<void> {
    this.due = Math.max(this.due, this.clock.now() - THROTTLE_BURST_MS) + (bytes / this.bytesPerSecond) * 1000;
    const wait = this.due - this.clock.now();
    if (wait > 0) await this.clock.sleep(wait);
  }
}

/** `source` held to `cap`; undefined = no cap. */
export async function* throttle(source: AsyncIterable<Buffer>, cap: RateCap | undefined): AsyncGenerator<Buffer> {
  if (!cap) return yield* source;
  for await (const chunk of source) {
    await cap.pass(chunk.length);
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
