/**
 * The only code that talks to S3. Streams in and out; uploads are multipart
 * with a bounded number of parts in memory, and an upload that fails or is
 * cancelled is aborted so no incomplete upload is left behind.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { IntegrityError, NotFoundError, OpsflowError, PeerRejectedError, PeerUnavailableError } from '../errors.ts';
import { redact } from '../secrets.ts';

// opsflow targets Node 20 on purpose (the required stack); the SDK's notice
// about its future Node 22 floor would otherwise print on every CLI run.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export interface ObjectStoreOptions {
  bucket: string;
  region: string;
  endpoint?: string;
  forcePathStyle?: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

export interface UploadProgress {
  uploadId: string;
  partsDone: number;
  bytesUploaded: number;
}

const MiB = 1024 * 1024;
/** First parts are 8 MiB; the size doubles every 1000 parts to stay under S3's 10,000-part limit. */
function partSizeFor(partNumber: number): number {
  return 8 * MiB * 2 ** Math.floor((partNumber - 1) / 1000);
}
const PARTS_IN_FLIGHT = 2;

/**
 * Part buffers, reused by every upload of the worker: the parts in flight and
 * the one filling. Buffers count as external memory, and V8 answers each few
 * dozen MiB of it with a full collection of the worker's heap: joining chunks
 * into a new buffer per part (and per encryption segment, see crypto.ts)
 * caused 40 % of those during a Redis backup. Shared, the next backups take
 * the buffers of the last instead of adding theirs while those wait for a
 * collection, so the worker's memory stays at what its busiest moment needed.
 */
class PartBuffers {
  private readonly free: Buffer[] = [];
  private freeBytes = 0;

  constructor(private readonly keepAtMostBytes: number) {}

  take(size: number): Buffer {
    const i = this.free.findIndex((b) => b.length === size);
    if (i < 0) return Buffer.allocUnsafe(size);
    this.freeBytes -= size;
    return this.free.splice(i, 1)[0]!;
  }

  /** A part whose upload is over, whole or (the last part) a view of its start. */
  give(part: Buffer): void {
    // allocUnsafe gives a part size its own ArrayBuffer (only small sizes share Node's pool).
    const whole = part.buffer.byteLength;
    if (part.byteOffset !== 0 || this.freeBytes + whole > this.keepAtMostBytes) return;
    this.free.push(Buffer.from(part.buffer, 0, whole));
    this.freeBytes += whole;
  }
}

/**
 * Enough for four uploads at once (a split database backup) to find their
 * 8 MiB parts ready. An idle worker keeps them (up to 96 MiB) for the next backup.
 */
const partBuffers = new PartBuffers(4 * (PARTS_IN_FLIGHT + 1) * partSizeFor(1));

function toS3Error(err: unknown, what: string): Error {
  if (err instanceof OpsflowError) return err;
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number }; code?: string };
  const status = e.$metadata?.httpStatusCode;
  const message = `${what}: ${redact(e.message ?? String(err))}${e.name ? ` (${e.name})` : ''}`;
  if (e.name === 'NoSuchKey' || e.name === 'NotFound' || e.name === 'NoSuchBucket' || status === 404) return new NotFoundError(message);
  if (status === 401 || status === 403 || e.name === 'InvalidAccessKeyId' || e.name === 'SignatureDoesNotMatch' || e.name === 'AccessDenied') {
    return new PeerRejectedError(message);
  }
  return new PeerUnavailableError(message, err);
}

export class ObjectStore {
  readonly client: S3Client;
  readonly bucket: string;

  constructor(options: ObjectStoreOptions) {
    this.bucket = options.bucket;
    this.client = new S3Client({
      region: options.region,
      endpoint: options.endpoint,
      forcePathStyle: options.forcePathStyle,
      credentials: options.credentials,
      // opsflow computes its own SHA-256 over every object; skip the SDK's
      // extra CRC pass (and stay compatible with servers lacking trailers).
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  async ensureBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch {
      await this.client.send(new CreateBucketCommand({ Bucket: this.bucket })).catch((err) => {
        if ((err as { name?: string }).name !== 'BucketAlreadyOwnedByYou') throw toS3Error(err, `cannot create bucket ${this.bucket}`);
      });
    }
  }

  async putJson(key: string, value: unknown): Promise<void> {
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: JSON.stringify(value, null, 2), ContentType: 'application/json' }),
      );
    } catch (err) {
      throw toS3Error(err, `cannot write s3://${this.bucket}/${key}`);
    }
  }

  async getJson(key: string): Promise<unknown> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return JSON.parse(await r.Body!.transformToString('utf8'));
    } catch (err) {
      if (err instanceof SyntaxError) throw new PeerRejectedError(`s3://${this.bucket}/${key} is not valid JSON`);
      throw toS3Error(err, `cannot read s3://${this.bucket}/${key}`);
    }
  }

  async head(key: string): Promise<{ size: number } | undefined> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: r.ContentLength ?? 0 };
    } catch (err) {
      const mapped = toS3Error(err, `cannot stat s3://${this.bucket}/${key}`);
      if (mapped instanceof NotFoundError) return undefined;
      throw mapped;
    }
  }

  async getStream(key: string, signal?: AbortSignal): Promise<{ body: Readable; size: number }> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
      return { body: r.Body as Readable, size: r.ContentLength ?? 0 };
    } catch (err) {
      throw toS3Error(err, `cannot read s3://${this.bucket}/${key}`);
    }
  }

  /** Every key under a prefix, page by page. */
  /** Deletes keys (absent ones are fine), 1000 per request as S3 allows. */
  async deleteObjects(keys: string[]): Promise<number> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      try {
        const r = await this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }));
        if (r.Errors?.length) throw new PeerRejectedError(`S3 refused to delete ${r.Errors.length} object(s), e.g. ${r.Errors[0]!.Key}: ${r.Errors[0]!.Message}`);
      } catch (err) {
        throw toS3Error(err, `cannot delete objects in s3://${this.bucket}`);
      }
    }
    return keys.length;
  }

  async *listKeys(prefix: string): AsyncGenerator<{ key: string; size: number }> {
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }));
      } catch (err) {
        throw toS3Error(err, `cannot list s3://${this.bucket}/${prefix}`);
      }
      for (const o of page.Contents ?? []) yield { key: o.Key!, size: o.Size ?? 0 };
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /** Incomplete multipart uploads under a prefix (left by a crashed worker). */
  async incompleteUploads(prefix: string): Promise<{ key: string; uploadId: string }[]> {
    const found: { key: string; uploadId: string }[] = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
        );
      } catch (err) {
        throw toS3Error(err, `cannot list uploads in s3://${this.bucket}/${prefix}`);
      }
      for (const u of page.Uploads ?? []) found.push({ key: u.Key!, uploadId: u.UploadId! });
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return found;
  }

  async abortIncompleteUploads(prefix: string): Promise<number> {
    const uploads = await this.incompleteUploads(prefix);
    for (const u of uploads) await this.abortUpload(u.key, u.uploadId);
    return uploads.length;
  }

  async abortUpload(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }));
    } catch (err) {
      const mapped = toS3Error(err, `cannot abort upload of s3://${this.bucket}/${key}`);
      if (!(mapped instanceof NotFoundError)) throw mapped;
    }
  }

  /**
   * Streams `body` into `key` as a multipart upload. At most PARTS_IN_FLIGHT
   * parts upload while the next one fills, so memory stays flat whatever the
   * size. On any error or abort the upload is aborted before rethrowing.
   */
  async uploadStream(
    key: string,
    body: AsyncIterable<Buffer>,
    options: { signal?: AbortSignal; contentType?: string; onProgress?: (p: UploadProgress) => void } = {},
  ): Promise<{ sizeBytes: number; parts: number }> {
    let uploadId: string;
    try {
      const created = await this.client.send(
        new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ContentType: options.contentType ?? 'application/octet-stream' }),
      );
      uploadId = created.UploadId!;
    } catch (err) {
      throw toS3Error(err, `cannot start upload to s3://${this.bucket}/${key}`);
    }

    const parts: CompletedPart[] = [];
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    let bytesUploaded = 0;
    let sizeBytes = 0;
    let partNumber = 1;

    const sendPart = (number: number, data: Buffer) => {
      const p = this.client
        .send(new UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: number, Body: data }), {
          abortSignal: options.signal,
        })
        .then((r) => {
          parts.push({ PartNumber: number, ETag: r.ETag });
          bytesUploaded += data.length;
          options.onProgress?.({ uploadId, partsDone: parts.length, bytesUploaded });
        })
        .catch((err) => {
          failure ??= err;
        })
        .finally(() => {
          inFlight.delete(p);
          partBuffers.give(data);
        });
      inFlight.add(p);
    };

    try {
      let part = partBuffers.take(partSizeFor(partNumber));
      let filled = 0;
      for await (const chunk of body) {
        if (failure) throw failure;
        sizeBytes += chunk.length;
        for (let at = 0; at < chunk.length; ) {
          const n = chunk.copy(part, filled, at);
          at += n;
          filled += n;
          if (filled < part.length) continue;
          while (inFlight.size >= PARTS_IN_FLIGHT) await Promise.race(inFlight);
          if (failure) throw failure;
          sendPart(partNumber++, part);
          part = partBuffers.take(partSizeFor(partNumber));
          filled = 0;
        }
      }
      if (filled > 0 || partNumber === 1) sendPart(partNumber++, part.subarray(0, filled));
      await Promise.all(inFlight);
      if (failure) throw failure;
      parts.sort((a, b) => a.PartNumber! - b.PartNumber!);
      await this.client.send(
        new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } }),
      );
    } catch (err) {
      await Promise.allSettled(inFlight);
      await this.abortUpload(key, uploadId).catch(() => undefined);
      throw toS3Error(err, `upload to s3://${this.bucket}/${key} failed`);
    }
    // Each part's SHA-256 was checked by the server (signed payload); the whole object's size is checked here.
    await this.checkStoredSize(key, sizeBytes);
    return { sizeBytes, parts: parts.length };
  }

  /** IntegrityError unless the object at `key` holds exactly `expected` bytes. */
  async checkStoredSize(key: string, expected: number): Promise<void> {
    const stored = await this.head(key);
    if (stored?.size !== expected) {
      throw new IntegrityError(`s3://${this.bucket}/${key} holds ${stored ? `${stored.size} bytes` : 'nothing'} after an upload of ${expected} bytes`);
    }
  }
}
