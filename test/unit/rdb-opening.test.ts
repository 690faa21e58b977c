/**
 * RdbOpening: the key counts an RDB's opening tells, read exactly through its
 * auxiliary fields (every string encoding) however the stream is cut; and
 * nothing claimed where it cannot tell. Real RDBs, a function library among
 * them, are in test/integration/redis.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RdbOpening } from '../../src/adapters/redis.ts';

const HEADER = Buffer.from('REDIS0010');
const [AUX, MODULE_AUX, RESIZEDB, SELECTDB, EOF] = [0xfa, 0xf7, 0xfb, 0xfe, 0xff];

/** An RDB string with a 6-bit length. */
const str = (text: string) => [text.length, ...Buffer.from(text)];

function openingOf(bytes: Buffer, chunkBytes: number): RdbOpening {
  const opening = new RdbOpening();
  for (let at = 0; at < bytes.length; at += chunkBytes) opening.observe(bytes.subarray(at, at + chunkBytes));
  return opening;
}

describe('RdbOpening', () => {
  const rdb = Buffer.from([
    ...HEADER,
    AUX, ...str('redis-ver'), ...str('7.0.15'),
    AUX, ...str('redis-bits'), 0xc0, 64, // an 8-bit integer
    AUX, ...str('ctime'), 0xc2, 0x01, 0x02, 0x03, 0x04, // a 32-bit integer
    // An LZF-compressed value (3 bytes stored, 40 once expanded) holding look-alikes of the record.
    AUX, ...str('aof-base'), 0xc3, 3, 40, SELECTDB, 2, RESIZEDB,
    AUX, ...str('repl-id'), 0x40, 70, ...Buffer.alloc(70, 0xfe), // a 14-bit length
    SELECTDB, 2, RESIZEDB, 0x80, 0x00, 0x01, 0x11, 0x70, 5, // 70,000 keys (a 32-bit length), 5 with a TTL
    0x00, ...str('k'), ...str('v'), EOF, ...Buffer.alloc(8),
  ]);

  for (const chunkBytes of [1, 2, 3, 5, 16, 64, rdb.length]) {
    it(`reads the first database's record past every kind of field, in chunks of ${chunkBytes} bytes`, () => {
      const opening = openingOf(rdb, chunkBytes);
      assert.equal(opening.settled, true);
      assert.deepEqual(opening.countsOf(2), { keys: 70_000, expires: 5 });
      assert.deepEqual(opening.countsOf(0), { keys: 0, expires: 0 }, 'a lower database is empty: Redis writes them in order');
      assert.equal(opening.countsOf(3), undefined, 'a later database needs the whole RDB read');
    });
  }

  it('tells nothing before the record has arrived', () => {
    const opening = openingOf(rdb.subarray(0, rdb.indexOf(Buffer.from([SELECTDB, 2, RESIZEDB, 0x80])) + 4), 4); // cut inside the record
    assert.equal(opening.settled, false);
    assert.equal(opening.countsOf(2), undefined);
    assert.equal(opening.countsOf(0), undefined);
  });

  it('an RDB without databases: every one is empty', () => {
    const opening = openingOf(Buffer.from([...HEADER, AUX, ...str('redis-ver'), ...str('7.0.15'), EOF, ...Buffer.alloc(8)]), 3);
    assert.deepEqual(opening.countsOf(0), { keys: 0, expires: 0 });
    assert.deepEqual(opening.countsOf(9), { keys: 0, expires: 0 });
  });

  it('an opening it does not know tells nothing: module data, no RESIZEDB (before Redis 3.2), one longer than 1 MiB', () => {
    const moduleData = Buffer.from([...HEADER, MODULE_AUX, 0x81, ...Buffer.alloc(8), SELECTDB, 0, RESIZEDB, 1, 0]);
    const noResize = Buffer.from([...Buffer.from('REDIS0006'), SELECTDB, 0, 0x00, ...str('k'), ...str('v'), EOF]);
    const long = Buffer.concat([HEADER, Buffer.from([AUX, ...str('big'), 0x80, 0x00, 0x20, 0x00, 0x00]), Buffer.alloc(2 << 20), Buffer.from([SELECTDB, 0, RESIZEDB, 1, 0])]);
    for (const [name, bytes] of Object.entries({ moduleData, noResize, long })) {
      const opening = openingOf(bytes, 64 * 1024);
      assert.equal(opening.settled, true, name);
      assert.equal(opening.countsOf(0), undefined, name);
    }
  });
});
