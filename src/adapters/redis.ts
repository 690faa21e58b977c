/**
 * The only code that talks to Redis. Two ways to take a backup:
 *
 * - `snapshot`: the server's RDB through the replication protocol, as
 *   `redis-cli --rdb` does (AUTH, `REPLCONF capa eof`, `REPLCONF rdb-only 1`,
 *   `SYNC`), over a raw TCP or TLS socket and streamed with back-pressure: a
 *   point-in-time image of every database, made by the server's fork.
 * - `exportKeys`: a logical export of one database (SCAN, then DUMP, PTTL and
 *   TYPE per key, pipelined) into opsflow's key stream (format below), for
 *   managed Redis services that block SYNC. Not point-in-time: keys written
 *   during the scan may or may not be in it, each as it was when read.
 *
 * And two ways back: `restoreRdb` puts an RDB in place of a server's dump
 * file and shuts the server down for the caller, who manages the process, to
 * restart; `importKeys` RESTOREs a key stream into any Redis. `verifyRdb`
 * checks an RDB file with redis-check-rdb and counts its keys per database;
 * `startStreamedRdbCheck` does the same for one database as an RDB streams by.
 *
 * Errors are typed: a server that is down or loading is PeerUnavailable
 * (retry); bad credentials, a blocked command or a refused write are
 * PeerRejected (stop); data that does not check out is IntegrityError.
 * Passwords never reach a message (the URL's password is remembered as a
 * secret and every message goes through `redact`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { access, constants as fsConstants, open, rename, rm, stat } from 'node:fs/promises';
import net, { type Socket } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { crc32 } from 'node:zlib';
import { Redis, type RedisOptions } from 'ioredis';
import {
  ConflictError,
  IntegrityError,
  NotFoundError,
  OpsflowError,
  PeerRejectedError,
  PeerUnavailableError,
} from '../errors.ts';
import { redact, rememberSecret } from '../secrets.ts';
import { makeScratchDir } from '../scratch.ts';
import { startTool } from './process.ts';

// ---------------------------------------------------------------- targets

/** A Redis server: `redis://[[user]:password@]host[:port][/db]`, or `rediss://` for TLS. */
export interface RedisTarget {
  url: string;
}

export interface RedisEndpoint {
  host: string;
  port: number;
  db: number;
  tls: boolean;
  username?: string;
  password?: string;
  /** `host:port/db`, for messages (never the password). */
  label: string;
}

/** Parses a target's URL once and remembers its password as a secret. */
export function parseRedisUrl(url: string): RedisEndpoint {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    rememberSecret(url);
    throw new PeerRejectedError(`not a Redis URL: ${redact(url)}`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new PeerRejectedError(`not a Redis URL (redis:// or rediss://): ${redact(url)}`);
  rememberSecret(url);
  const password = u.password ? decodeURIComponent(u.password) : undefined;
  if (password) rememberSecret(password);
  const host = decodeURIComponent(u.hostname.replace(/^\[|\]$/g, '')) || '127.0.0.1';
  const port = u.port ? Number(u.port) : 6379;
  const path = u.pathname.replace(/^\//, '');
  const db = path === '' ? 0 : Number(path);
  if (!Number.isInteger(db) || db < 0) throw new PeerRejectedError(`the Redis URL's database must be a number (redis://host:port/3), got "${path}"`);
  return {
    host,
    port,
    db,
    tls: u.protocol === 'rediss:',
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password,
    label: `${host.includes(':') ? `[${host}]` : host}:${port}/${db}`,
  };
}

// ---------------------------------------------------------------- errors

/** Socket codes worth retrying: the server is down, restarting, or the network is. */
const TRANSIENT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ECONNABORTED']);
/** Replies that say "not now": loading the dataset, a busy script, a replica cut off from its master, a MIGRATE target not answering. */
const TRANSIENT_REPLY = /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|IOERR)\b/;
const AUTH_REPLY = /^(NOAUTH|WRONGPASS|NOPERM)\b|^ERR (invalid (username-)?password|AUTH |Client sent AUTH)/i;

export function toRedisError(err: unknown, what: string): Error {
  if (err instanceof OpsflowError || err instanceof TypeError || err instanceof RangeError) return err; // ours, or a bug
  const e = err as { code?: string; message?: string; name?: string };
  const text = redact(e.message ?? String(err));
  const message = `${what}: ${text}${e.code && !text.includes(e.code) ? ` (${e.code})` : ''}`;
  if (AUTH_REPLY.test(text)) return new PeerRejectedError(message);
  if (TRANSIENT_REPLY.test(text)) return new PeerUnavailableError(message);
  if (e.code && TRANSIENT_CODES.has(e.code)) return new PeerUnavailableError(message);
  // TLS: a certificate that does not verify will not verify on retry either.
  if (e.code && /CERT|SELF_SIGNED|ERR_TLS|ERR_SSL/.test(e.code)) return new PeerRejectedError(message);
  // Any other reply from the server (unknown command, READONLY, OOM, WRONGTYPE…) is its answer.
  if (e.name === 'ReplyError' || /^[A-Z]+ /.test(text)) return new PeerRejectedError(message);
  return new PeerUnavailableError(message);
}

function printableKey(key: Buffer): string {
  const s = key.toString('utf8');
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
}

// ---------------------------------------------------------------- commands (ioredis)

const CONNECT_TIMEOUT_MS = 5_000;

function clientOptions(ep: RedisEndpoint): RedisOptions {
  return {
    host: ep.host,
    port: ep.port,
    db: ep.db,
    username: ep.username,
    password: ep.password,
    tls: ep.tls ? { servername: net.isIP(ep.host) ? undefined : ep.host } : undefined,
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    // Fail instead of reconnecting and replaying: the activity layer decides on retries.
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  };
}

/** A connected client; connection and authentication failures typed. */
export async function connectRedis(target: RedisTarget | RedisEndpoint): Promise<Redis> {
  const ep = 'url' in target ? parseRedisUrl(target.url) : target;
  const client = new Redis(clientOptions(ep));
  // ioredis rejects connect() with a generic "Connection is closed."; the reason arrives as an event.
  let reason: unknown;
  client.on('error', (err) => {
    reason ??= err;
  });
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    throw toRedisError(reason ?? err, `cannot connect to Redis at ${ep.label}`);
  }
  return client;
}

async function withClient<T>(ep: RedisEndpoint, what: string, fn: (client: Redis) => Promise<T>): Promise<T> {
  const client = await connectRedis(ep);
  try {
    return await fn(client);
  } catch (err) {
    throw toRedisError(err, `${what} (${ep.label})`);
  } finally {
    client.disconnect();
  }
}

/** `db3:keys=10,expires=2,avg_ttl=0` lines of INFO keyspace, by database number. */
export function parseKeyspace(info: string): Record<number, { keys: number; expires: number }> {
  const out: Record<number, { keys: number; expires: number }> = {};
  for (const m of info.matchAll(/^db(\d+):keys=(\d+),expires=(\d+)/gm)) out[Number(m[1])] = { keys: Number(m[2]), expires: Number(m[3]) };
  return out;
}

export interface KeyspaceSummary {
  /** The URL's database. */
  db: number;
  /** DBSIZE of that database. */
  keys: number;
  /** Keys with a TTL (INFO keyspace). */
  expires: number;
  /** Keys by TYPE, from a SCAN (a live database may move under it); absent with `types: false`. */
  types?: Record<string, number>;
  /** Every non-empty database of the server (INFO keyspace): what a snapshot holds. */
  databases: Record<number, { keys: number; expires: number }>;
}

/** Counts for manifests and verification. `types: false` skips the SCAN (one pass over every key). */
export async function keyspaceSummary(target: RedisTarget, options: { types?: boolean } = {}): Promise<KeyspaceSummary> {
  const ep = parseRedisUrl(target.url);
  return withClient(ep, 'cannot summarize the keyspace', async (client) => {
    const keys = await client.dbsize();
    const databases = parseKeyspace(await client.info('keyspace'));
    const summary: KeyspaceSummary = { db: ep.db, keys, expires: databases[ep.db]?.expires ?? 0, databases };
    if (options.types === false) return summary;
    const types: Record<string, number> = {};
    let cursor = '0';
    do {
      const [next, page] = await client.scanBuffer(cursor, 'COUNT', 1000);
      cursor = next.toString();
      if (!page.length) continue;
      const p = client.pipeline();
      for (const key of page) p.type(key);
      for (const [err, type] of (await p.exec()) ?? []) {
        if (err) throw err;
        if (type !== 'none') types[type as string] = (types[type as string] ?? 0) + 1;
      }
    } while (cursor !== '0');
    summary.types = types;
    return summary;
  });
}

// ---------------------------------------------------------------- RDB checks

const RDB_HEADER = /^REDIS(\d{4})$/;
/** An RDB ends with the EOF opcode and, from version 5, an 8-byte CRC64. */
const RDB_EOF_OPCODE = 0xff;
const RDB_TRAILER = 9;

function lastBytes(previous: Buffer, chunk: Buffer, n: number): Buffer {
  if (chunk.length >= n) return Buffer.from(chunk.subarray(chunk.length - n));
  const joined = Buffer.concat([previous, chunk]);
  return joined.subarray(Math.max(0, joined.length - n));
}

/**
 * Watches an RDB go by: "REDIS" and a 4-digit version first, the EOF opcode
 * 9 bytes from the end. Deeper checks (the CRC64, every value) are the job of
 * `verifyRdb`.
 */
export class RdbCheck {
  bytes = 0;
  version?: number;
  private head: Buffer = Buffer.alloc(0);
  private tail: Buffer = Buffer.alloc(0);

  constructor(private readonly what: string) {}

  observe(chunk: Buffer): void {
    if (this.version === undefined) {
      this.head = Buffer.concat([this.head, chunk.subarray(0, 9 - this.head.length)]);
      if (this.head.length === 9) {
        const m = RDB_HEADER.exec(this.head.toString('latin1'));
        if (!m) throw new IntegrityError(`${this.what} is not an RDB file: it starts with ${JSON.stringify(this.head.toString('latin1'))}, not "REDIS" and a version`);
        this.version = Number(m[1]);
      }
    }
    this.bytes += chunk.length;
    this.tail = lastBytes(this.tail, chunk, RDB_TRAILER);
  }

  finish(): { rdbVersion: number; rawBytes: number } {
    if (this.version === undefined) throw new IntegrityError(`${this.what} is not an RDB file: only ${this.bytes} bytes`);
    if (this.version >= 5 && (this.bytes < 9 + RDB_TRAILER || this.tail[0] !== RDB_EOF_OPCODE)) {
      throw new IntegrityError(`${this.what} is truncated: ${this.bytes} bytes that do not end with the RDB end-of-file marker`);
    }
    return { rdbVersion: this.version, rawBytes: this.bytes };
  }
}

// ---------------------------------------------------------------- snapshot (replication protocol)

export interface SnapshotOptions {
  signal?: AbortSignal;
  /**
   * Announce `REPLCONF capa eof`, as redis-cli does (default true). A server
   * with `repl-diskless-sync yes` (the default from Redis 7) then streams the
   * RDB from its fork straight to the socket, never writing it to its own
   * disk, after waiting `repl-diskless-sync-delay` (default 5 s) for other
   * replicas to join. False: the server BGSAVEs to its disk and sends the file.
   */
  diskless?: boolean;
  /** Nothing from the server for this long (it sends a newline a second while preparing) = dead. Default 60 s. */
  idleTimeoutMs?: number;
  connectTimeoutMs?: number;
}

export interface SnapshotInfo {
  rawBytes: number;
  rdbVersion: number;
  /** How the server sent it: a file it wrote first (`$<length>`), or straight from its fork (`$EOF:<mark>`). */
  transfer: 'disk' | 'diskless';
  /** From SYNC to the first byte of the RDB: the server's fork, and for `disk` its whole BGSAVE. */
  preparedMs: number;
}

export interface Snapshot {
  /** The RDB's bytes; the connection opens when reading starts. */
  stream: AsyncIterable<Buffer>;
  /** Resolves once `stream` has been read to its end and checked; rejects with its error. */
  done: Promise<SnapshotInfo>;
}

const EOF_MARK_SIZE = 40;
const EMPTY: Buffer = Buffer.alloc(0);

/** RESP array of bulk strings: how a client sends a command. */
function resp(...args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a) : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** A socket read on demand (so TCP back-pressure reaches the server), with an idle timeout while waiting. */
class Wire {
  private pending = EMPTY;
  private readonly chunks: AsyncIterator<Buffer>;

  constructor(private readonly socket: Socket, private readonly idleMs: number, private readonly label: string) {
    this.chunks = socket[Symbol.asyncIterator]();
  }

  /** Buffered bytes first, then the next chunk; undefined when the server closed the connection. */
  async next(): Promise<Buffer | undefined> {
    if (this.pending.length) {
      const b = this.pending;
      this.pending = EMPTY;
      return b;
    }
    const timer = setTimeout(
      () => this.socket.destroy(new PeerUnavailableError(`Redis at ${this.label} sent nothing for ${Math.round(this.idleMs / 1000)} s`)),
      this.idleMs,
    );
    try {
      const r = await this.chunks.next();
      return r.done ? undefined : r.value;
    } finally {
      clearTimeout(timer);
    }
  }

  /** One reply line without its line end; '' for the newlines a master sends to keep a waiting replica alive. */
  async line(): Promise<string> {
    let acc = EMPTY;
    for (;;) {
      const b = await this.next();
      if (!b) throw new PeerUnavailableError(`Redis at ${this.label} closed the connection`);
      const i = b.indexOf(0x0a);
      if (i < 0) {
        acc = Buffer.concat([acc, b]);
        if (acc.length > 64 * 1024) throw new PeerRejectedError(`Redis at ${this.label} sent a reply line longer than 64 KiB: not a Redis server?`);
        continue;
      }
      if (i + 1 < b.length) this.pending = b.subarray(i + 1);
      return Buffer.concat([acc, b.subarray(0, i)]).toString('utf8').replace(/\r$/, '');
    }
  }
}

function openSocket(ep: RedisEndpoint, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = ep.tls
      ? tls.connect({ host: ep.host, port: ep.port, servername: net.isIP(ep.host) ? undefined : ep.host })
      : net.connect({ host: ep.host, port: ep.port });
    const timer = setTimeout(() => socket.destroy(Object.assign(new Error(`no connection after ${timeoutMs / 1000} s`), { code: 'ETIMEDOUT' })), timeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(toRedisError(err, `cannot connect to Redis at ${ep.label}`));
    };
    socket.once('error', onError);
    socket.once(ep.tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

function replyError(line: string, what: string): Error {
  return toRedisError(Object.assign(new Error(line.replace(/^-/, '')), { name: 'ReplyError' }), what);
}

/** SYNC's refusals: blocked (managed Redis, ACL) → use the logical mode; a replica without its master → later. */
function syncRefused(line: string, ep: RedisEndpoint): Error {
  const text = redact(line.replace(/^-/, ''));
  if (AUTH_REPLY.test(text) && !/^NOPERM/.test(text)) return new PeerRejectedError(`Redis at ${ep.label} refused SYNC: ${text}`);
  if (/^NOPERM|unknown command|not allowed|disabled|ERR unknown/i.test(text)) {
    return new PeerRejectedError(
      `Redis at ${ep.label} refused SYNC (${text}): the replication protocol is blocked there, as on most managed Redis services; use the logical mode (SCAN + DUMP, exportKeys) instead of a snapshot`,
    );
  }
  if (TRANSIENT_REPLY.test(text) || /Can't SYNC|not connected with my master/i.test(text)) return new PeerUnavailableError(`Redis at ${ep.label} cannot serve SYNC now: ${text}`);
  return new PeerRejectedError(`Redis at ${ep.label} refused SYNC: ${text}`);
}

async function* rdbChunks(ep: RedisEndpoint, options: SnapshotOptions, settle: (info: SnapshotInfo) => void): AsyncGenerator<Buffer> {
  const { signal } = options;
  signal?.throwIfAborted();
  const socket = await openSocket(ep, options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS);
  socket.on('error', () => undefined); // surfaced through the reads
  const onAbort = () => socket.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const wire = new Wire(socket, options.idleTimeoutMs ?? 60_000, ep.label);
    const ask = async (...args: string[]) => {
      socket.write(resp(...args));
      return wire.line();
    };
    if (ep.password !== undefined) {
      const r = await (ep.username ? ask('AUTH', ep.username, ep.password) : ask('AUTH', ep.password));
      if (r.startsWith('-')) throw replyError(r, `Redis at ${ep.label} refused authentication`);
    }
    // Both are optional to the server: an older one does not know rdb-only and
    // would go on with the replication stream after the RDB, which we do not read.
    for (const args of [...(options.diskless === false ? [] : [['REPLCONF', 'capa', 'eof']]), ['REPLCONF', 'rdb-only', '1']]) {
      const r = await ask(...args);
      if (r.startsWith('-') && AUTH_REPLY.test(r.slice(1)) && !/^-NOPERM/.test(r)) throw replyError(r, `Redis at ${ep.label} requires authentication`);
    }
    socket.write(resp('SYNC'));
    const syncAt = Date.now();
    let header = '';
    while (header === '') header = await wire.line();
    if (header.startsWith('-')) throw syncRefused(header, ep);
    const check = new RdbCheck(`the RDB from ${ep.label}`);
    let transfer: SnapshotInfo['transfer'];
    let preparedMs = 0;
    const observe = (chunk: Buffer) => {
      if (check.bytes === 0) preparedMs = Date.now() - syncAt;
      check.observe(chunk);
    };

    const eof = /^\$EOF:(.{40})/.exec(header);
    if (eof) {
      // Diskless: the length is unknown; the RDB is followed by a 40-byte mark
      // announced in the header. Each chunk is held back until the next one
      // shows it does not end in the mark (whole chunks, never copied: copying
      // each one cost as much CPU as the rest of the worker's work).
      transfer = 'diskless';
      const mark = Buffer.from(eof[1]!, 'latin1');
      const handOn = function* (piece: Buffer) {
        if (!piece.length) return;
        observe(piece);
        yield piece;
      };
      const endsInMark = (b: Buffer) => b.length >= EOF_MARK_SIZE && b.subarray(b.length - EOF_MARK_SIZE).equals(mark);
      let held = EMPTY; // everything not handed on yet: one chunk, or (rarely) small chunks joined
      for (;;) {
        const chunk = await wire.next();
        if (!chunk) throw new PeerUnavailableError(`Redis at ${ep.label} closed the connection after ${check.bytes + held.length} bytes of the RDB, before its end mark`);
        if (chunk.length < EOF_MARK_SIZE) {
          // The mark may start in what is held: join (small, rare) so it is always at the end of `held`.
          held = Buffer.concat([held, chunk]);
          if (!endsInMark(held)) continue;
          yield* handOn(held.subarray(0, held.length - EOF_MARK_SIZE));
          break;
        }
        if (endsInMark(chunk)) {
          yield* handOn(held);
          yield* handOn(chunk.subarray(0, chunk.length - EOF_MARK_SIZE));
          break;
        }
        yield* handOn(held);
        held = chunk;
      }
    } else {
      const m = /^\$(\d+)$/.exec(header);
      if (!m) throw new PeerRejectedError(`Redis at ${ep.label} answered SYNC with ${JSON.stringify(header.slice(0, 80))}, not an RDB transfer`);
      transfer = 'disk';
      const length = Number(m[1]);
      let remaining = length;
      while (remaining > 0) {
        const chunk = await wire.next();
        if (!chunk) throw new PeerUnavailableError(`Redis at ${ep.label} closed the connection after ${length - remaining} of the RDB's ${length} bytes`);
        const piece = chunk.length > remaining ? chunk.subarray(0, remaining) : chunk;
        remaining -= piece.length;
        observe(piece);
        yield piece;
      }
    }
    settle({ ...check.finish(), transfer, preparedMs });
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw toRedisError(err, `snapshot of Redis at ${ep.label}`);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    socket.destroy();
  }
}

/**
 * The server's RDB (every database), streamed through the replication
 * protocol like `redis-cli --rdb`. Memory stays flat: the socket is read only
 * as fast as `stream` is consumed, and TCP holds the server back. A consumer
 * stalled for longer than the server's `repl-timeout` (60 s) loses the
 * connection. SYNC refused (managed Redis) is PeerRejected: use `exportKeys`.
 */
export function snapshot(target: RedisTarget, options: SnapshotOptions = {}): Snapshot {
  const ep = parseRedisUrl(target.url);
  let resolve!: (info: SnapshotInfo) => void;
  let reject!: (err: unknown) => void;
  let settled = false;
  const done = new Promise<SnapshotInfo>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  done.catch(() => undefined);
  async function* stream(): AsyncGenerator<Buffer> {
    try {
      yield* rdbChunks(ep, options, (info) => {
        settled = true;
        resolve(info);
      });
    } catch (err) {
      settled = true;
      reject(err);
      throw err;
    } finally {
      if (!settled) reject(new Error(`the snapshot of ${ep.label} was not read to its end`));
    }
  }
  return { stream: stream(), done };
}

// ---------------------------------------------------------------- the key stream (logical mode)

/*
 * opsflow's Redis key stream, format version 1. Integers are big-endian.
 *
 *   header   8 bytes   magic "OFRKEYS1"
 *            u16       format version (1)
 *            u16       the source database number
 *            i64       export start, ms since the epoch
 *   record   u8        'K' (0x4B)
 *            u8        length of the type name, then the name as TYPE reports it ("string", "hash", "stream", a module's type…)
 *            i64       absolute expiry in ms since the epoch (client clock at export), -1 = none
 *            u32       key length, then the key's bytes
 *            u32       payload length, then the payload: the key's DUMP output, which
 *                      carries its own RDB version and CRC64 (RESTORE checks them)
 *   trailer  u8        'E' (0x45)
 *            u64       number of records
 *            u32       CRC-32 (zlib) of every byte before the trailer
 *
 * A stream that ends before its trailer, with a different count or CRC, or
 * with bytes after the trailer, is an IntegrityError. Records are streamed
 * through as they are read, so such an error comes after the records before
 * it were handed on (see `importKeys`).
 */
const KEYS_MAGIC = Buffer.from('OFRKEYS1', 'latin1');
const KEYS_FORMAT_VERSION = 1;
const TAG_RECORD = 0x4b;
const TAG_END = 0x45;
const HEADER_BYTES = 8 + 2 + 2 + 8;

export interface KeyRecord {
  key: Buffer;
  /** As TYPE reported it. */
  type: string;
  /** Absolute expiry, ms since the epoch; undefined = persistent. */
  expireAt?: number;
  /** DUMP's serialization of the value. */
  payload: Buffer;
}

export interface KeyStreamHeader {
  formatVersion: number;
  sourceDb: number;
  exportedAt: number;
}

export interface ScanStats {
  /** Records produced. */
  keys: number;
  /** Keys SCAN listed that were gone (deleted or expired) by the time of DUMP. */
  vanished: number;
  /** Records with an expiry. */
  expiring: number;
  payloadBytes: number;
  types: Record<string, number>;
}

/** Payload bytes a DUMP pipeline aims for: the batch shrinks for big values, so memory stays flat. */
const BATCH_BYTES = 8 * 1024 * 1024;

/**
 * Every key of the URL's database as a record: SCAN (COUNT `count`), then
 * TYPE, PTTL and DUMP per key in pipelines sized to about 8 MiB of payload.
 * SCAN may list a key twice (the server resized its table meanwhile): the
 * stream then holds it twice, which `importKeys` recognizes.
 */
export async function* scanKeys(
  target: RedisTarget,
  options: { signal?: AbortSignal; count?: number; stats?: ScanStats } = {},
): AsyncGenerator<KeyRecord> {
  const ep = parseRedisUrl(target.url);
  const count = options.count ?? 1000;
  const stats = options.stats ?? { keys: 0, vanished: 0, expiring: 0, payloadBytes: 0, types: {} };
  const client = await connectRedis(ep);
  try {
    let batch = 16; // grows (or shrinks) with the payload size seen
    let cursor = '0';
    do {
      options.signal?.throwIfAborted();
      const [next, keys] = await client.scanBuffer(cursor, 'COUNT', count);
      cursor = next.toString();
      for (let i = 0; i < keys.length; ) {
        const slice = keys.slice(i, i + batch);
        i += slice.length;
        const p = client.pipeline();
        for (const key of slice) {
          p.type(key);
          p.pttl(key);
          p.dumpBuffer(key);
        }
        const before = Date.now();
        const results = (await p.exec()) ?? [];
        let bytes = 0;
        for (let k = 0; k < slice.length; k++) {
          const [typeErr, type] = results[3 * k]!;
          const [ttlErr, pttl] = results[3 * k + 1]!;
          const [dumpErr, payload] = results[3 * k + 2]!;
          const err = typeErr ?? ttlErr ?? dumpErr;
          if (err) throw err;
          if (payload === null || pttl === -2 || type === 'none') {
            stats.vanished++;
            continue;
          }
          const record: KeyRecord = { key: slice[k]!, type: type as string, payload: payload as Buffer };
          if ((pttl as number) >= 0) {
            // Read before the pipeline left: the TTL can only come out a little short, never extended.
            record.expireAt = before + (pttl as number);
            stats.expiring++;
          }
          bytes += record.payload.length;
          stats.keys++;
          stats.payloadBytes += record.payload.length;
          stats.types[record.type] = (stats.types[record.type] ?? 0) + 1;
          yield record;
        }
        const perKey = Math.max(1, bytes / slice.length);
        batch = Math.max(1, Math.min(count, Math.floor(BATCH_BYTES / perKey), batch * 4));
      }
    } while (cursor !== '0');
  } catch (err) {
    if (options.signal?.aborted) throw options.signal.reason;
    throw toRedisError(err, `logical export of Redis at ${ep.label}`);
  } finally {
    client.disconnect();
  }
}

/** Chunks the stream is written in; a payload this big or bigger goes out on its own, uncopied. */
const FLUSH_BYTES = 64 * 1024;

/** Serializes records into the key stream format (see above), in chunks of about 64 KiB. */
export async function* encodeKeys(records: AsyncIterable<KeyRecord>, header: { sourceDb: number; exportedAt?: number }): AsyncGenerator<Buffer> {
  let crc = 0;
  let parts: Buffer[] = [];
  let size = 0;
  const push = (b: Buffer) => {
    crc = crc32(b, crc);
    parts.push(b);
    size += b.length;
  };
  const flush = () => {
    const out = parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
    parts = [];
    size = 0;
    return out;
  };
  const head = Buffer.alloc(HEADER_BYTES);
  KEYS_MAGIC.copy(head, 0);
  head.writeUInt16BE(KEYS_FORMAT_VERSION, 8);
  head.writeUInt16BE(header.sourceDb, 10);
  head.writeBigInt64BE(BigInt(header.exportedAt ?? Date.now()), 12);
  push(head);
  let n = 0n;
  for await (const r of records) {
    const type = Buffer.from(r.type, 'latin1');
    if (type.length > 255) throw new IntegrityError(`type name too long for key ${printableKey(r.key)}`);
    const pre = Buffer.allocUnsafe(1 + 1 + type.length + 8 + 4 + r.key.length + 4);
    let o = pre.writeUInt8(TAG_RECORD, 0);
    o = pre.writeUInt8(type.length, o);
    o += type.copy(pre, o);
    o = pre.writeBigInt64BE(BigInt(r.expireAt ?? -1), o);
    o = pre.writeUInt32BE(r.key.length, o);
    o += r.key.copy(pre, o);
    pre.writeUInt32BE(r.payload.length, o);
    push(pre);
    if (r.payload.length >= FLUSH_BYTES) {
      yield flush();
      crc = crc32(r.payload, crc);
      yield r.payload;
    } else {
      push(r.payload);
      if (size >= FLUSH_BYTES) yield flush();
    }
    n++;
  }
  const end = Buffer.alloc(1 + 8 + 4);
  end.writeUInt8(TAG_END, 0);
  end.writeBigUInt64BE(n, 1);
  end.writeUInt32BE(crc, 9);
  parts.push(end); // not part of its own CRC
  size += end.length;
  yield flush();
}

/** What a key stream can be read from: a file or S3 stream, a generator, an array of Buffers. */
export type ChunkSource = AsyncIterable<Buffer | Uint8Array | string> | Iterable<Buffer | Uint8Array | string>;

/** Reads exact byte counts from a stream of chunks, keeping a running CRC-32 of what it handed out. */
class ByteReader {
  private chunks: Buffer[] = [];
  private available = 0;
  private readonly source: AsyncIterator<Buffer | Uint8Array | string> | Iterator<Buffer | Uint8Array | string>;
  crc = 0;
  consumed = 0;

  constructor(source: ChunkSource) {
    this.source = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
  }

  /** Whether `n` bytes are (or became) available; false at the end of the stream. */
  async fill(n: number): Promise<boolean> {
    while (this.available < n) {
      const r = await this.source.next();
      if (r.done) return false;
      const v = r.value;
      const b = Buffer.isBuffer(v) ? v : typeof v === 'string' ? Buffer.from(v, 'latin1') : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      if (b.length) {
        this.chunks.push(b);
        this.available += b.length;
      }
    }
    return true;
  }

  /** `n` bytes; fill() first. */
  take(n: number, counted = true): Buffer {
    let out: Buffer;
    const first = this.chunks[0];
    if (n === 0) out = EMPTY;
    else if (first && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const pieces: Buffer[] = [];
      let left = n;
      while (left > 0) {
        const c = this.chunks[0]!;
        if (c.length <= left) {
          pieces.push(c);
          this.chunks.shift();
          left -= c.length;
        } else {
          pieces.push(c.subarray(0, left));
          this.chunks[0] = c.subarray(left);
          left = 0;
        }
      }
      out = Buffer.concat(pieces, n);
    }
    this.available -= n;
    this.consumed += n;
    if (counted) this.crc = crc32(out, this.crc);
    return out;
  }
}

/**
 * Parses a key stream into records, checking its header, trailer (count and
 * CRC-32) and that nothing follows. Fills `header` as soon as it is read.
 */
export async function* decodeKeys(source: ChunkSource, header: Partial<KeyStreamHeader> = {}): AsyncGenerator<KeyRecord> {
  const r = new ByteReader(source);
  let records = 0n;
  const truncated = () =>
    new IntegrityError(`the Redis key stream is truncated: it ends after ${records} records (${r.consumed} bytes) without its trailer`);
  if (!(await r.fill(HEADER_BYTES))) {
    if (r.consumed === 0 && !(await r.fill(1))) throw new IntegrityError('the Redis key stream is empty');
    throw truncated();
  }
  const head = r.take(HEADER_BYTES);
  if (!head.subarray(0, 8).equals(KEYS_MAGIC)) throw new IntegrityError(`not an opsflow Redis key stream (it starts with ${JSON.stringify(head.subarray(0, 8).toString('latin1'))})`);
  const version = head.readUInt16BE(8);
  if (version !== KEYS_FORMAT_VERSION) throw new IntegrityError(`Redis key stream format version ${version} is not supported (this opsflow reads ${KEYS_FORMAT_VERSION})`);
  header.formatVersion = version;
  header.sourceDb = head.readUInt16BE(10);
  header.exportedAt = Number(head.readBigInt64BE(12));

  for (;;) {
    if (!(await r.fill(1))) throw truncated();
    const crcBefore = r.crc;
    const tag = r.take(1, false)[0]!;
    if (tag === TAG_END) {
      if (!(await r.fill(8 + 4))) throw truncated();
      const count = r.take(8, false).readBigUInt64BE(0);
      const crc = r.take(4, false).readUInt32BE(0);
      if (count !== records) throw new IntegrityError(`the Redis key stream is corrupt: its trailer counts ${count} records, it holds ${records}`);
      if (crc !== crcBefore) throw new IntegrityError(`the Redis key stream is corrupt: CRC-32 ${crcBefore.toString(16)} of its ${records} records does not match the trailer's ${crc.toString(16)}`);
      if (await r.fill(1)) throw new IntegrityError(`the Redis key stream has bytes after its trailer (at offset ${r.consumed})`);
      return;
    }
    r.crc = crc32(Buffer.from([tag]), crcBefore);
    if (tag !== TAG_RECORD) throw new IntegrityError(`the Redis key stream is corrupt: unexpected byte 0x${tag.toString(16)} at offset ${r.consumed - 1}`);
    if (!(await r.fill(1))) throw truncated();
    const typeLen = r.take(1)[0]!;
    if (!(await r.fill(typeLen + 8 + 4))) throw truncated();
    const type = r.take(typeLen).toString('latin1');
    const expireAt = Number(r.take(8).readBigInt64BE(0));
    const keyLen = r.take(4).readUInt32BE(0);
    if (!(await r.fill(keyLen + 4))) throw truncated();
    const key = r.take(keyLen);
    const payloadLen = r.take(4).readUInt32BE(0);
    if (!(await r.fill(payloadLen))) throw truncated();
    const payload = r.take(payloadLen);
    records++;
    yield expireAt >= 0 ? { key, type, expireAt, payload } : { key, type, payload };
  }
}

export interface ExportInfo extends ScanStats {
  db: number;
  /** Bytes of the key stream. */
  streamBytes: number;
}

export interface KeyExport {
  /** The key stream; the connection opens when reading starts. */
  stream: AsyncIterable<Buffer>;
  /** Resolves once `stream` has been read to its end; rejects with its error. */
  done: Promise<ExportInfo>;
}

/**
 * The logical mode's export: every key of the URL's database through
 * `scanKeys`, serialized as a key stream. For servers that refuse SYNC
 * (managed Redis); not point-in-time (see the top of this file).
 */
export function exportKeys(target: RedisTarget, options: { signal?: AbortSignal; count?: number } = {}): KeyExport {
  const ep = parseRedisUrl(target.url);
  const stats: ScanStats = { keys: 0, vanished: 0, expiring: 0, payloadBytes: 0, types: {} };
  let resolve!: (info: ExportInfo) => void;
  let reject!: (err: unknown) => void;
  let settled = false;
  const done = new Promise<ExportInfo>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  done.catch(() => undefined);
  async function* stream(): AsyncGenerator<Buffer> {
    let streamBytes = 0;
    try {
      for await (const chunk of encodeKeys(scanKeys(target, { ...options, stats }), { sourceDb: ep.db })) {
        streamBytes += chunk.length;
        yield chunk;
      }
      settled = true;
      resolve({ ...stats, db: ep.db, streamBytes });
    } catch (err) {
      settled = true;
      reject(err);
      throw err;
    } finally {
      if (!settled) reject(new Error(`the key export of ${ep.label} was not read to its end`));
    }
  }
  return { stream: stream(), done };
}

/**
 * Copies every key of `source`'s database into `target`'s with MIGRATE: the
 * source server sends them to the target itself, so values and TTLs never
 * pass through this process. For a source opsflow owns (a scratch server
 * loaded with a snapshot): MIGRATE's connection has no TLS, so a `rediss://`
 * target is refused (copy through `exportKeys` + `importKeys` there). Keys
 * go in SCAN's batches, with REPLACE, so a key SCAN lists twice is harmless;
 * keys that expired meanwhile are skipped. Returns the keys sent.
 */
export async function migrateKeys(source: RedisTarget, target: RedisTarget, options: { signal?: AbortSignal; batch?: number; timeoutMs?: number } = {}): Promise<number> {
  const from = parseRedisUrl(source.url);
  const to = parseRedisUrl(target.url);
  if (to.tls) throw new PeerRejectedError(`MIGRATE cannot reach ${to.label} over TLS`);
  const auth = to.password === undefined ? [] : to.username ? ['AUTH2', to.username, to.password] : ['AUTH', to.password];
  return withClient(from, `MIGRATE from ${from.label} to ${to.label}`, async (client) => {
    let cursor = '0';
    let sent = 0;
    do {
      options.signal?.throwIfAborted();
      const [next, keys] = await client.scanBuffer(cursor, 'COUNT', options.batch ?? 1000);
      cursor = next.toString();
      if (keys.length === 0) continue;
      // "NOKEY": every key of the batch expired since SCAN listed it.
      await client.call('MIGRATE', to.host, String(to.port), '', String(to.db), String(options.timeoutMs ?? 60_000), 'COPY', 'REPLACE', ...auth, 'KEYS', ...keys);
      sent += keys.length;
    } while (cursor !== '0');
    return sent;
  });
}

export interface ImportOptions {
  /**
   * RESTORE … REPLACE: overwrite keys the target already has. Without it a
   * key that exists with another value is a ConflictError (one with the
   * same value, a key SCAN listed twice, is counted as a duplicate).
   */
  replace: boolean;
  signal?: AbortSignal;
}

export interface ImportInfo extends KeyStreamHeader {
  /** Records read from the stream. */
  records: number;
  restored: number;
  /** Records whose expiry passed between export and import: not restored. */
  expired: number;
  /** Records the target already held with the same value (SCAN's repeats). */
  duplicates: number;
  payloadBytes: number;
}

const IMPORT_BATCH_KEYS = 1000;

/**
 * Whether the target's existing `r.key` holds the record's value. DUMP
 * bytes are equal for most values; a hash-table set or hash may list its
 * members in another order after a RESTORE, so where they differ, the record
 * is restored under a temporary name and the two DUMPs of values this server
 * built from the same payload are compared. (A key the target built another
 * way, with the same members, can still compare unequal: a conflict, to be
 * settled with `replace`.)
 */
async function sameValue(client: Redis, r: KeyRecord): Promise<boolean> {
  const existing = await client.dumpBuffer(r.key);
  if (!existing) return false;
  if (existing.equals(r.payload)) return true;
  const scratchKey = Buffer.from(`opsflow:import-compare:${process.pid}:${Date.now()}:${Math.random().toString(16).slice(2)}`);
  try {
    await client.call('RESTORE', [scratchKey, 60_000, r.payload]);
    const rebuilt = await client.dumpBuffer(scratchKey);
    return rebuilt !== null && rebuilt.equals(existing);
  } finally {
    await client.del(scratchKey);
  }
}

/** The RDB version a DUMP payload was written with: its last 10 bytes are a u16 (little-endian) and the CRC64. */
function payloadRdbVersion(payload: Buffer): number | undefined {
  return payload.length >= 10 ? payload.readUInt16LE(payload.length - 10) : undefined;
}

/**
 * RESTOREs a key stream into the URL's database, pipelined (about 8 MiB or
 * 1000 keys per round trip, one batch in flight while the next is read).
 * TTLs are kept as absolute expiry times: a key whose time ran out since the
 * export is skipped and counted in `expired`.
 *
 * Not atomic: keys are restored as the stream is read. A stream that turns
 * out truncated or corrupt (IntegrityError) leaves the keys before the break
 * in the target. Import into an empty scratch database or server and swap it
 * in (or point clients at it) only once this resolves.
 */
export async function importKeys(target: RedisTarget, source: ChunkSource, options: ImportOptions): Promise<ImportInfo> {
  const ep = parseRedisUrl(target.url);
  const header: Partial<KeyStreamHeader> = {};
  const info = { records: 0, restored: 0, expired: 0, duplicates: 0, payloadBytes: 0 };
  const client = await connectRedis(ep);

  const restoreBatch = async (batch: KeyRecord[]) => {
    const p = client.pipeline();
    const sent: KeyRecord[] = [];
    const now = Date.now();
    for (const r of batch) {
      let ttl = 0;
      if (r.expireAt !== undefined) {
        ttl = r.expireAt - now;
        if (ttl <= 0) {
          info.expired++;
          continue;
        }
      }
      p.call('RESTORE', options.replace ? [r.key, ttl, r.payload, 'REPLACE'] : [r.key, ttl, r.payload]);
      sent.push(r);
    }
    if (!sent.length) return;
    const results = (await p.exec()) ?? [];
    const busy: KeyRecord[] = [];
    results.forEach(([err], i) => {
      const r = sent[i]!;
      if (!err) info.restored++;
      else if (!options.replace && /^BUSYKEY/.test(err.message)) busy.push(r);
      else if (/payload version or checksum/i.test(err.message)) {
        throw new IntegrityError(
          `RESTORE of key ${printableKey(r.key)} into ${ep.label} failed: ${redact(err.message)} (the payload is RDB version ${payloadRdbVersion(r.payload) ?? '?'}; a payload restores only into a Redis of the same or a newer RDB version, and only if intact)`,
        );
      } else throw toRedisError(err, `RESTORE of key ${printableKey(r.key)} into ${ep.label}`);
    });
    for (const r of busy) {
      if (await sameValue(client, r)) info.duplicates++;
      else throw new ConflictError(`key ${printableKey(r.key)} already exists in ${ep.label} with another value: import into an empty database, or with replace`);
    }
  };

  let inflight: Promise<void> | undefined;
  const flush = async (batch: KeyRecord[]) => {
    await inflight;
    inflight = restoreBatch(batch);
    inflight.catch(() => undefined);
  };
  try {
    let batch: KeyRecord[] = [];
    let bytes = 0;
    for await (const r of decodeKeys(source, header)) {
      options.signal?.throwIfAborted();
      info.records++;
      info.payloadBytes += r.payload.length;
      batch.push(r);
      bytes += r.payload.length;
      if (batch.length >= IMPORT_BATCH_KEYS || bytes >= BATCH_BYTES) {
        await flush(batch);
        batch = [];
        bytes = 0;
      }
    }
    if (batch.length) await flush(batch);
    await inflight;
    return { ...(header as KeyStreamHeader), ...info };
  } catch (err) {
    await inflight?.catch(() => undefined);
    if (options.signal?.aborted) throw options.signal.reason;
    if (err instanceof IntegrityError && /key stream/.test(err.message)) {
      throw new IntegrityError(
        `${err.message}; ${info.restored} keys were already restored into ${ep.label}, which is now incomplete (import into a scratch database and swap it in only after success)`,
      );
    }
    throw toRedisError(err, `import into Redis at ${ep.label}`);
  } finally {
    client.disconnect();
  }
}

/** Reads a key stream to its end without restoring it: header, counts, and the same checks as an import. */
export async function inspectKeys(source: ChunkSource): Promise<KeyStreamHeader & { records: number; payloadBytes: number; expiring: number; types: Record<string, number> }> {
  const header: Partial<KeyStreamHeader> = {};
  const out = { records: 0, payloadBytes: 0, expiring: 0, types: {} as Record<string, number> };
  for await (const r of decodeKeys(source, header)) {
    out.records++;
    out.payloadBytes += r.payload.length;
    if (r.expireAt !== undefined) out.expiring++;
    out.types[r.type] = (out.types[r.type] ?? 0) + 1;
  }
  return { ...(header as KeyStreamHeader), ...out };
}

// ---------------------------------------------------------------- scratch servers and RDB verification

export interface ScratchRedis {
  /** redis://127.0.0.1:<port>/0 */
  url: string;
  port: number;
  dir: string;
  child: ChildProcess;
  /** redis-server's log (the last 16 KiB). */
  output(): string;
  /** Stops it without saving (the server runs with `save ""`, and is killed if it lingers). */
  stop(): Promise<void>;
}

export interface ScratchOptions {
  /** Start on this RDB (read only: the server never saves). Default: an empty server in a temporary directory. */
  rdbFile?: string;
  /** More redis-server arguments (`--requirepass`, `--rename-command`…). */
  args?: string[];
  /** The redis-server binary; default from PATH. */
  redisServer?: string;
  /** Loading a large RDB takes a while; default 10 minutes. */
  startTimeoutMs?: number;
}

const scratchChildren = new Set<ChildProcess>();
let scratchHooked = false;

async function freeLoopbackPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((res, rej) => {
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => res());
  });
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((res) => srv.close(res));
  return port;
}

function loadFailure(output: string, what: string): Error {
  const tail = output.trimEnd().split('\n').slice(-8).join('\n');
  const version = /Can't handle RDB format version (\d+)/.exec(output);
  if (version) return new PeerRejectedError(`this redis-server cannot read ${what}: it is RDB version ${version[1]}, from a newer Redis; verify with a redis-server at least as new as the source`);
  if (/RDB|rdb|Short read|Unexpected EOF|checksum|Bad file format|Unrecoverable error/.test(tail)) return new IntegrityError(`redis-server could not load ${what}:\n${redact(tail)}`);
  return new PeerUnavailableError(`redis-server stopped while starting on ${what}:\n${redact(tail)}`);
}

/**
 * A throwaway redis-server on a free loopback port, optionally loading an
 * RDB: for verifying a snapshot, or as the empty target of an import.
 */
export async function startScratchRedis(options: ScratchOptions = {}): Promise<ScratchRedis> {
  const ownDir = options.rdbFile ? undefined : await makeScratchDir('redis');
  const dir = options.rdbFile ? dirname(options.rdbFile) : ownDir!;
  const what = options.rdbFile ?? 'an empty dataset';
  for (let attempt = 1; ; attempt++) {
    const port = await freeLoopbackPort();
    const args = [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--logfile', '', '--loglevel', 'notice',
      '--dir', dir, '--dbfilename', options.rdbFile ? basename(options.rdbFile) : 'dump.rdb',
      ...(options.args ?? []),
    ];
    const child = spawn(options.redisServer ?? 'redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    if (!scratchHooked) {
      scratchHooked = true;
      process.on('exit', () => {
        for (const c of scratchChildren) c.kill('SIGKILL');
      });
    }
    scratchChildren.add(child);
    let output = '';
    let ready = false;
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-16 * 1024);
      ready ||= /Ready to accept connections/.test(output);
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    let spawnError: Error | undefined;
    child.on('error', (err) => {
      spawnError = err;
    });
    const exited = new Promise<void>((res) => child.once('close', () => res()));
    exited.then(() => scratchChildren.delete(child));
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null && !spawnError) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      if (ownDir) await rm(ownDir, { recursive: true, force: true });
    };
    const url = `redis://127.0.0.1:${port}/0`;
    const deadline = Date.now() + (options.startTimeoutMs ?? 600_000);
    for (;;) {
      if (spawnError) {
        await stop();
        throw new PeerUnavailableError(`redis-server could not start: ${spawnError.message}`);
      }
      if (child.exitCode !== null || child.signalCode !== null) {
        if (/Address already in use/.test(output) && attempt < 3) break; // lost the port race: another port
        await stop();
        throw loadFailure(output, what);
      }
      if (Date.now() > deadline) {
        await stop();
        throw new PeerUnavailableError(`redis-server on ${what} was not ready within ${(options.startTimeoutMs ?? 600_000) / 1000} s`);
      }
      // Ready once our own process says so, after loading. Not a PING on the
      // port: when another redis-server won the port race, it would answer.
      if (ready) return { url, port, dir, child, output: () => output, stop };
      await sleep(100);
    }
    await exited;
  }
}

export interface RdbVerification {
  rdbVersion: number;
  bytes: number;
  /** Keys in all databases. */
  keys: number;
  /**
   * Per database, as the file holds them (its RESIZEDB records): `expires`
   * of the `keys` have a TTL, and some may have run out by the time the file
   * is loaded, which then drops them. A streamed check counts only the
   * database it was asked for.
   */
  databases: Record<number, { keys: number; expires: number }>;
  checkMs: number;
}

async function readRdbEnds(file: string): Promise<{ rdbVersion: number; bytes: number }> {
  const fh = await open(file, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new NotFoundError(`cannot read ${file} (${err.code ?? err.message})`);
  });
  try {
    const { size } = await fh.stat();
    const head = Buffer.alloc(Math.min(9, size));
    await fh.read(head, 0, head.length, 0);
    const tail = Buffer.alloc(Math.min(RDB_TRAILER, size));
    await fh.read(tail, 0, tail.length, size - tail.length);
    // The check sees the first bytes, skips the middle (it only counts it), then the last.
    const check = new RdbCheck(file);
    check.observe(head);
    check.bytes = size - tail.length;
    check.observe(tail);
    return (({ rdbVersion, rawBytes }) => ({ rdbVersion, bytes: rawBytes }))(check.finish());
  } finally {
    await fh.close();
  }
}

/**
 * Reads an RDB length field (2-bit tag: 6-bit, 14-bit, 32-bit or 64-bit
 * big-endian) at `at`; undefined for another encoding or one cut off by the
 * end of `buf`.
 */
function rdbLength(buf: Buffer, at: number): { value: number; next: number } | undefined {
  const first = buf[at];
  if (first === undefined) return undefined;
  const size = first >> 6 === 0 ? 1 : first >> 6 === 1 ? 2 : first === 0x80 ? 5 : first === 0x81 ? 9 : 0;
  if (size === 0 || at + size > buf.length) return undefined;
  if (size === 1) return { value: first & 0x3f, next: at + 1 };
  if (size === 2) return { value: ((first & 0x3f) << 8) | buf[at + 1]!, next: at + 2 };
  if (size === 5) return { value: buf.readUInt32BE(at + 1), next: at + 5 };
  return { value: Number(buf.readBigUInt64BE(at + 1)), next: at + 9 };
}

/** `n` as an RDB length field (the shortest form, as Redis writes a database number). */
function rdbLengthBytes(n: number): Buffer {
  if (n < 0x40) return Buffer.from([n]);
  if (n < 0x4000) return Buffer.from([0x40 | (n >> 8), n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = 0x80;
  b.writeUInt32BE(n, 1);
  return b;
}

const RDB_OPCODE_SELECTDB = 0xfe;
const RDB_OPCODE_RESIZEDB = 0xfb;
/** The longest RESIZEDB record: the opcode and two lengths of up to 9 bytes. */
const RESIZEDB_RECORD_MAX = 19;

/** The counts in the RESIZEDB record that `record` starts with; undefined if it is not one. */
function parseResizeDb(record: Buffer): { keys: number; expires: number } | undefined {
  if (record[0] !== RDB_OPCODE_RESIZEDB) return undefined;
  const keys = rdbLength(record, 1);
  const expires = keys && rdbLength(record, keys.next);
  return expires && { keys: keys.value, expires: expires.value };
}

/**
 * The keys of each database from the RESIZEDB record (db size, expires size)
 * that Redis writes right after each SELECTDB. `selects` maps a database to
 * the file offset just past its SELECTDB; undefined when a record is missing
 * (an RDB older than version 7, or from another writer).
 */
async function resizeDbCounts(file: string, selects: Map<number, number>): Promise<RdbVerification['databases'] | undefined> {
  const fh = await open(file, 'r');
  try {
    const databases: RdbVerification['databases'] = {};
    for (const [db, offset] of selects) {
      const buf = Buffer.alloc(RESIZEDB_RECORD_MAX);
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
      const counts = parseResizeDb(buf.subarray(0, bytesRead));
      if (!counts) return undefined;
      databases[db] = counts;
    }
    return databases;
  } finally {
    await fh.close();
  }
}

/**
 * One database's RESIZEDB record, found in an RDB as it streams by, without
 * parsing the RDB. Before a database's keys Redis writes SELECTDB, the
 * database's number and RESIZEDB with its key and expire counts. Every place
 * where those bytes appear is kept, by the offset of its RESIZEDB opcode:
 * redis-check-rdb prints that offset as "Selecting DB ID", which later picks
 * the real one. A value holds the same three bytes by chance about once per
 * 16 MiB of random data, so few are kept; past MAX_CANDIDATES (crafted data)
 * no more are, and the count is then missing rather than wrong.
 */
export class ResizeDbFinder {
  static readonly MAX_CANDIDATES = 10_000;
  private readonly needle: Buffer;
  /** Bytes seen so far. */
  private bytes = 0;
  /** The stream's last bytes, too few to hold the needle: where one may start that ends in the next chunk. */
  private tail: Buffer = Buffer.alloc(0);
  /** Candidate records by the offset of their RESIZEDB opcode. */
  private readonly records = new Map<number, Buffer>();
  /** Candidates the stream had not yet given all RESIZEDB_RECORD_MAX bytes of. */
  private unfinished: number[] = [];
  overflowed = false;

  constructor(readonly db: number) {
    this.needle = Buffer.concat([Buffer.from([RDB_OPCODE_SELECTDB]), rdbLengthBytes(db), Buffer.from([RDB_OPCODE_RESIZEDB])]);
  }

  observe(chunk: Buffer): void {
    this.unfinished = this.unfinished.filter((at) => {
      const record = this.records.get(at)!;
      const more = chunk.subarray(0, RESIZEDB_RECORD_MAX - record.length);
      this.records.set(at, Buffer.concat([record, more]));
      return record.length + more.length < RESIZEDB_RECORD_MAX;
    });
    // A needle that starts in the tail and ends in this chunk.
    const across = Buffer.concat([this.tail, chunk.subarray(0, this.needle.length - 1)]);
    const acrossAt = this.bytes - this.tail.length;
    for (let i = across.indexOf(this.needle); i >= 0 && i < this.tail.length; i = across.indexOf(this.needle, i + 1)) {
      this.keep(acrossAt + i + this.needle.length - 1, chunk);
    }
    for (let i = chunk.indexOf(this.needle); i >= 0; i = chunk.indexOf(this.needle, i + 1)) {
      this.keep(this.bytes + i + this.needle.length - 1, chunk);
    }
    this.bytes += chunk.length;
    this.tail = lastBytes(this.tail, chunk, this.needle.length - 1);
  }

  /** The counts of the RESIZEDB record at `offset` of the stream, if one was found there. */
  countsAt(offset: number): { keys: number; expires: number } | undefined {
    const record = this.records.get(offset);
    return record && parseResizeDb(record);
  }

  /** A candidate whose opcode is at stream offset `at`, inside `chunk` (which starts at `this.bytes`). */
  private keep(at: number, chunk: Buffer): void {
    if (this.records.size >= ResizeDbFinder.MAX_CANDIDATES) {
      this.overflowed = true;
      return;
    }
    const from = at - this.bytes;
    const record = Buffer.from(chunk.subarray(from, from + RESIZEDB_RECORD_MAX));
    this.records.set(at, record);
    if (record.length < RESIZEDB_RECORD_MAX) this.unfinished.push(at);
  }
}

/** Opcodes Redis 7 writes before the first database: auxiliary fields and function libraries. */
const RDB_OPCODE_AUX = 0xfa;
const RDB_OPCODE_FUNCTION2 = 0xf5;
/** The opening is at most this long before it is given up on (function libraries can be big). */
const RDB_OPENING_MAX = 1 << 20;

/** Where a field of the opening ends; 'cut': past the bytes so far; 'unknown': an encoding Redis does not write there. */
type FieldEnd = { next: number } | 'cut' | 'unknown';

/** The end of the length field at `at`, with its value. */
function lengthField(buf: Buffer, at: number): { next: number; value: number } | Exclude<FieldEnd, { next: number }> {
  if (at >= buf.length) return 'cut';
  const first = buf[at]!;
  if (first >> 6 === 3 || (first >> 6 === 2 && first !== 0x80 && first !== 0x81)) return 'unknown';
  return rdbLength(buf, at) ?? 'cut';
}

/** The end of the RDB string at `at`: length-prefixed, an integer (1, 2 or 4 bytes), or LZF-compressed. */
function stringField(buf: Buffer, at: number): FieldEnd {
  if (at >= buf.length) return 'cut';
  const first = buf[at]!;
  let next: number;
  if (first >> 6 === 3) {
    const encoding = first & 0x3f;
    if (encoding <= 2) next = at + 1 + (1 << encoding);
    else if (encoding === 3) {
      const compressed = lengthField(buf, at + 1);
      if (typeof compressed === 'string') return compressed;
      const uncompressed = lengthField(buf, compressed.next);
      if (typeof uncompressed === 'string') return uncompressed;
      next = uncompressed.next + compressed.value;
    } else return 'unknown';
  } else {
    const length = lengthField(buf, at);
    if (typeof length === 'string') return length;
    next = length.next + length.value;
  }
  return next > buf.length ? 'cut' : { next };
}

type Opening = { db: number; keys: number; expires: number } | 'empty' | 'unknown';

/** The RDB's opening, read exactly up to its first database's RESIZEDB record. */
function parseOpening(buf: Buffer): Opening | 'cut' {
  if (buf.length < 9) return 'cut';
  let at = 9; // "REDIS" and the version: RdbCheck reads them
  for (;;) {
    if (at >= buf.length) return 'cut';
    const opcode = buf[at]!;
    if (opcode === RDB_OPCODE_AUX || opcode === RDB_OPCODE_FUNCTION2) {
      let field = stringField(buf, at + 1);
      if (opcode === RDB_OPCODE_AUX && typeof field !== 'string') field = stringField(buf, field.next);
      if (typeof field === 'string') return field;
      at = field.next;
    } else if (opcode === RDB_OPCODE_SELECTDB) {
      const db = lengthField(buf, at + 1);
      if (typeof db === 'string') return db;
      if (db.next >= buf.length) return 'cut';
      if (buf[db.next] !== RDB_OPCODE_RESIZEDB) return 'unknown'; // an RDB older than version 7
      const keys = lengthField(buf, db.next + 1);
      if (typeof keys === 'string') return keys;
      const expires = lengthField(buf, keys.next);
      if (typeof expires === 'string') return expires;
      return { db: db.value, keys: keys.value, expires: expires.value };
    } else if (opcode === RDB_EOF_OPCODE) return 'empty';
    else return 'unknown'; // module data, or a writer other than Redis
  }
}

/**
 * The key counts of an RDB's databases as far as its opening tells them, read
 * as it streams by. Redis writes the databases in order, each opened by
 * SELECTDB and a RESIZEDB record with its key and expire counts (the numbers
 * of records that follow), after a few auxiliary fields and any function
 * libraries. So the first database's record gives its counts exactly, and
 * every lower-numbered database is empty. A higher-numbered one needs the
 * whole RDB read (redis-check-rdb); so does an opening this does not know
 * (module data, an RDB older than Redis 3.2).
 */
export class RdbOpening {
  private head: Buffer = EMPTY;
  private outcome?: Opening;

  observe(chunk: Buffer): void {
    if (this.outcome) return;
    this.head = this.head.length ? Buffer.concat([this.head, chunk]) : chunk;
    const parsed = parseOpening(this.head);
    if (parsed !== 'cut') this.outcome = parsed;
    else if (this.head.length > RDB_OPENING_MAX) this.outcome = 'unknown';
    if (this.outcome) this.head = EMPTY;
  }

  /** Keys and expires of database `db`; undefined while (or if) the opening does not tell. */
  countsOf(db: number): { keys: number; expires: number } | undefined {
    const o = this.outcome;
    if (o === undefined || o === 'unknown') return undefined;
    if (o === 'empty' || db < o.db) return { keys: 0, expires: 0 };
    return db === o.db ? { keys: o.keys, expires: o.expires } : undefined;
  }

  /** True once the opening has been read, or given up on: later chunks change nothing. */
  get settled(): boolean {
    return this.outcome !== undefined;
  }
}

/** What `redis-check-rdb` printed: its verdict, the SELECTDB offsets, and the keys and expires it read. */
function parseCheckOutput(output: string, what: string): { selects: Map<number, number>; keys: number; expires: number } {
  const version = /Can't handle RDB format version (\d+)/.exec(output);
  if (version) throw new PeerRejectedError(`this redis-check-rdb cannot read ${what}: it is RDB version ${version[1]}, from a newer Redis; check it with redis-check-rdb at least as new as the source`);
  // It reports a bad CRC64 this way yet exits 0: the text is the verdict, not the exit code.
  const error = output.indexOf('--- RDB ERROR DETECTED ---');
  if (error >= 0) {
    const detail = output.slice(error).split('\n').slice(1).filter((l) => !l.startsWith('[info]')).join('\n').trim();
    throw new IntegrityError(`${what} is damaged (redis-check-rdb):\n${redact(detail)}`);
  }
  const keys = /^\[info\] (\d+) keys read$/m.exec(output);
  const expires = /^\[info\] (\d+) expires$/m.exec(output);
  if (!/RDB looks OK/.test(output) || !keys || !expires) throw new IntegrityError(`redis-check-rdb gave no verdict on ${what}:\n${redact(output.trim().split('\n').slice(-8).join('\n'))}`);
  const selects = new Map<number, number>();
  for (const m of output.matchAll(/^\[offset (\d+)\] Selecting DB ID (\d+)$/gm)) selects.set(Number(m[2]), Number(m[1]));
  return { selects, keys: Number(keys[1]), expires: Number(expires[1]) };
}

/** Keys per database by loading the file into a throwaway redis-server: for an RDB without RESIZEDB records. */
async function countKeysByLoading(rdbFile: string, options: { redisServer?: string; startTimeoutMs?: number }): Promise<RdbVerification['databases']> {
  const scratch = await startScratchRedis({ rdbFile, redisServer: options.redisServer, startTimeoutMs: options.startTimeoutMs });
  try {
    return await withClient(parseRedisUrl(scratch.url), 'cannot read the keyspace of the scratch server', async (c) => parseKeyspace(await c.info('keyspace')));
  } finally {
    await scratch.stop();
  }
}

export interface RdbCheckOptions {
  /** For an RDB without RESIZEDB records, whose keys are counted by loading it. */
  redisServer?: string;
  redisCheckRdb?: string;
  startTimeoutMs?: number;
}

/**
 * `redis-check-rdb` over the RDB at `path`, or on its stdin: its CRC64, and
 * every value parsed and let go one at a time, so memory stays flat however
 * big the data (a redis-server loading it would hold the whole dataset).
 * `verdict` is what it printed, parsed; it throws for a damaged RDB or a
 * check that never ran.
 */
function runRdbCheck(path: string | 'stdin', what: string, options: RdbCheckOptions) {
  const bin = options.redisCheckRdb ?? 'redis-check-rdb';
  // Node gives a child a socket for its stdin, which redis-check-rdb cannot open as /dev/stdin: cat
  // hands the bytes on through a pipe. Its blocking writes also suit the check's 4 KiB reads, which
  // would cost this process a wake-up and a write each.
  const [command, args] = path === 'stdin' ? ['sh', ['-c', 'cat | "$0" /dev/stdin', bin]] : [bin, [path]];
  const tool = startTool(command, args, {
    stdio: [path === 'stdin' ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    keepOutput: true,
    onFailure: (message) => new IntegrityError(message),
  });
  const output = (async () => {
    let text = '';
    for await (const chunk of tool.output!) text += chunk.toString('utf8');
    return text;
  })();
  async function verdict() {
    const text = await output;
    const exit = await tool.done.then(() => undefined, (err: Error) => err);
    if (exit && !text) throw exit; // it never ran
    // The printed verdict before the exit code: it says more (and a bad CRC exits 0).
    const parsed = parseCheckOutput(text, what);
    if (exit) throw exit;
    return parsed;
  }
  return { child: tool.child, verdict };
}

/** Deep check of a whole RDB file (`runRdbCheck`), with its keys per database. The file is only read. */
export async function verifyRdb(rdbFile: string, options: RdbCheckOptions = {}): Promise<RdbVerification> {
  const started = Date.now();
  // The file's ends first: clearer for a cut file or another kind.
  const ends = await readRdbEnds(rdbFile);
  const parsed = await runRdbCheck(rdbFile, rdbFile, options).verdict();
  const counted = await resizeDbCounts(rdbFile, parsed.selects);
  const databases = counted ?? (await countKeysByLoading(rdbFile, options));
  const keys = Object.values(databases).reduce((n, d) => n + d.keys, 0);
  if (counted && keys !== parsed.keys) {
    throw new IntegrityError(`${rdbFile}: its RESIZEDB records count ${keys} keys, redis-check-rdb read ${parsed.keys}`);
  }
  return { ...ends, keys, databases, checkMs: Date.now() - started };
}

export interface StreamedRdbCheck {
  /** The RDB's next bytes; resolves when the check can take more. */
  write(chunk: Buffer): Promise<void>;
  /** After the last byte. */
  end(): void;
  /** Stops the check (the RDB will not be complete). */
  cancel(): void;
  /** The verdict, with the counts of the database asked for, once the check has read everything. */
  result(): Promise<RdbVerification>;
}

/**
 * Deep check (`runRdbCheck`) of an RDB as it streams by, so that a backup's
 * check runs during its upload, in flat memory and with nothing written to
 * disk. The RDB's ends and `db`'s RESIZEDB record are picked from the bytes
 * on the way.
 */
export function startStreamedRdbCheck(db: number, options: RdbCheckOptions = {}): StreamedRdbCheck {
  const started = Date.now();
  const what = 'the streamed RDB';
  const check = runRdbCheck('stdin', what, options);
  const input = check.child.stdin!;
  // A check that stops early (it found damage) closes its stdin: its verdict tells, not the writer's EPIPE.
  input.on('error', () => undefined);
  const ends = new RdbCheck(what);
  const finder = new ResizeDbFinder(db);
  const open = () => !input.destroyed && !input.writableEnded;
  return {
    write(chunk) {
      ends.observe(chunk);
      finder.observe(chunk);
      if (!open() || input.write(chunk)) return Promise.resolve();
      return new Promise((resolve) => {
        const ready = () => {
          input.off('drain', ready).off('close', ready);
          resolve();
        };
        input.on('drain', ready).on('close', ready);
      });
    },
    end() {
      if (open()) input.end();
    },
    cancel() {
      input.destroy(); // cat, then the check, see the end of their input and exit
      check.child.kill('SIGKILL');
    },
    async result() {
      const parsed = await check.verdict();
      const { rdbVersion, rawBytes } = ends.finish();
      const databases: RdbVerification['databases'] = {};
      const offset = parsed.selects.get(db);
      if (parsed.selects.size === 1 && offset !== undefined) databases[db] = { keys: parsed.keys, expires: parsed.expires };
      else if (offset !== undefined) {
        const counts = finder.countsAt(offset);
        if (!counts) {
          const why = finder.overflowed ? `its values hold more than ${ResizeDbFinder.MAX_CANDIDATES} look-alikes of the record` : 'it has no RESIZEDB record (a Redis older than 3.2)';
          throw new IntegrityError(`${what} holds ${parsed.selects.size} databases and the key count of db ${db} cannot be read from it: ${why}`);
        }
        if (counts.keys > parsed.keys) throw new IntegrityError(`${what}: its RESIZEDB record counts ${counts.keys} keys in db ${db}, redis-check-rdb read ${parsed.keys} in all`);
        databases[db] = counts;
      }
      return { rdbVersion, bytes: rawBytes, keys: parsed.keys, databases, checkMs: Date.now() - started };
    },
  };
}

// ---------------------------------------------------------------- RDB restore (a server opsflow manages)

export interface RdbRestoreOptions {
  /**
   * The server's data directory as this process sees it (a shared volume).
   * Default: the server's own `CONFIG GET dir`, right when opsflow runs on
   * the server's host.
   */
  dataDir?: string;
  /**
   * Check the new RDB (`verifyRdb`: CRC64 and every value) before swapping
   * it in (default true).
   */
  verify?: boolean;
  redisServer?: string;
  signal?: AbortSignal;
  /** How long the server may take to exit after SHUTDOWN (default 60 s). */
  stopTimeoutMs?: number;
}

export interface RdbRestoreResult {
  /** Where the restored RDB now is: the server's `dir`/`dbfilename`. */
  rdbPath: string;
  /** The dump file it replaced, kept for a rollback. */
  previousPath?: string;
  rawBytes: number;
  rdbVersion: number;
  verified?: RdbVerification;
  /** `stopped`: start the server again now. `restarted`: its supervisor already did, on the new file. */
  server: 'stopped' | 'restarted';
}

async function configValue(client: Redis, name: string, ep: RedisEndpoint): Promise<string> {
  let r: unknown;
  try {
    r = await client.config('GET', name);
  } catch (err) {
    const mapped = toRedisError(err, `CONFIG GET ${name} on ${ep.label}`);
    if (mapped instanceof PeerRejectedError && !AUTH_REPLY.test(errorText(err))) {
      throw new PeerRejectedError(`${mapped.message}: CONFIG is blocked (managed Redis?), so opsflow cannot manage this server's RDB; restore with importKeys`);
    }
    throw mapped;
  }
  const pair = r as string[];
  if (pair.length < 2) throw new PeerRejectedError(`Redis at ${ep.label} has no "${name}" setting`);
  return pair[1]!;
}

function errorText(err: unknown): string {
  return (err as { message?: string }).message ?? String(err);
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The server's run_id, or undefined when nothing listens (any other failure counts as still there). */
async function runIdOf(ep: RedisEndpoint): Promise<string | undefined | 'unknown'> {
  const client = new Redis({ ...clientOptions(ep), enableReadyCheck: false });
  let reason: unknown;
  client.on('error', (err) => {
    reason ??= err;
  });
  try {
    await client.connect();
    const info = await client.info('server');
    return /^run_id:(\w+)/m.exec(info)?.[1] ?? 'unknown';
  } catch (err) {
    return (reason as { code?: string } | undefined)?.code === 'ECONNREFUSED' || (err as { code?: string }).code === 'ECONNREFUSED' ? undefined : 'unknown';
  } finally {
    client.disconnect();
  }
}

/**
 * Restores an RDB into a server whose process opsflow (or its caller)
 * manages, on the same host or with its data directory mounted:
 *
 * 1. reads the server's `dir`, `dbfilename` and `appendonly` (CONFIG GET; a
 *    server with appendonly yes would load its AOF at start, not the RDB:
 *    ConflictError);
 * 2. streams `source` to a temporary file beside the dump file, checking the
 *    RDB's header and end, fsyncs it, and (default) loads it into a
 *    throwaway redis-server to check it through and count its keys;
 * 3. turns the server's snapshotting off (`CONFIG SET save ""`), waits for
 *    a background save in progress, moves the current dump file aside
 *    (`<dbfilename>.opsflow-previous`) and renames the new one into place;
 * 4. `SHUTDOWN NOSAVE`, and waits until the server is gone (or a supervisor
 *    has already restarted it), then checks the file is still the one placed.
 *
 * The caller then starts the server (unless `server` is `restarted`) and
 * compares `keyspaceSummary` with the backup's manifest. The data written
 * between the snapshot and the restore is lost: that is what a restore is.
 */
export async function restoreRdb(target: RedisTarget, source: AsyncIterable<Buffer> | Iterable<Buffer>, options: RdbRestoreOptions = {}): Promise<RdbRestoreResult> {
  const ep = parseRedisUrl(target.url);
  const client = await connectRedis(ep);
  let tmp: string | undefined;
  let saveBefore: string | undefined;
  let swapped: { rdbPath: string; previousPath?: string } | undefined;
  let shutdownSent = false;
  try {
    const dir = await configValue(client, 'dir', ep);
    const dbfilename = await configValue(client, 'dbfilename', ep);
    if ((await configValue(client, 'appendonly', ep)) === 'yes') {
      throw new ConflictError(
        `Redis at ${ep.label} runs with appendonly yes: at start it loads its append-only file, not ${dbfilename}. Turn appendonly off (CONFIG SET appendonly no and in its config) for the restore, or restore with importKeys`,
      );
    }
    const dataDir = options.dataDir ?? dir;
    await access(dataDir, fsConstants.W_OK).catch((err: NodeJS.ErrnoException) => {
      throw new NotFoundError(
        `opsflow cannot write the data directory ${dataDir} of Redis at ${ep.label} (${err.code ?? err.message}): an RDB restore needs the server's disk (same host or a shared volume; see dataDir); elsewhere restore with importKeys`,
      );
    });
    const rdbPath = join(dataDir, dbfilename);
    tmp = `${rdbPath}.opsflow-restore-${process.pid}-${Date.now()}`;
    const check = new RdbCheck('the RDB to restore');
    await pipeline(
      async function* () {
        for await (const chunk of source) {
          check.observe(chunk);
          yield chunk;
        }
      },
      createWriteStream(tmp, { flags: 'wx' }),
      { signal: options.signal },
    );
    const { rdbVersion, rawBytes } = check.finish();
    await fsyncPath(tmp);
    const verified = options.verify === false ? undefined : await verifyRdb(tmp, { redisServer: options.redisServer });
    options.signal?.throwIfAborted();

    // From here the server must not write its own dump over ours (put back below if we stop short of SHUTDOWN).
    saveBefore = await configValue(client, 'save', ep);
    await client.config('SET', 'save', '');
    for (let waited = 0; /^rdb_bgsave_in_progress:1/m.test(await client.info('persistence')); waited += 200) {
      if (waited > 300_000) throw new PeerUnavailableError(`Redis at ${ep.label} is still saving its RDB after 5 minutes`);
      await sleep(200);
    }
    const runId = /^run_id:(\w+)/m.exec(await client.info('server'))?.[1];
    let previousPath: string | undefined = `${rdbPath}.opsflow-previous`;
    await rename(rdbPath, previousPath).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
      previousPath = undefined;
    });
    await rename(tmp, rdbPath);
    tmp = undefined;
    swapped = { rdbPath, previousPath };
    await fsyncPath(dataDir);
    const placed = await stat(rdbPath);

    try {
      shutdownSent = true;
      await client.call('SHUTDOWN', 'NOSAVE');
    } catch (err) {
      // Success is the server closing the connection; a reply is a refusal.
      if ((err as { name?: string }).name === 'ReplyError') {
        shutdownSent = false;
        throw toRedisError(err, `SHUTDOWN NOSAVE on ${ep.label} (the previous dump file is back in place)`);
      }
    }
    const deadline = Date.now() + (options.stopTimeoutMs ?? 60_000);
    let server: RdbRestoreResult['server'] | undefined;
    while (!server) {
      const id = await runIdOf(ep);
      if (id === undefined) server = 'stopped';
      else if (id !== 'unknown' && id !== runId) server = 'restarted';
      else if (Date.now() > deadline) {
        throw new PeerUnavailableError(
          `Redis at ${ep.label} is still running ${(options.stopTimeoutMs ?? 60_000) / 1000} s after SHUTDOWN NOSAVE, on its old data and with snapshots off; the restored RDB is in place at ${rdbPath}: stop and start the server`,
        );
      } else await sleep(200);
    }
    const now = await stat(rdbPath);
    if (now.ino !== placed.ino || now.size !== placed.size) {
      throw new IntegrityError(`${rdbPath} changed after opsflow placed it (the server saved over it while stopping?): restore again`);
    }
    return { rdbPath, previousPath, rawBytes, rdbVersion, verified, server };
  } catch (err) {
    if (!shutdownSent) {
      // The server still runs on its data: leave its files and settings as they were.
      if (swapped?.previousPath) await rename(swapped.previousPath, swapped.rdbPath).catch(() => undefined);
      else if (swapped) await rm(swapped.rdbPath, { force: true });
      if (saveBefore !== undefined) await client.config('SET', 'save', saveBefore).catch(() => undefined);
    }
    if (options.signal?.aborted) throw options.signal.reason;
    throw toRedisError(err, `RDB restore into Redis at ${ep.label}`);
  } finally {
    client.disconnect();
    if (tmp) await rm(tmp, { force: true });
  }
}
