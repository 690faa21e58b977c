/**
 * Redis: a snapshot through the replication protocol (what `redis-cli --rdb`
 * does) or, where SYNC is blocked, a logical key stream (SCAN + DUMP + PTTL).
 * A restore RESTOREs the keys into a spare database of the target and swaps
 * it in with SWAPDB, so clients never see a half-restored database; a marker
 * key tells a retried swap whether it already happened.
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
  parseRedisUrl,
  snapshot,
  startRdbCheck,
  startScratchRedis,
  type ChunkSource,
} from '../../src/adapters/redis.ts';
import { IntegrityError } from '../../src/errors.ts';
import { withScratchDir } from '../../src/scratch.ts';
import { consumeDownload, downloadArtifact, uploadArtifact } from '../artifacts.ts';
import type { ComponentOf, ConfigOf, Driver, DriverContext } from './driver.ts';

type RedisComponent = ComponentOf<'redis'>;

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

/**
 * The component's keys as a key stream, whatever its mode: a logical
 * backup is one already; a snapshot is loaded into a scratch redis-server
 * on the worker and exported from there. Checked against the manifest's
 * count before `use` returns.
 */
async function withKeyStream<T>(ctx: DriverContext, component: RedisComponent, use: (keys: ChunkSource) => Promise<T & { records: number }>): Promise<T> {
  // Loading a snapshot drops keys whose TTL ran out since the backup: as few as `keys - expires` may be left.
  const fewest = component.keys - (component.mode === 'snapshot' ? (component.expires ?? 0) : 0);
  const checkCount = (result: T & { records: number }) => {
    if (result.records > component.keys || result.records < fewest) {
      const expected = fewest === component.keys ? `${component.keys}` : `${fewest} to ${component.keys} (${component.expires} have a TTL)`;
      throw new IntegrityError(`${component.name}: ${result.records} keys read back, the manifest says ${expected}`);
    }
    return result;
  };
  if (component.mode === 'logical') {
    return checkCount(await consumeDownload(downloadArtifact(component, ctx.artifacts), (stream: Readable) => use(stream)));
  }
  return withScratchDir('rdb', async (dir) => {
    const rdbFile = join(dir, 'dump.rdb');
    await consumeDownload(downloadArtifact(component, ctx.artifacts), (stream: Readable) => pipeline(stream, createWriteStream(rdbFile)));
    const scratch = await startScratchRedis({ rdbFile });
    try {
      const exported = exportKeys({ url: withDb(scratch.url, component.db) }, { signal: ctx.signal });
      return checkCount(await use(exported.stream));
    } finally {
      await scratch.stop();
    }
  });
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
    // The worker writes the RDB once, to tee, as it arrives; tee hands it on
    // to the compressor (then S3), to redis-check-rdb, which checks its CRC64
    // and every value meanwhile, in flat memory, and to a temporary file,
    // where its RESIZEDB records give the manifest the snapshot's key count.
    // The upload completes only once the snapshot and the check are through.
    return withScratchDir('rdb', async (dir) => {
      const check = startRdbCheck(join(dir, 'dump.rdb'), { fromInput: true, forward: true });
      const stop = new AbortController(); // a failed upload ends the snapshot too
      const snap = snapshot({ url }, { signal: AbortSignal.any([ctx.signal, stop.signal]) });
      const pumped = (async () => {
        try {
          for await (const chunk of snap.stream) await check.write(chunk);
        } finally {
          check.end();
        }
      })();
      const checked = pumped.then(() => check.result());
      checked.catch(() => undefined); // awaited through the upload
      try {
        const stored = await uploadArtifact(key, check.forwarded!, Promise.all([snap.done, checked]), ctx.artifacts);
        const verified = await checked;
        return {
          ...stored,
          kind: 'redis',
          name: config.name,
          mode: 'snapshot',
          db,
          keys: verified.databases[db]?.keys ?? 0,
          expires: verified.databases[db]?.expires ?? 0,
          rdbVersion: verified.rdbVersion,
          startedAt,
          completedAt: new Date().toISOString(),
        };
      } finally {
        stop.abort();
        check.cancel();
        await pumped.catch(() => undefined);
      }
    });
  },

  async stage(ctx, component, config, tag) {
    const url = ctx.systems.redisUrl(ctx.system);
    const staging = withDb(url, config.stagingDb);
    if (parseRedisUrl(url).db === config.stagingDb) throw new IntegrityError(`${config.name}: stagingDb ${config.stagingDb} is the live database; choose a spare one`);
    await withRedis(staging, (c) => c.flushdb());
    const imported = await withKeyStream(ctx, component, async (keys) => importKeys({ url: staging }, keys, { replace: false, signal: ctx.signal }));
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

  async verify(ctx, component) {
    const scratch = await startScratchRedis();
    try {
      const target = withDb(scratch.url, component.db);
      const imported = await withKeyStream(ctx, component, (keys) => importKeys({ url: target }, keys, { replace: false, signal: ctx.signal }));
      return `${imported.records} keys restored into a scratch redis-server, as in the manifest`;
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
