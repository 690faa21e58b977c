/**
 * Client-side encryption of backup objects. Each backup set gets a random data
 * key; its objects are sealed with it as a stream of authenticated segments,
 * and the data key itself is stored in the manifest wrapped by a master key
 * that has an ID, so sets written before a master key rotation stay readable
 * as long as the old key is still configured.
 *
 * Object layout (the STREAM construction of Hoang, Reyhanitabar, Rogaway and
 * Vizár, as age and Tink use it):
 *
 *   header   magic "opsflow" (7) | version 0x01 (1) | salt (16) | nonce prefix (7)
 *   segments AES-256-GCM(64 KiB of plaintext) | tag (16), repeated
 *
 * Segment i is sealed under nonce = prefix | i (uint32 BE) | last (0x00/0x01),
 * so a reordered, dropped or repeated segment, a cut at a segment boundary
 * and bytes appended after the last segment all fail to authenticate. Only
 * the last segment may be short; it is empty only when the plaintext is.
 *
 * The header is authenticated by deriving each object's segment key with
 * HKDF-SHA256(data key, salt): a changed salt gives another key, a changed
 * prefix other nonces, and magic and version are compared exactly. This also
 * gives every object its own AES key, so one data key can seal all of a
 * set's objects without them sharing GCM's per-key nonce and usage limits.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ConfigError, IntegrityError, InvalidInputError, NotFoundError } from './errors.ts';

/** Names every parameter a reader needs: cipher, key derivation, segment size. Recorded in manifests. */
export const ENCRYPTION_ALGORITHM = 'aes-256-gcm-hkdf-sha256-stream-64k';

const KEY_BYTES = 32;
const SEGMENT_BYTES = 64 * 1024;
const TAG_BYTES = 16;
const STORED_SEGMENT_BYTES = SEGMENT_BYTES + TAG_BYTES;
const MAGIC = Buffer.from('opsflow', 'ascii');
const VERSION = 1;
const SALT_BYTES = 16;
const NONCE_PREFIX_BYTES = 7;
const HEADER_BYTES = MAGIC.length + 1 + SALT_BYTES + NONCE_PREFIX_BYTES;
/** The segment counter is 32 bits: at most 256 TiB per object. */
const MAX_SEGMENTS = 2 ** 32;
/** Binds derived keys to this format, so a later version never shares them. */
const HKDF_INFO = Buffer.from(`opsflow segment key ${ENCRYPTION_ALGORITHM}`, 'ascii');

/** Exact stored size of `plainBytes` of plaintext: header plus one tag per segment. */
export function encryptedSize(plainBytes: number): number {
  const segments = Math.max(1, Math.ceil(plainBytes / SEGMENT_BYTES));
  return HEADER_BYTES + plainBytes + segments * TAG_BYTES;
}

export function generateDataKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

/**
 * Seals `source` (chunks of any size) into an encrypted object. Memory stays
 * at about one segment plus the current input chunk: chunks are held by
 * reference, not copied, until their segment is sealed, so a source must not
 * reuse a buffer after yielding it (Node streams do not).
 */
export async function* encryptStream(source: AsyncIterable<Buffer | Uint8Array>, dataKey: Buffer): AsyncGenerator<Buffer> {
  assertKeyLength(dataKey, 'data key');
  const salt = randomBytes(SALT_BYTES);
  const noncePrefix = randomBytes(NONCE_PREFIX_BYTES);
  const key = segmentKey(dataKey, salt);
  yield Buffer.concat([MAGIC, Buffer.of(VERSION), salt, noncePrefix]);

  const pending = new ChunkQueue();
  let index = 0;
  for await (const chunk of source) {
    pending.push(asBuffer(chunk));
    // A full segment is known not to be the last only once a byte after it has arrived.
    while (pending.length > SEGMENT_BYTES) {
      if (index === MAX_SEGMENTS - 1) throw new InvalidInputError('plaintext is too large to encrypt as one object (256 TiB at most)');
      yield* sealSegment(key, segmentNonce(noncePrefix, index++, false), pending.take(SEGMENT_BYTES));
    }
  }
  yield* sealSegment(key, segmentNonce(noncePrefix, index, true), pending.take(pending.length));
}

/**
 * Opens an object written by `encryptStream`. Yields a segment's plaintext
 * only after that segment authenticates, so a consumer never sees unverified
 * bytes; throws IntegrityError on a foreign, corrupted, reordered, truncated
 * or extended object, or the wrong key.
 */
export async function* decryptStream(source: AsyncIterable<Buffer | Uint8Array>, dataKey: Buffer): AsyncGenerator<Buffer> {
  assertKeyLength(dataKey, 'data key');
  const pending = new ChunkQueue();
  let header: { key: Buffer; noncePrefix: Buffer } | undefined;
  let index = 0;
  for await (const chunk of source) {
    pending.push(asBuffer(chunk));
    if (!header) {
      if (pending.length < HEADER_BYTES) continue;
      header = readHeader(Buffer.concat(pending.take(HEADER_BYTES)), dataKey);
    }
    // As when sealing: a full segment with bytes after it must not be the last.
    while (pending.length > STORED_SEGMENT_BYTES) {
      yield* openSegment(header.key, header.noncePrefix, index++, pending.take(STORED_SEGMENT_BYTES), false);
    }
  }
  if (!header) {
    const start = Buffer.concat(pending.take(pending.length));
    checkFormat(start);
    throw new IntegrityError(`encrypted object ends inside its header (${start.length} of ${HEADER_BYTES} bytes): truncated`);
  }
  if (pending.length < TAG_BYTES) throw truncated();
  yield* openSegment(header.key, header.noncePrefix, index, pending.take(pending.length), true);
}

export interface WrappedKey {
  keyId: string;
  algorithm: 'aes-256-gcm';
  iv: string;
  ciphertext: string;
  tag: string;
}

const base64OfBytes = (bytes: number) =>
  z.string().refine((text) => /^[A-Za-z0-9+/]*={0,2}$/.test(text) && Buffer.from(text, 'base64').length === bytes, `base64 of ${bytes} bytes`);

/** A wrapped data key as stored in a manifest (S3 content is input too). */
export const wrappedKeySchema = z.strictObject({
  keyId: z.string().min(1),
  algorithm: z.literal('aes-256-gcm'),
  iv: base64OfBytes(12),
  ciphertext: base64OfBytes(KEY_BYTES),
  tag: base64OfBytes(TAG_BYTES),
}) satisfies z.ZodType<WrappedKey>;

/** Wraps a data key with AES-256-GCM; the key ID is the AAD, so the result cannot be relabelled with another ID. */
export function wrapDataKey(dataKey: Buffer, master: { id: string; key: Buffer }): WrappedKey {
  assertKeyLength(dataKey, 'data key');
  assertKeyLength(master.key, `master key "${master.id}"`);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', master.key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(master.id, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(dataKey), cipher.final()]);
  return {
    keyId: master.id,
    algorithm: 'aes-256-gcm',
    iv: iv.toString('base64'),
    ciphertext: ciphertext.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
  };
}

/** Opens a wrapped data key with the master key its ID names; `masterKeys` holds the current key and any retired ones. */
export function unwrapDataKey(wrapped: WrappedKey, masterKeys: ReadonlyMap<string, Buffer>): Buffer {
  const master = masterKeys.get(wrapped.keyId);
  if (!master) {
    const configured = [...masterKeys.keys()].join(', ') || 'none';
    throw new NotFoundError(`master key "${wrapped.keyId}" is not configured; configured: ${configured}`);
  }
  assertKeyLength(master, `master key "${wrapped.keyId}"`);
  const doesNotOpen = () =>
    new IntegrityError(`data key wrapped with master key "${wrapped.keyId}" does not open: wrong master key or a tampered manifest`);
  const iv = Buffer.from(wrapped.iv, 'base64');
  const tag = Buffer.from(wrapped.tag, 'base64');
  // GCM accepts short tags and any IV length unless told otherwise; a manifest must not choose them.
  if (wrapped.algorithm !== 'aes-256-gcm' || iv.length !== 12 || tag.length !== TAG_BYTES) throw doesNotOpen();
  const decipher = createDecipheriv('aes-256-gcm', master, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.from(wrapped.keyId, 'utf8'));
  decipher.setAuthTag(tag);
  let dataKey: Buffer;
  try {
    dataKey = Buffer.concat([decipher.update(Buffer.from(wrapped.ciphertext, 'base64')), decipher.final()]);
  } catch {
    throw doesNotOpen();
  }
  if (dataKey.length !== KEY_BYTES) throw doesNotOpen();
  return dataKey;
}

/**
 * Reads a 32-byte master key written as 64 hex digits or base64 (standard
 * with padding, or base64url with or without). Errors name `where` and the
 * expected form but never echo the value.
 */
export function parseMasterKey(text: string, where: string): Buffer {
  const value = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(value)) return Buffer.from(value, 'hex');
  if (/^[A-Za-z0-9+/]{43}=$/.test(value) || /^[A-Za-z0-9_-]{43}=?$/.test(value)) {
    const key = Buffer.from(value, 'base64');
    if (key.length === KEY_BYTES) return key;
  }
  throw new ConfigError(
    `${where}: a master key must be 32 bytes written as 64 hex digits or as base64 (44 characters with padding, or base64url); ` +
      `got ${value.length} characters that are neither (generate one with: openssl rand -base64 32)`,
  );
}

// ---------------------------------------------------------------- segments

function assertKeyLength(key: Buffer, what: string): void {
  if (key.length !== KEY_BYTES) throw new InvalidInputError(`${what} must be ${KEY_BYTES} bytes, got ${key.length}`);
}

function segmentKey(dataKey: Buffer, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', dataKey, salt, HKDF_INFO, KEY_BYTES));
}

function segmentNonce(prefix: Buffer, index: number, last: boolean): Buffer {
  const nonce = Buffer.alloc(NONCE_PREFIX_BYTES + 5);
  prefix.copy(nonce);
  nonce.writeUInt32BE(index, NONCE_PREFIX_BYTES);
  nonce[NONCE_PREFIX_BYTES + 4] = last ? 1 : 0;
  return nonce;
}

/** A segment's ciphertext and tag, in pieces: not joined, since the uploader copies them into its part anyway. */
function sealSegment(key: Buffer, nonce: Buffer, plaintext: Buffer[]): Buffer[] {
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  const parts = plaintext.map((piece) => cipher.update(piece));
  parts.push(cipher.final(), cipher.getAuthTag());
  return parts.filter((part) => part.length > 0);
}

/** The plaintext of a stored segment (ciphertext and tag), in pieces, or undefined if it does not authenticate under `nonce`. */
function tryOpenSegment(key: Buffer, nonce: Buffer, stored: Buffer[]): Buffer[] | undefined {
  const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  const storedBytes = stored.reduce((sum, piece) => sum + piece.length, 0);
  const parts: Buffer[] = [];
  const tag: Buffer[] = [];
  let offset = 0;
  for (const piece of stored) {
    // The tag is the last 16 bytes and may straddle input chunks.
    const ciphertextEnd = Math.max(0, Math.min(piece.length, storedBytes - TAG_BYTES - offset));
    if (ciphertextEnd > 0) parts.push(decipher.update(piece.subarray(0, ciphertextEnd)));
    if (ciphertextEnd < piece.length) tag.push(piece.subarray(ciphertextEnd));
    offset += piece.length;
  }
  decipher.setAuthTag(Buffer.concat(tag));
  try {
    parts.push(decipher.final());
  } catch {
    return undefined;
  }
  return parts.filter((part) => part.length > 0);
}

/**
 * Opens segment `index`, which the stream's length says is (or is not) the
 * last. On failure it tries the other flag only to say what went wrong:
 * a cut at a segment boundary, or bytes after the real last segment.
 */
function openSegment(key: Buffer, noncePrefix: Buffer, index: number, stored: Buffer[], last: boolean): Buffer[] {
  const plaintext = tryOpenSegment(key, segmentNonce(noncePrefix, index, last), stored);
  if (plaintext) return plaintext;
  if (tryOpenSegment(key, segmentNonce(noncePrefix, index, !last), stored)) {
    throw last ? truncated() : new IntegrityError(`encrypted object has data after its last segment (segment ${index})`);
  }
  throw new IntegrityError(`encrypted object segment ${index} failed authentication: wrong key or corrupted data`);
}

/** Checks magic and version as far as `start` reaches, so even a cut header says whether it was ours. */
function checkFormat(start: Buffer): void {
  const magic = start.subarray(0, MAGIC.length);
  if (!magic.equals(MAGIC.subarray(0, magic.length))) throw notOurs('bad magic');
  const version = start[MAGIC.length];
  if (version !== undefined && version !== VERSION) throw notOurs(`format version ${version} is not supported (this build reads ${VERSION})`);
}

function readHeader(header: Buffer, dataKey: Buffer): { key: Buffer; noncePrefix: Buffer } {
  checkFormat(header);
  const salt = header.subarray(MAGIC.length + 1, MAGIC.length + 1 + SALT_BYTES);
  return { key: segmentKey(dataKey, salt), noncePrefix: Buffer.from(header.subarray(HEADER_BYTES - NONCE_PREFIX_BYTES)) };
}

const notOurs = (why: string) => new IntegrityError(`not an opsflow encrypted object (${why})`);
const truncated = () => new IntegrityError('encrypted object ends before its last segment: truncated');

function asBuffer(chunk: Buffer | Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/** Input chunks waiting to fill a segment; `take` slices them, never copies. */
class ChunkQueue {
  private chunks: Buffer[] = [];
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  take(bytes: number): Buffer[] {
    const taken: Buffer[] = [];
    let wanted = bytes;
    while (wanted > 0) {
      const head = this.chunks[0]!;
      if (head.length <= wanted) {
        taken.push(head);
        this.chunks.shift();
        wanted -= head.length;
      } else {
        taken.push(head.subarray(0, wanted));
        this.chunks[0] = head.subarray(wanted);
        wanted = 0;
      }
    }
    this.length -= bytes;
    return taken;
  }
}
