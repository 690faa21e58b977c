/**
 * The transfer cap on a virtual clock: the rate holds, and a source that
 * pauses earns back at most a second's worth, not a burst of everything it
 * was due while idle.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RateCap, throttle, type Clock } from '../../src/streams.ts';

const KB = 1000;

/** Time moves only when the throttle sleeps or the source says it idles. */
function virtualClock(): Clock & { advance(ms: number): void } {
  let now = 0;
  return {
    now: () => now,
    sleep: async (ms) => void (now += ms),
    advance: (ms) => void (now += ms),
  };
}

async function* chunks(count: number, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < count; i++) yield Buffer.alloc(size);
}

describe('throttle', () => {
  it('holds the stream to the cap', async () => {
    const clock = virtualClock();
    let bytes = 0;
    for await (const chunk of throttle(chunks(30, 100 * KB), new RateCap(1000 * KB, clock))) bytes += chunk.length;
    assert.equal(bytes, 3000 * KB);
    assert.equal(clock.now(), 3000, '3 MB at 1 MB/s: 3 s');
  });

  it('after the source idles, goes on at the cap with at most one second saved up', async () => {
    const clock = virtualClock();
    async function* pausing() {
      yield Buffer.alloc(100 * KB);
      clock.advance(5000); // the source prepares (Redis forks, a disk stalls)
      yield* chunks(30, 100 * KB);
    }
    const sentAt: number[] = [];
    for await (const chunk of throttle(pausing(), new RateCap(1000 * KB, clock))) if (chunk.length) sentAt.push(clock.now());
    const resumed = 100 + 5000;
    // 3 MB after the pause: 1 s of it from the saved-up second, 2 s at the cap. Without the limit, all at once.
    assert.equal(sentAt.at(-1)! - resumed, 2000);
    // Never faster than the cap over any second once the credit is spent.
    const lastSecond = sentAt.filter((t) => t > sentAt.at(-1)! - 1000).length;
    assert.ok(lastSecond <= 10, `${lastSecond} chunks of 100 kB in the last second`);
  });

  it('without a cap passes everything through at once', async () => {
    const clock = virtualClock();
    let n = 0;
    for await (const chunk of throttle(chunks(5, KB), undefined)) n += chunk.length;
    assert.equal(n, 5 * KB);
    assert.equal(clock.now(), 0);
  });

  it('streams sharing one cap stay under it together', async () => {
    const clock = virtualClock();
    const cap = new RateCap(1000 * KB, clock);
    const drain = async (source: AsyncIterable<Buffer>) => {
      let bytes = 0;
      for await (const chunk of source) bytes += chunk.length;
      return bytes;
    };
    const sent = await Promise.all([drain(throttle(chunks(20, 100 * KB), cap)), drain(throttle(chunks(10, 100 * KB), cap))]);
    assert.deepEqual(sent, [2000 * KB, 1000 * KB]);
    assert.equal(clock.now(), 3000, '3 MB in two streams at 1 MB/s in all: 3 s, not the 2 s of a cap each');
  });
});
