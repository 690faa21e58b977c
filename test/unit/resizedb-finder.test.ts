/**
 * ResizeDbFinder: one database's RESIZEDB record picked out of an RDB as it
 * streams by, however the stream is cut into chunks, among look-alikes in the
 * values. The offsets stand in for redis-check-rdb's "Selecting DB ID"
 * lines; real RDBs are in test/integration/redis.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ResizeDbFinder } from '../../src/adapters/redis.ts';

const SELECTDB = 0xfe;
const RESIZEDB = 0xfb;

/** A stream of noise with the given byte sequences at the given offsets. */
function streamWith(length: number, inserts: [number, number[]][]): Buffer {
  const buf = Buffer.alloc(length);
  for (let i = 0; i < length; i++) buf[i] = (i * 131 + 17) % 251; // never 0xfb, 0xfe: no accidental needle
  for (const [at, bytes] of inserts) Buffer.from(bytes).copy(buf, at);
  return buf;
}

function feed(finder: ResizeDbFinder, stream: Buffer, chunkBytes: number): void {
  for (let at = 0; at < stream.length; at += chunkBytes) finder.observe(stream.subarray(at, at + chunkBytes));
}

describe('ResizeDbFinder', () => {
  // db 3's record: 70,000 keys (a 32-bit length) and 5 expires.
  const real: [number, number[]] = [100, [SELECTDB, 3, RESIZEDB, 0x80, 0x00, 0x01, 0x11, 0x70, 5]];
  const lookAlike: [number, number[]] = [40, [SELECTDB, 3, RESIZEDB, 7, 1]];
  const otherDb: [number, number[]] = [160, [SELECTDB, 4, RESIZEDB, 9, 9]];
  const atEnd: [number, number[]] = [196, [SELECTDB, 3, RESIZEDB, 2]];
  const stream = streamWith(200, [lookAlike, real, otherDb, atEnd]);

  for (const chunkBytes of [1, 2, 3, 5, 7, 16, 64, 200]) {
    it(`finds every candidate by the offset of its opcode, in chunks of ${chunkBytes} bytes`, () => {
      const finder = new ResizeDbFinder(3);
      feed(finder, stream, chunkBytes);
      assert.deepEqual(finder.countsAt(102), { keys: 70_000, expires: 5 });
      assert.deepEqual(finder.countsAt(42), { keys: 7, expires: 1 }, 'the look-alike is kept too: the offset decides');
      assert.equal(finder.countsAt(162), undefined, "another database's record is not this one's");
      assert.equal(finder.countsAt(198), undefined, 'a record cut off by the end of the stream is none');
      assert.equal(finder.countsAt(101), undefined);
      assert.equal(finder.overflowed, false);
    });
  }

  it('a database number of 64 or more (two-byte length) is found as well', () => {
    const finder = new ResizeDbFinder(300);
    feed(finder, streamWith(50, [[10, [SELECTDB, 0x41, 0x2c, RESIZEDB, 12, 0]]]), 4);
    assert.deepEqual(finder.countsAt(13), { keys: 12, expires: 0 });
  });

  it('stops keeping look-alikes past its limit, and says so', () => {
    const needle = [SELECTDB, 0, RESIZEDB, 1, 0];
    const count = ResizeDbFinder.MAX_CANDIDATES + 5;
    const finder = new ResizeDbFinder(0);
    feed(finder, Buffer.from(Array.from({ length: count }, () => needle).flat()), 4096);
    assert.equal(finder.overflowed, true);
    assert.deepEqual(finder.countsAt(2), { keys: 1, expires: 0 });
    assert.equal(finder.countsAt((count - 1) * needle.length + 2), undefined);
  });
});
