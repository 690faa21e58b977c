/**
 * Redis: a snapshot through the replication protocol (what `redis-cli --rdb`
 * does) or, where SYNC is blocked, a logical key stream (SCAN + DUMP + PTTL).
 * A restore puts the keys into a spare database of the target (a snapshot:
 * loaded into a scratch redis-server, which MIGRATEs them there; a logical
 * backup: RESTOREd) and swaps it in with SWAPDB, so clients never see a
 * half-restored database; a marker key tells a retried swap whether it
 * already happened.
 */
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Redis } from 'ioredis';
import {
  connectRedis,
  exportKeys,
  importKeys,
  keyspaceSummary,
  migrateKeys,
  parseRedisUrl,
  RdbOpening,
  snapshot,
  startStreamedRdbCheck,
  startScratchRedis,
  type RdbVerification,
  type StreamedRdbCheck,
} from '../../src/adapters/redis.ts';
import { IntegrityError } from '../../src/errors.ts';
import { withScratchDir } from '../../src/scratch.ts';
import { consumeDownload, downloadArtifact, uploadArtifact } from '../artifacts.ts';
import type { ComponentOf, ConfigOf, Driver, DriverContext } from './driver.ts';

type RedisComponent = ComponentOf<'redis'>;

/**
 * zstd level for snapshots unless the system sets one. An RDB's strings are
 * LZF-compressed already: at 800 MiB of used_memory (a 234 MiB RDB), level
 * 3 stored 123 MiB and level 1 135 MiB, with 1.1 and 0.7 s of zstd's CPU;
 * the backup took 3.98 and 3.70 s (median of 3).
 */
const RDB_COMPRESSION_LEVEL = 1;

/** The URL with another database number. */
function withDb(url: string, db: number): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

function markerKey(tag: string): string {
  return `opsflow:restore-marker:${tag}`;
}

async function withRedis<T>(url: string, fn: (client: Redis) => Promise<T>): Promise<T> {
  const client = await connectRedis({ url });
  try {
    return await fn(client);
  } finally {
    client.disconnect();
  }
}

/** Loading a snapshot drops keys whose TTL ran out since the backup: as few as `keys - expires` may be left. */
function checkKeyCount(component: RedisComponent, found: number): void {
  const fewest = component.keys - (component.mode === 'snapshot' ? (component.expires ?? 0) : 0);
  if (found > component.keys || found < fewest) {
    const expected = fewest === component.keys ? `${component.keys}` : `${fewest} to ${component.keys} (${component.expires} have a TTL)`;
    throw new IntegrityError(`${component.name}: ${found} keys read back, the manifest says ${expected}`);
  }
}

/** A snapshot component loaded into a scratch redis-server on the worker, for `use` to read from; stopped after. */
async function withLoadedSnapshot<T>(ctx: DriverContext, component: RedisComponent, use: (scratchUrl: string) => Promise<T>): Promise<T> {
  return withScratchDir('rdb', async (dir) => {
    const rdbFile = join(dir, 'dump.rdb');
    await consumeDownload(downloadArtifact(component, ctx.artifacts), (stream: Readable) => pipeline(stream, createWriteStream(rdbFile)));
    const scratch = await startScratchRedis({ rdbFile });
    try {
      return await use(withDb(scratch.url, component.db));
    } finally {
      await scratch.stop();
    }
  });
}

/**
 * The component's keys into the empty database `target`, counted against
 * the manifest. A snapshot is loaded into a scratch redis-server on the
 * worker, which MIGRATEs its keys there itself (the values never pass
 * through the worker; through it only for a TLS target, which MIGRATE
 * cannot reach); a logical backup is RESTOREd key by key as it downloads.
 */
async function restoreKeysInto(ctx: DriverContext, component: RedisComponent, target: string): Promise<{ restored: number; expired: number }> {
  const options = { replace: false, signal: ctx.signal };
  if (component.mode === 'logical') {
    const imported = await consumeDownload(downloadArtifact(component, ctx.artifacts), (stream: Readable) => importKeys({ url: target }, stream, options));
    checkKeyCount(component, imported.records);
    return imported;
  }
  return withLoadedSnapshot(ctx, component, async (scratchUrl) => {
    if (parseRedisUrl(target).tls) {
      const imported = await importKeys({ url: target }, exportKeys({ url: scratchUrl }, { signal: ctx.signal }).stream, options);
      checkKeyCount(component, imported.records);
      return imported;
    }
    await migrateKeys({ url: scratchUrl }, { url: target }, { signal: ctx.signal });
    const restored = await withRedis(target, (c) => c.dbsize());
    checkKeyCount(component, restored);
    return { restored, expired: component.keys - restored };
  });
}

/**
 * The server's RDB through the replication protocol, each chunk to the
 * compressor (then S3) as it arrives. The manifest's key counts come from
 * the RDB's opening (`RdbOpening`), which tells them within the first chunk
 * when the database is the RDB's first. redis-check-rdb reads the chunks
 * too (CRC64 and every value, in flat memory) when `deepCheck` asks for it,
 * or when the opening cannot tell the counts: then it starts late, given
 * the chunks held back until the opening was read. On a server that saves
 * to its disk before sending, the check is most of the backup's time after
 * the save (test/bench/README.md). The upload completes only once the
 * snapshot, and the check if it ran, are through.
 */
async function backupSnapshot(ctx: DriverContext, url: string, db: number, key: string, deepCheck: boolean) {
  const opening = new RdbOpening();
  let check: StreamedRdbCheck | undefined;
  let checked: Promise<RdbVerification> | undefined;
  const startCheck = (): StreamedRdbCheck => {
    check = startStreamedRdbCheck(db);
    checked = check.result();
    checked.catch(() => undefined); // awaited through the upload
    return check;
  };
  if (deepCheck) startCheck();
  const stop = new AbortController(); // a failed upload ends the snapshot too
  const snap = snapshot({ url }, { signal: AbortSignal.any([ctx.signal, stop.signal]) });
  async function* checkedChunks() {
    let held: Buffer[] | undefined = check ? undefined : []; // chunks before the opening was read
    try {
      for await (const chunk of snap.stream) {
        opening.observe(chunk);
        if (held && !opening.settled) held.push(chunk);
        else if (held) {
          if (opening.countsOf(db) === undefined) {
            const late = startCheck();
            for (const earlier of held) await late.write(earlier);
          }
          held = undefined;
        }
        if (!check) {
          yield chunk;
          continue;
        }
        const written = check.write(chunk);
        yield chunk; // into the compressor meanwhile
        await written;
      }
    } finally {
      check?.end();
    }
  }
  // Settles after the last chunk went by (the snapshot's end), so `check` is final by then.
  const counted = snap.done.then(async (info) => {
    const fromOpening = opening.countsOf(db);
    if (!checked) {
      if (!fromOpening) throw new IntegrityError(`the RDB of ${parseRedisUrl(url).label} ended before its opening told the key count of db ${db}`);
      return { ...fromOpening, rdbVersion: info.rdbVersion, deepChecked: false };
    }
    const verified = await checked;
    const counts = verified.databases[db] ?? { keys: 0, expires: 0 };
    // The record counts keys as the save began; a writer that skips the expired ones writes fewer, never more.
    if (fromOpening && (counts.keys > fromOpening.keys || counts.keys < fromOpening.keys - fromOpening.expires)) {
      throw new IntegrityError(`the RDB's RESIZEDB record counts ${fromOpening.keys} keys (${fromOpening.expires} with a TTL) in db ${db}, redis-check-rdb read ${counts.keys}`);
    }
    return { ...counts, rdbVersion: verified.rdbVersion, deepChecked: true };
  });
  counted.catch(() => undefined); // awaited through the upload
  try {
    const level = ctx.artifacts.compressionLevel ?? RDB_COMPRESSION_LEVEL;
    const stored = await uploadArtifact(key, checkedChunks(), counted, { ...ctx.artifacts, compressionLevel: level });
    return { ...stored, kind: 'redis' as const, mode: 'snapshot' as const, db, ...(await counted) };
  } finally {
    stop.abort();
    check?.cancel();
  }
}

export const redisDriver: Driver<'redis'> = {
  fileName: (config) => `${config.name}.${config.mode === 'snapshot' ? 'rdb' : 'keys'}.zst`,

  async check(ctx) {
    const summary = await keyspaceSummary({ url: ctx.systems.redisUrl(ctx.system) }, { types: false });
    return `Redis db ${summary.db}: ${summary.keys} keys`;
  },

  async backup(ctx, config, key) {
    const url = ctx.systems.redisUrl(ctx.system);
    const db = parseRedisUrl(url).db;
    const startedAt = new Date().toISOString();
    if (config.mode === 'logical') {
      const exported = exportKeys({ url }, { signal: ctx.signal });
      const stored = await uploadArtifact(key, exported.stream, exported.done, ctx.artifacts);
      const info = await exported.done;
      return { ...stored, kind: 'redis', name: config.name, mode: 'logical', db, keys: info.keys, startedAt, completedAt: new Date().toISOString() };
    }
    return { ...(await backupSnapshot(ctx, url, db, key, config.deepCheck)), name: config.name, startedAt, completedAt: new Date().toISOString() };
  },

  async stage(ctx, component, config, tag) {
    const url = ctx.systems.redisUrl(ctx.system);
    const staging = withDb(url, config.stagingDb);
    if (parseRedisUrl(url).db === config.stagingDb) throw new IntegrityError(`${config.name}: stagingDb ${config.stagingDb} is the live database; choose a spare one`);
    await withRedis(staging, (c) => c.flushdb());
    const imported = await restoreKeysInto(ctx, component, staging);
    await withRedis(staging, (c) => c.set(markerKey(tag), '1'));
    return `${imported.restored} keys into spare db ${config.stagingDb} (${imported.expired} expired since the backup)`;
  },

  async swapIn(ctx, _component, config, tag) {
    await swapIfMarkerIn(ctx.systems.redisUrl(ctx.system), config, tag, 'staging');
  },

  async swapBack(ctx, _component, config, tag) {
    await swapIfMarkerIn(ctx.systems.redisUrl(ctx.system), config, tag, 'live');
  },

  /** The marker out of the live database, and the spare database emptied (the replaced data, or an unused stage). */
  async discard(ctx, _component, config, tag) {
    const url = ctx.systems.redisUrl(ctx.system);
    await withRedis(url, (c) => c.del(markerKey(tag)));
    await withRedis(withDb(url, config.stagingDb), (c) => c.flushdb());
  },

  /** The live and the spare database emptied (the restore marker goes with them). */
  async tearDown(ctx, config) {
    const url = ctx.systems.redisUrl(ctx.system);
    const live = parseRedisUrl(url).db;
    let keys = 0;
    for (const db of [live, config.stagingDb]) {
      keys += await withRedis(withDb(url, db), async (c) => {
        const n = await c.dbsize();
        await c.flushdb();
        return n;
      });
    }
    return `${keys} keys flushed from databases ${live} and ${config.stagingDb}`;
  },

  async verify(ctx, component) {
    const scratch = await startScratchRedis();
    try {
      const restored = await restoreKeysInto(ctx, component, withDb(scratch.url, component.db));
      return `${restored.restored} keys restored into a scratch redis-server, as in the manifest`;
    } finally {
      await scratch.stop();
    }
  },
};

/** SWAPDB live ↔ spare, only if the restore's marker is on the `from` side (so a retried swap is a no-op). */
async function swapIfMarkerIn(url: string, config: ConfigOf<'redis'>, tag: string, from: 'staging' | 'live'): Promise<void> {
  const live = parseRedisUrl(url).db;
  await withRedis(url, async (c) => {
    await c.select(from === 'staging' ? config.stagingDb : live);
    if ((await c.exists(markerKey(tag))) === 0) return;
    await c.swapdb(live, config.stagingDb);
  });
}
