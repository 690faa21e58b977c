/** Small stream stages shared by the transfer activities. */
import { setTimeout as sleep } from 'node:timers/promises';

/** Passes chunks through, calling `onChunk` on each (hashing, counting). */
export async function* tap(source: AsyncIterable<Buffer>, onChunk: (chunk: Buffer) => void): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    onChunk(chunk);
    yield chunk;
  }
}

/**
 * Caps a stream's rate, so a backup does not saturate the link or the
 * database during business hours. `bytesPerSecond` undefined = no cap.
 */
export async function* throttle(source: AsyncIterable<Buffer>, bytesPerSecond: number | undefined): AsyncGenerator<Buffer> {
  if (!bytesPerSecond) return yield* source;
  const start = Date.now();
  let sent = 0;
  for await (const chunk of source) {
    sent += chunk.length;
    const due = start + (sent / bytesPerSecond) * 1000;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
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
