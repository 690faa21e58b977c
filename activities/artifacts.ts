/**
 * The one way a component's bytes go to S3 and come back, whatever produced
 * them (pg_dump, a Redis snapshot, tar, the Kubernetes API, SQLite):
 *
 *   upload:   source → zstd → [encrypt with the set's data key] → SHA-256 → rate cap → S3 multipart
 *   download: S3 → rate cap → SHA-256 → [decrypt] → zstd -d → consumer
 *
 * Streamed end to end: memory stays flat whatever the size. A download's
 * `verified` settles only once the whole object was read and its checksum and
 * size match the manifest, so callers stage a restore and make it live only
 * after that.
 */
import { createHash } from 'node:crypto';
import { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import { startByteCounter, startTool } from '../src/adapters/process.ts';
import type { ObjectStore } from '../src/adapters/s3.ts';
import { decryptStream, encryptStream } from '../src/crypto.ts';
import { IntegrityError } from '../src/errors.ts';
import { feed, tap, throttle, type RateCap } from '../src/streams.ts';
import type { TransferProgress } from './progress.ts';

/** zstd's own default: 2.5x faster than gzip -6 at about the same size (PostgreSQL dumps, tar). */
const DEFAULT_COMPRESSION_LEVEL = 3;

export interface ArtifactOptions {
  store: ObjectStore;
  /** The set's data key; undefined = stored in clear. */
  dataKey?: Buffer;
  /** zstd level; undefined: DEFAULT_COMPRESSION_LEVEL, or the component kind's own default. */
  compressionLevel?: number;
  /** The system's transfer cap, shared by every object the activity moves. */
  rateCap?: RateCap;
  signal: AbortSignal;
  progress: TransferProgress;
}

export interface StoredArtifact {
  key: string;
  compression: 'zstd';
  encrypted: boolean;
  rawBytes: number;
  storedBytes: number;
  sha256: string;
}

/**
 * Compresses, encrypts, hashes and uploads `source`. A child process's
 * stdout is spliced into zstd by the OS (Node never copies those bytes);
 * anything else is fed through Node. `producerDone` must resolve for the
 * upload to complete, so a producer that fails half way never leaves a
 * complete-looking object.
 */
export async function uploadArtifact(
  key: string,
  source: Readable | AsyncIterable<Buffer> | Iterable<Buffer>,
  producerDone: Promise<unknown>,
  options: ArtifactOptions,
): Promise<StoredArtifact> {
  const { store, signal, progress } = options;
  // The pipeline is wired before the first await: a source that finishes
  // before anyone reads it would otherwise lose its output (see keepOutput).
  const zstdArgs = [`-${options.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL}`, '-T0', '-q', '-c'];
  let zstd: ReturnType<typeof startTool>;
  let stages: Promise<unknown>[];
  if (source instanceof Socket) {
    const counter = startByteCounter(source, (total) => (progress.bytesIn = total), signal);
    zstd = startTool('zstd', zstdArgs, { stdio: [counter.stdout, 'pipe', 'pipe'], signal, keepOutput: true });
    stages = [counter.done, zstd.done];
  } else {
    zstd = startTool('zstd', zstdArgs, { signal, keepOutput: true });
    const feeding = feed(source, zstd.child.stdin!, (chunk) => (progress.bytesIn += chunk.length));
    feeding.catch(() => zstd.child.kill('SIGKILL'));
    stages = [feeding, zstd.done];
  }

  try {
    // A retry after a crash cannot resume the earlier attempt's upload (the source is a new stream): clear it.
    await store.abortIncompleteUploads(key);
  } catch (err) {
    zstd.child.kill('SIGKILL');
    throw err;
  }

  const compressed = zstd.output as AsyncIterable<Buffer>;
  const stored = options.dataKey ? encryptStream(compressed, options.dataKey) : compressed;
  const hash = createHash('sha256');
  const hashed = tap(stored, (chunk) => {
    hash.update(chunk);
    progress.bytesOut += chunk.length;
  });
  async function* body() {
    yield* throttle(hashed, options.rateCap);
    await Promise.all([producerDone, ...stages]);
  }
  const uploaded = await store.uploadStream(key, body(), { signal });
  return {
    key,
    compression: 'zstd',
    encrypted: options.dataKey !== undefined,
    rawBytes: progress.bytesIn,
    storedBytes: uploaded.sizeBytes,
    sha256: hash.digest('hex'),
  };
}

export interface ArtifactRef {
  key: string;
  sha256: string;
  storedBytes: number;
  encrypted: boolean;
}

export interface Download {
  /**
   * The raw bytes (decompressed, decrypted), as zstd produces them. With
   * `toProcess`, zstd's own stdout, to hand to another process at once as
   * its stdin (spawn's stdio), so the bytes go from process to process
   * without passing through this one.
   */
  stream: Readable;
  /**
   * Resolves once the object was read to its end and matches the manifest;
   * rejects with IntegrityError when it does not (a corrupt or swapped
   * object), or with the transfer's error.
   */
  verified: Promise<void>;
  /**
   * Stops the transfer (the consumer gave up): `verified` then rejects
   * without reading the rest, unless zstd had already failed on its own
   * (within a grace period: the consumer often notices first).
   */
  cancel(): Promise<void>;
}

/** How long a consumer's failure waits for zstd to say whether the object itself is bad. */
const CANCEL_GRACE_MS = 2000;

export function downloadArtifact(artifact: ArtifactRef, options: ArtifactOptions, output: { toProcess?: boolean } = {}): Download {
  const { store, signal, progress } = options;
  if (artifact.encrypted && !options.dataKey) throw new IntegrityError(`${artifact.key} is encrypted but no data key was given`);
  const zstd = startTool('zstd', ['-d', '-q', '-c'], { signal, keepOutput: !output.toProcess });
  const hash = createHash('sha256');
  let bytes = 0;
  let cancelled = false;
  const count = (chunk: Buffer) => {
    hash.update(chunk);
    bytes += chunk.length;
    progress.bytesIn = bytes;
  };

  const verified = (async () => {
    const { body } = await store.getStream(artifact.key, signal);
    const download = tap(throttle(body as AsyncIterable<Buffer>, options.rateCap), count);
    const compressed = options.dataKey ? decryptStream(download, options.dataKey) : download;
    // Every byte is read and hashed even when zstd stops early (a corrupt
    // object): only a whole read tells a corrupt object (never retried) from
    // a broken transfer. A cancelled download stops at once.
    const stdin = zstd.child.stdin!;
    let broken = false;
    stdin.on('error', () => (broken = true));
    const pumping = (async () => {
      for await (const chunk of compressed) {
        if (cancelled) throw new Error(`download of ${artifact.key} cancelled`);
        if (broken) continue;
        if (!stdin.write(chunk)) await drainedOrClosed(stdin);
      }
      if (!broken) stdin.end();
    })();
    pumping.catch(() => zstd.child.kill('SIGKILL'));
    const [fed, unpacked] = await Promise.allSettled([pumping, zstd.done]);
    const sha256 = hash.digest('hex');
    if (bytes === artifact.storedBytes && sha256 !== artifact.sha256) {
      throw new IntegrityError(`backup object ${artifact.key} is corrupt: its SHA-256 is ${sha256.slice(0, 12)}…, the manifest says ${artifact.sha256.slice(0, 12)}…`);
    }
    // A segment that fails authentication stops the read early; its error is about this object.
    if (fed.status === 'rejected') throw fed.reason instanceof IntegrityError ? new IntegrityError(`backup object ${artifact.key}: ${fed.reason.message}`) : fed.reason;
    if (bytes !== artifact.storedBytes) {
      throw new IntegrityError(`backup object ${artifact.key} has ${bytes} bytes, the manifest says ${artifact.storedBytes}: truncated or replaced`);
    }
    if (unpacked.status === 'rejected') throw unpacked.reason;
  })();
  verified.catch(() => zstd.child.kill('SIGKILL'));
  const exited = new Promise<void>((resolve) => (zstd.child.exitCode !== null ? resolve() : zstd.child.once('exit', () => resolve())));
  const cancel = async () => {
    await Promise.race([exited, sleep(CANCEL_GRACE_MS)]);
    // zstd failed on its own (a corrupt object, most likely): let verification read the rest and judge.
    if (zstd.child.exitCode !== null && zstd.child.exitCode !== 0) return;
    cancelled = true;
    zstd.child.kill('SIGKILL');
  };
  return { stream: output.toProcess ? zstd.child.stdout! : zstd.output!, verified, cancel };
}

/** Resolves when `stream` takes more data, or can never again (zstd exited). */
function drainedOrClosed(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    const settle = () => {
      stream.off('drain', settle);
      stream.off('close', settle);
      resolve();
    };
    stream.on('drain', settle);
    stream.on('close', settle);
  });
}

/**
 * Runs a consumer of a download and settles both: a corrupt object is
 * reported as such even when the consumer failed first on its garbage.
 */
export async function consumeDownload<T>(download: Download, consumer: (stream: Readable) => Promise<T>): Promise<T> {
  const consuming = consumer(download.stream);
  // A consumer that gave up stops reading: stop the transfer too, or it would wait on it forever.
  consuming.catch(() => void download.cancel());
  const [checked, consumed] = await Promise.allSettled([download.verified, consuming]);
  if (checked.status === 'rejected' && checked.reason instanceof IntegrityError) throw checked.reason;
  if (consumed.status === 'rejected') throw consumed.reason;
  if (checked.status === 'rejected') throw checked.reason;
  return consumed.value;
}
