import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  decryptStream,
  encryptStream,
  encryptedSize,
  generateDataKey,
  parseMasterKey,
  unwrapDataKey,
  wrapDataKey,
  wrappedKeySchema,
} from '../../src/crypto.ts';
import { ConfigError, IntegrityError, NotFoundError } from '../../src/errors.ts';

const SEGMENT = 64 * 1024;
const HEADER = encryptedSize(0) - 16;
const STORED_SEGMENT = SEGMENT + 16;

/** Seeded, so a failing chunking can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** `data` in chunks of random sizes, from empty to larger than a segment, some as plain Uint8Arrays. */
async function* randomChunks(data: Buffer, seed: number): AsyncGenerator<Buffer | Uint8Array> {
  const random = prng(seed);
  let offset = 0;
  while (offset < data.length) {
    const size = random() < 0.5 ? Math.floor(random() * 100) : Math.floor(random() * 3 * SEGMENT);
    const chunk = data.subarray(offset, offset + size);
    yield random() < 0.3 ? new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength) : chunk;
    offset += size;
  }
}

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

const encrypt = (plaintext: Buffer, key: Buffer, seed = 1) => collect(encryptStream(randomChunks(plaintext, seed), key));
const decrypt = (stored: Buffer, key: Buffer, seed = 2) => collect(decryptStream(randomChunks(stored, seed), key));

function flipByte(stored: Buffer, at: number): Buffer {
  const copy = Buffer.from(stored);
  copy[at]! ^= 0x01;
  return copy;
}

function segmentsOf(stored: Buffer): Buffer[] {
  const segments: Buffer[] = [];
  for (let at = HEADER; at < stored.length; at += STORED_SEGMENT) segments.push(stored.subarray(at, at + STORED_SEGMENT));
  return segments;
}

describe('streaming encryption', () => {
  for (const size of [0, 1, 65535, 65536, 65537, 3 * 65536, 5_000_017]) {
    it(`round trips ${size} bytes in random chunks, stored at exactly encryptedSize`, async () => {
      const plaintext = randomBytes(size);
      const key = generateDataKey();
      const stored = await encrypt(plaintext, key, size);
      assert.equal(stored.length, encryptedSize(size));
      assert.ok(plaintext.equals(await decrypt(stored, key, size + 1)));
    });
  }

  it('stores a header plus one tag per segment; the last segment may be full, and is empty only for empty plaintext', () => {
    assert.equal(encryptedSize(0), HEADER + 16);
    assert.equal(encryptedSize(1), HEADER + 1 + 16);
    assert.equal(encryptedSize(SEGMENT), HEADER + SEGMENT + 16);
    assert.equal(encryptedSize(SEGMENT + 1), HEADER + SEGMENT + 1 + 32);
  });

  it('seals the same plaintext differently each time (fresh salt and nonce prefix)', async () => {
    const key = generateDataKey();
    const plaintext = Buffer.from('same backup, twice');
    assert.ok(!(await encrypt(plaintext, key)).equals(await encrypt(plaintext, key)));
  });

  describe('detects tampering', () => {
    const key = generateDataKey();
    const plaintext = randomBytes(3 * SEGMENT + 100);
    const sealed = encrypt(plaintext, key);

    it('a flipped byte anywhere: magic, version, salt, nonce prefix, any segment’s data or tag', async () => {
      const stored = await sealed;
      const cases: Array<[string, number, RegExp]> = [
        ['magic', 0, /not an opsflow encrypted object \(bad magic\)/],
        ['version', 7, /not an opsflow encrypted object \(format version 0 is not supported/],
        ['salt', 8, /segment 0 failed authentication: wrong key or corrupted data/],
        ['nonce prefix', HEADER - 1, /segment 0 failed authentication/],
        ['first data byte', HEADER, /segment 0 failed authentication/],
        ['segment 0 tag', HEADER + STORED_SEGMENT - 1, /segment 0 failed authentication/],
        ['middle of segment 2', HEADER + 2 * STORED_SEGMENT + SEGMENT / 2, /segment 2 failed authentication/],
        ['last byte (final tag)', stored.length - 1, /segment 3 failed authentication/],
      ];
      for (const [what, at, message] of cases) {
        await assert.rejects(decrypt(flipByte(stored, at), key), (err) => err instanceof IntegrityError && message.test(err.message), what);
      }
    });

    it('yields nothing from a segment that fails: only the segments before it', async () => {
      const stored = flipByte(await sealed, HEADER + 2 * STORED_SEGMENT + 5);
      const yielded: Buffer[] = [];
      await assert.rejects(async () => {
        for await (const chunk of decryptStream(randomChunks(stored, 3), key)) yielded.push(chunk);
      }, IntegrityError);
      assert.ok(Buffer.concat(yielded).equals(plaintext.subarray(0, 2 * SEGMENT)));
    });

    it('a cut at any segment boundary, or inside the header, is reported as truncation', async () => {
      const stored = await sealed;
      for (const segments of [0, 1, 2, 3]) {
        await assert.rejects(decrypt(stored.subarray(0, HEADER + segments * STORED_SEGMENT), key), /ends before its last segment: truncated/, `${segments} segments`);
      }
      await assert.rejects(decrypt(stored.subarray(0, HEADER - 3), key), /ends inside its header \(28 of 31 bytes\): truncated/);
      await assert.rejects(decrypt(Buffer.alloc(0), key), /ends inside its header \(0 of 31 bytes\): truncated/);
      await assert.rejects(decrypt(stored.subarray(0, stored.length - 1), key), IntegrityError);
      await assert.rejects(decrypt(stored.subarray(0, HEADER + STORED_SEGMENT + 10), key), IntegrityError);
    });

    it('a dropped, swapped or repeated segment', async () => {
      const stored = await sealed;
      const header = stored.subarray(0, HEADER);
      const [s0, s1, s2, s3] = segmentsOf(stored) as [Buffer, Buffer, Buffer, Buffer];
      for (const [what, segments, failing] of [
        ['dropped', [s0, s2, s3], 1],
        ['swapped', [s0, s2, s1, s3], 1],
        ['repeated', [s0, s1, s1, s2, s3], 2],
      ] as const) {
        await assert.rejects(decrypt(Buffer.concat([header, ...segments]), key), new RegExp(`segment ${failing} failed authentication`), what);
      }
    });

    it('bytes appended after the last segment', async () => {
      const fullLast = await encrypt(randomBytes(2 * SEGMENT), key);
      await assert.rejects(decrypt(Buffer.concat([fullLast, Buffer.from('x')]), key), /data after its last segment \(segment 1\)/);
      const stored = await sealed;
      await assert.rejects(decrypt(Buffer.concat([stored, Buffer.from('more')]), key), IntegrityError);
      await assert.rejects(decrypt(Buffer.concat([stored, segmentsOf(stored)[1]!]), key), IntegrityError);
    });

    it('an object from another stream spliced in (same key, other salt)', async () => {
      const stored = await sealed;
      const other = await encrypt(plaintext, key);
      const spliced = Buffer.concat([stored.subarray(0, HEADER + STORED_SEGMENT), other.subarray(HEADER + STORED_SEGMENT)]);
      await assert.rejects(decrypt(spliced, key), /segment 1 failed authentication/);
    });

    it('another data key, also for an empty object', async () => {
      await assert.rejects(decrypt(await sealed, generateDataKey()), /segment 0 failed authentication: wrong key or corrupted data/);
      await assert.rejects(decrypt(await encrypt(Buffer.alloc(0), key), generateDataKey()), /segment 0 failed authentication/);
    });

    it('something that was never encrypted', async () => {
      await assert.rejects(decrypt(Buffer.from('PGDMP plain custom-format dump, not encrypted at all'), key), /not an opsflow encrypted object \(bad magic\)/);
      await assert.rejects(decrypt(Buffer.from('PG'), key), /not an opsflow encrypted object/);
    });
  });
});

describe('data key wrapping', () => {
  const oldMaster = { id: 'k2025', key: randomBytes(32) };
  const newMaster = { id: 'k2026', key: randomBytes(32) };
  const masterKeys = new Map([
    [oldMaster.id, oldMaster.key],
    [newMaster.id, newMaster.key],
  ]);

  it('round trips through a manifest (JSON and the schema)', () => {
    const dataKey = generateDataKey();
    const wrapped = wrappedKeySchema.parse(JSON.parse(JSON.stringify(wrapDataKey(dataKey, newMaster))));
    assert.equal(wrapped.keyId, 'k2026');
    assert.ok(unwrapDataKey(wrapped, masterKeys).equals(dataKey));
  });

  it('after a rotation, sets wrapped with the old master key still open', () => {
    const oldSetKey = generateDataKey();
    const oldSet = wrapDataKey(oldSetKey, oldMaster);
    const newSet = wrapDataKey(generateDataKey(), newMaster);
    assert.ok(unwrapDataKey(oldSet, masterKeys).equals(oldSetKey));
    assert.throws(() => unwrapDataKey(oldSet, new Map([[newMaster.id, newMaster.key]])), NotFoundError);
    assert.ok(unwrapDataKey(newSet, masterKeys).length === 32);
  });

  it('an unknown key ID names the configured ones', () => {
    const wrapped = { ...wrapDataKey(generateDataKey(), newMaster), keyId: 'k2019' };
    assert.throws(
      () => unwrapDataKey(wrapped, masterKeys),
      (err) => err instanceof NotFoundError && err.message === 'master key "k2019" is not configured; configured: k2025, k2026',
    );
  });

  it('a wrapped key relabelled with another key ID does not open, even when both IDs hold the same key', () => {
    const sameKey = randomBytes(32);
    const wrapped = wrapDataKey(generateDataKey(), { id: 'a', key: sameKey });
    assert.throws(
      () => unwrapDataKey({ ...wrapped, keyId: 'b' }, new Map([['a', sameKey], ['b', sameKey]])),
      (err) => err instanceof IntegrityError && /data key wrapped with master key "b" does not open: wrong master key or a tampered manifest/.test(err.message),
    );
  });

  it('a wrong master key, a tampered ciphertext or a shortened tag does not open, and no message holds key material', () => {
    const dataKey = generateDataKey();
    const wrapped = wrapDataKey(dataKey, newMaster);
    const flip = (b64: string) => flipByte(Buffer.from(b64, 'base64'), 0).toString('base64');
    const attempts: Array<[typeof wrapped, ReadonlyMap<string, Buffer>]> = [
      [wrapped, new Map([[newMaster.id, randomBytes(32)]])],
      [{ ...wrapped, ciphertext: flip(wrapped.ciphertext) }, masterKeys],
      [{ ...wrapped, iv: flip(wrapped.iv) }, masterKeys],
      [{ ...wrapped, tag: Buffer.from(wrapped.tag, 'base64').subarray(0, 4).toString('base64') }, masterKeys],
    ];
    const secrets = [dataKey, newMaster.key].flatMap((k) => [k.toString('hex'), k.toString('base64')]);
    for (const [attempt, keys] of attempts) {
      assert.throws(
        () => unwrapDataKey(attempt, keys),
        (err) => err instanceof IntegrityError && /does not open/.test(err.message) && secrets.every((s) => !err.message.includes(s)),
      );
    }
  });

  it('the schema rejects a malformed wrapped key', () => {
    const wrapped = wrapDataKey(generateDataKey(), newMaster);
    assert.ok(wrappedKeySchema.safeParse(wrapped).success);
    assert.ok(!wrappedKeySchema.safeParse({ ...wrapped, algorithm: 'aes-128-gcm' }).success);
    assert.ok(!wrappedKeySchema.safeParse({ ...wrapped, tag: 'AAAA' }).success);
    assert.ok(!wrappedKeySchema.safeParse({ ...wrapped, keyId: '' }).success);
    assert.ok(!wrappedKeySchema.safeParse({ ...wrapped, extra: 1 }).success);
  });
});

describe('parseMasterKey', () => {
  const key = randomBytes(32);

  it('accepts 64 hex digits, base64 with padding and base64url, around whitespace', () => {
    for (const text of [
      key.toString('hex'),
      key.toString('hex').toUpperCase(),
      key.toString('base64'),
      key.toString('base64url'),
      `${key.toString('base64url')}=`,
      `${key.toString('base64')}\n`,
    ]) {
      assert.ok(parseMasterKey(text, 'backups.encryption.masterKeys.k1').equals(key), text.length.toString());
    }
  });

  it('rejects anything else, naming where and the expected form but never the value', () => {
    for (const text of [
      key.subarray(0, 31).toString('hex'),
      key.subarray(0, 31).toString('base64'),
      randomBytes(33).toString('base64'),
      `${key.toString('hex')}00`,
      'correct horse battery staple',
      '',
    ]) {
      assert.throws(
        () => parseMasterKey(text, 'backups.encryption.masterKeys.k1'),
        (err) =>
          err instanceof ConfigError &&
          err.message.startsWith('backups.encryption.masterKeys.k1: a master key must be 32 bytes written as 64 hex digits or as base64') &&
          (text.length < 4 || !err.message.includes(text.trim())),
        JSON.stringify(text.length),
      );
    }
  });
});
