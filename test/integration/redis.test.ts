/**
 * The Redis adapter against real servers: the bed's Redis (database 3)
 * filled with every type — strings (binary too), hashes, lists, sets, sorted
 * sets, streams with consumer groups, TTLs, a 4 MiB value — and ~50k keys.
 * A snapshot through the replication protocol and a logical export each come
 * back key for key: type, value and TTL (±1 s). Then the failures: a
 * truncated or altered key stream, a wrong password, a server that is down,
 * SYNC disabled; and an RDB restore into a server this test manages.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { bedEnv } from '../support/bed.ts';
import {
  connectRedis,
  exportKeys,
  importKeys,
  inspectKeys,
  migrateKeys,
  keyspaceSummary,
  RdbOpening,
  restoreRdb,
  snapshot,
  startStreamedRdbCheck,
  startScratchRedis,
  verifyRdb,
  type ScratchRedis,
} from '../../src/adapters/redis.ts';
import { ConflictError, IntegrityError, PeerRejectedError, PeerUnavailableError } from '../../src/errors.ts';

const DB = 3;
const bedUrl = (db = DB) => `redis://127.0.0.1:${bedEnv('BED_REDIS_PORT')}/${db}`;
const withDb = (url: string, db: number) => url.replace(/\/\d+$/, `/${db}`);
const dir = mkdtempSync(join(bedEnv('OPSFLOW_TEST_DIR'), 'redis-'));
const scratches: ScratchRedis[] = [];
let source: Redis;

async function scratch(options: Parameters<typeof startScratchRedis>[0] = {}): Promise<ScratchRedis> {
  const s = await startScratchRedis(options);
  scratches.push(s);
  return s;
}

// ---------------------------------------------------------------- data

const BIG_VALUE = randomBytes(4 * 1024 * 1024);
const BINARY_KEY = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x24, 0x80, 0x7f]);

/** ~50k keys of every type, in `client`'s current database. Returns the key count. */
async function fill(client: Redis): Promise<number> {
  let p = client.pipeline();
  let queued = 0;
  const step = async () => {
    if (++queued % 2000 === 0) {
      await p.exec();
      p = client.pipeline();
    }
  };
  let keys = 0;
  const key = (k: string | Buffer) => {
    keys++;
    return k;
  };
  for (let i = 0; i < 30_000; i++) {
    p.set(key(`str:${String(i).padStart(5, '0')}`), i % 3 === 0 ? String(i) : `value ${i} ${'x'.repeat(i % 200)}`);
    await step();
  }
  for (let i = 0; i < 500; i++) {
    p.set(key(Buffer.concat([BINARY_KEY, Buffer.from(String(i))])), randomBytes(1 + (i % 300)));
    await step();
  }
  p.set(key('big:blob'), BIG_VALUE);
  for (let i = 0; i < 5_000; i++) {
    // Small hashes are listpacks; every 500th is big enough to be a hash table.
    const n = i % 500 === 0 ? 300 : 1 + (i % 8);
    const fields: (string | Buffer)[] = [];
    for (let f = 0; f < n; f++) fields.push(`f${f}`, f % 4 === 0 ? randomBytes(8) : `v${i}.${f}`);
    p.hset(key(`hash:${i}`), ...fields);
    await step();
  }
  for (let i = 0; i < 5_000; i++) {
    const items = Array.from({ length: 1 + (i % 10) }, (_, j) => `item-${i}-${j}`);
    p.rpush(key(`list:${i}`), ...items);
    await step();
  }
  p.rpush(key('list:long'), ...Array.from({ length: 20_000 }, (_, j) => `long-${j}`));
  for (let i = 0; i < 4_000; i++) {
    // Integer sets (intset), string sets, and a few big ones (hash table).
    const n = i % 1000 === 0 ? 1000 : 1 + (i % 12);
    const members = Array.from({ length: n }, (_, j) => (i % 2 ? String(j * 7) : `m-${i}-${j}`));
    p.sadd(key(`set:${i}`), ...members);
    await step();
  }
  for (let i = 0; i < 4_000; i++) {
    const n = i % 1000 === 0 ? 500 : 1 + (i % 10);
    const args: (string | number)[] = [];
    for (let j = 0; j < n; j++) args.push(j * 1.5 - i, `z-${i}-${j}`);
    p.zadd(key(`zset:${i}`), ...args);
    await step();
  }
  await p.exec();
  p = client.pipeline();
  for (let i = 0; i < 1_000; i++) {
    const k = key(`stream:${i}`);
    for (let j = 0; j < 1 + (i % 5); j++) p.xadd(k, `${1_700_000_000_000 + i}-${j}`, 'event', `e${j}`, 'n', String(i));
    if (i % 10 === 0) {
      p.xgroup('CREATE', k, 'workers', '0');
      p.xreadgroup('GROUP', 'workers', 'w1', 'COUNT', '1', 'STREAMS', k, '>');
    }
    await step();
  }
  for (let i = 0; i < 4_000; i++) {
    // TTLs from one hour to two, some with millisecond precision, on several types.
    const ms = 3_600_000 + i * 1_000 + (i % 7) * 13;
    const k = key(`ttl:${i}`);
    if (i % 3 === 0) p.set(k, `expiring ${i}`, 'PX', ms);
    else if (i % 3 === 1) p.hset(k, 'a', '1', 'b', '2').pexpire(k, ms);
    else p.rpush(k, 'x', 'y').pexpire(k, ms);
    await step();
  }
  await p.exec();
  return keys;
}

// ---------------------------------------------------------------- comparison

async function allKeys(client: Redis): Promise<Buffer[]> {
  const seen = new Map<string, Buffer>();
  let cursor = '0';
  do {
    const [next, keys] = await client.scanBuffer(cursor, 'COUNT', 1000);
    cursor = next.toString();
    for (const k of keys) seen.set(k.toString('latin1'), k);
  } while (cursor !== '0');
  return [...seen.values()];
}

const hex = (v: unknown): unknown => (Buffer.isBuffer(v) ? v.toString('hex') : Array.isArray(v) ? v.map(hex) : v);

/** The value as data, independent of encoding (DUMP of the same set may order members differently). */
async function logicalValue(client: Redis, key: Buffer, type: string): Promise<unknown> {
  const pairs = (flat: Buffer[]) => {
    const out: string[] = [];
    for (let i = 0; i < flat.length; i += 2) out.push(`${flat[i]!.toString('hex')}=${flat[i + 1]!.toString('hex')}`);
    return out.sort();
  };
  switch (type) {
    case 'string':
      return (await client.getBuffer(key))?.toString('hex');
    case 'hash':
      return pairs((await client.callBuffer('HGETALL', key)) as Buffer[]);
    case 'list':
      return hex(await client.callBuffer('LRANGE', key, '0', '-1'));
    case 'set':
      return ((await client.callBuffer('SMEMBERS', key)) as Buffer[]).map((b) => b.toString('hex')).sort();
    case 'zset':
      return hex(await client.callBuffer('ZRANGE', key, '0', '-1', 'WITHSCORES'));
    case 'stream':
      return {
        entries: hex(await client.callBuffer('XRANGE', key, '-', '+')),
        groups: hex(await client.callBuffer('XINFO', 'GROUPS', key)),
        pending: hex(await client.callBuffer('XPENDING', key, 'workers').catch(() => null)),
      };
    default:
      throw new Error(`no comparison for type ${type}`);
  }
}

/**
 * Every key of `a` is in `b` with the same type, value and TTL (±1 s), and
 * `b` has no other keys. DUMP payloads are compared first; where they differ
 * (encoding or member order after a reload), the data itself.
 */
async function assertSameKeyspace(a: Redis, b: Redis): Promise<{ keys: number; dumpDiffered: Record<string, number>; expiring: number }> {
  const keys = await allKeys(a);
  assert.equal(await b.dbsize(), keys.length, 'same number of keys');
  const dumpDiffered: Record<string, number> = {};
  let expiring = 0;
  for (let i = 0; i < keys.length; i += 500) {
    const slice = keys.slice(i, i + 500);
    const read = async (c: Redis) => {
      const p = c.pipeline();
      for (const k of slice) p.type(k).pttl(k).dumpBuffer(k);
      return (await p.exec())!.map(([err, v]) => {
        if (err) throw err;
        return v;
      });
    };
    const [ra, rb] = await Promise.all([read(a), read(b)]);
    for (let j = 0; j < slice.length; j++) {
      const k = slice[j]!;
      const name = JSON.stringify(k.toString('latin1'));
      const [ta, tb] = [ra[3 * j], rb[3 * j]];
      assert.equal(tb, ta, `type of ${name}`);
      const [pa, pb] = [ra[3 * j + 1] as number, rb[3 * j + 1] as number];
      if (pa === -1) assert.equal(pb, -1, `${name} has no TTL`);
      else {
        expiring++;
        assert.ok(pb > 0 && Math.abs(pa - pb) <= 1000, `TTL of ${name}: ${pa} ms in the source, ${pb} ms in the copy`);
      }
      if (!(ra[3 * j + 2] as Buffer).equals(rb[3 * j + 2] as Buffer)) {
        dumpDiffered[ta as string] = (dumpDiffered[ta as string] ?? 0) + 1;
        assert.deepEqual(await logicalValue(b, k, tb as string), await logicalValue(a, k, ta as string), `value of ${name}`);
      }
    }
  }
  return { keys: keys.length, dumpDiffered, expiring };
}

async function drain(s: { stream: AsyncIterable<Buffer>; done: Promise<unknown> }): Promise<unknown> {
  for await (const chunk of s.stream) void chunk;
  return s.done;
}

// ---------------------------------------------------------------- setup

let expectedKeys: number;

before(async () => {
  source = await connectRedis({ url: bedUrl() });
  await source.flushdb();
  expectedKeys = await fill(source);
});

after(async () => {
  await source?.flushdb().catch(() => undefined);
  source?.disconnect();
  for (const s of scratches) await s.stop().catch(() => undefined);
});

describe('Redis snapshot (replication protocol)', () => {
  const rdbFile = join(dir, 'snapshot.rdb');

  it('streams the RDB like redis-cli --rdb; a redis-server started on it has every key: type, value, TTL', async () => {
    assert.equal(await source.dbsize(), expectedKeys);
    const snap = snapshot({ url: bedUrl() });
    await pipeline(snap.stream, createWriteStream(rdbFile));
    const info = await snap.done;
    assert.equal(info.rawBytes, statSync(rdbFile).size);
    assert.ok(info.rdbVersion >= 9, `RDB version ${info.rdbVersion}`);
    assert.equal(info.transfer, 'diskless', "the bed's Redis 7 streams from its fork (repl-diskless-sync yes)");
    assert.equal(readFileSync(rdbFile).subarray(0, 5).toString(), 'REDIS');

    const verified = await verifyRdb(rdbFile);
    assert.equal(verified.databases[DB]?.keys, expectedKeys);
    assert.equal(verified.databases[DB]?.expires, 4_000);

    const copy = await scratch({ rdbFile });
    const target = await connectRedis({ url: withDb(copy.url, DB) });
    try {
      const r = await assertSameKeyspace(source, target);
      assert.equal(r.keys, expectedKeys);
      assert.equal(r.expiring, 4_000);
    } finally {
      target.disconnect();
    }
  });

  it('without capa eof the server saves to its disk and sends the file ($<length>): same keys', async () => {
    const file = join(dir, 'snapshot-disk.rdb');
    const snap = snapshot({ url: bedUrl() }, { diskless: false });
    await pipeline(snap.stream, createWriteStream(file));
    const info = await snap.done;
    assert.equal(info.transfer, 'disk');
    assert.equal(info.rawBytes, statSync(file).size);
    assert.equal((await verifyRdb(file)).databases[DB]?.keys, expectedKeys);
  });

  it('an abort ends the transfer at once and closes the connection; a consumer that stops early leaves done rejected', async () => {
    const ac = new AbortController();
    const snap = snapshot({ url: bedUrl() }, { signal: ac.signal, diskless: false });
    let bytes = 0;
    await assert.rejects(
      (async () => {
        for await (const chunk of snap.stream) {
          bytes += chunk.length;
          if (bytes > 1024 * 1024) ac.abort();
        }
      })(),
      (err: Error) => err.name === 'AbortError',
    );
    await assert.rejects(snap.done, (err: Error) => err.name === 'AbortError');
    const early = snapshot({ url: bedUrl() }, { diskless: false });
    for await (const chunk of early.stream) if (chunk.length) break;
    await assert.rejects(early.done, /not read to its end/);
    // The server let go of both: no replica left connected.
    const info = async () => /^connected_slaves:(\d+)/m.exec(await source.info('replication'))?.[1];
    for (let i = 0; i < 50 && (await info()) !== '0'; i++) await sleep(100);
    assert.equal(await info(), '0');
  });

  /** `file` written to a streamed check as a snapshot would be, in chunks of `chunkBytes`. */
  async function checkStreamed(file: string, db: number, chunkBytes = 256 * 1024) {
    const check = startStreamedRdbCheck(db);
    for await (const chunk of createReadStream(file, { highWaterMark: chunkBytes })) await check.write(chunk as Buffer);
    check.end();
    return check.result();
  }

  it('redis-check-rdb fed the RDB as it streams by gives the verdict and counts of the file, with one database or several', async () => {
    // The snapshot copied into a server of our own, once with DB alone and once with other databases around it.
    const copy = await scratch({ rdbFile });
    const client = await connectRedis({ url: copy.url });
    const files: Record<string, string> = { alone: join(dir, 'db-alone.rdb'), among: join(dir, 'db-among.rdb') };
    try {
      for (const db of [0, 1, 2, 4]) {
        await client.select(db);
        await client.flushdb();
      }
      await pipeline(snapshot({ url: copy.url }).stream, createWriteStream(files.alone!));
      await client.select(0);
      for (let i = 0; i < 700; i++) await client.set(`zero:${i}`, i);
      // A function library (written before the databases) holding what looks like db 0's RESIZEDB record: 5 keys.
      const library = Buffer.concat([Buffer.from('#!lua name=decoy\n-- '), Buffer.from([0xfe, 0x00, 0xfb, 0x05, 0x00]), Buffer.from("\nredis.register_function('decoy', function() return 1 end)")]);
      await client.call('FUNCTION', 'LOAD', library);
      await client.select(5);
      await client.set('five', '5', 'EX', 3600);
      await pipeline(snapshot({ url: copy.url }).stream, createWriteStream(files.among!));
    } finally {
      client.disconnect();
    }
    for (const [name, file] of Object.entries(files)) {
      const fromFile = await verifyRdb(file);
      assert.deepEqual(Object.keys(fromFile.databases), name === 'alone' ? [String(DB)] : ['0', String(DB), '5']);
      for (const db of [0, DB, 5]) {
        const streamed = await checkStreamed(file, db);
        assert.deepEqual(streamed.databases[db] ?? null, fromFile.databases[db] ?? null, `${name}, db ${db}`);
        assert.equal(streamed.keys, fromFile.keys);
        assert.equal(streamed.bytes, statSync(file).size);
        assert.equal(streamed.rdbVersion, fromFile.rdbVersion);
      }
    }
    assert.equal((await checkStreamed(files.among!, 5, 1000)).databases[5]?.expires, 1, 'found across chunk ends too');

    // The opening alone tells the first database's counts exactly, and that lower ones are empty; not the ones after it.
    for (const chunkBytes of [7, 1000, 1 << 20]) {
      const openingOf = (file: string) => {
        const opening = new RdbOpening();
        const bytes = readFileSync(file);
        for (let at = 0; at < bytes.length; at += chunkBytes) opening.observe(bytes.subarray(at, at + chunkBytes));
        return opening;
      };
      const alone = openingOf(files.alone!);
      const among = openingOf(files.among!);
      const fromFile = { alone: await verifyRdb(files.alone!), among: await verifyRdb(files.among!) };
      assert.deepEqual(alone.countsOf(DB), fromFile.alone.databases[DB], `db ${DB} alone, chunks of ${chunkBytes}`);
      assert.deepEqual(alone.countsOf(0), { keys: 0, expires: 0 });
      assert.equal(alone.countsOf(5), undefined);
      assert.deepEqual(among.countsOf(0), { keys: 700, expires: 0 }, 'the library before it is read, not taken for the record');
      assert.deepEqual(among.countsOf(0), fromFile.among.databases[0]);
      assert.equal(among.countsOf(DB), undefined);
    }
  });

  it('an RDB with one byte changed in the middle is refused with the CRC error, as a file and as a stream (redis-check-rdb itself exits 0 on it)', async () => {
    const bytes = readFileSync(rdbFile);
    // A byte inside BIG_VALUE, which is raw random data: only the CRC64 can tell.
    const at = bytes.indexOf(BIG_VALUE.subarray(0, 64)) + 1000;
    assert.ok(at > 1000, 'the 4 MiB value is stored raw in the RDB');
    bytes[at] = bytes[at]! ^ 0xff;
    const flipped = join(dir, 'flipped.rdb');
    writeFileSync(flipped, bytes);
    const damaged = (err: Error) => err instanceof IntegrityError && /is damaged/.test(err.message) && /CRC/.test(err.message);
    await assert.rejects(verifyRdb(flipped), damaged);
    await assert.rejects(checkStreamed(flipped, DB), damaged);
  });

  it('a cut-off RDB is refused by verifyRdb; a non-RDB file too', async () => {
    const whole = readFileSync(rdbFile);
    const cut = join(dir, 'cut.rdb');
    writeFileSync(cut, whole.subarray(0, Math.floor(whole.length / 2)));
    await assert.rejects(verifyRdb(cut), (err: Error) => err instanceof IntegrityError && /truncated/.test(err.message));
    const other = join(dir, 'not.rdb');
    writeFileSync(other, 'hello, this is not an RDB file at all');
    await assert.rejects(verifyRdb(other), (err: Error) => err instanceof IntegrityError && /not an RDB/.test(err.message));
  });
});

describe('Redis logical export and import (SCAN + DUMP + PTTL, RESTORE)', () => {
  const keysFile = join(dir, 'keys.ofrk');

  it('exports every key and imports into an empty Redis: type, value, TTL equal', async () => {
    const ex = exportKeys({ url: bedUrl() });
    await pipeline(ex.stream, createWriteStream(keysFile));
    const info = await ex.done;
    assert.equal(info.keys, expectedKeys);
    assert.equal(info.vanished, 0);
    assert.equal(info.expiring, 4_000);
    assert.equal(info.streamBytes, statSync(keysFile).size);
    const summary = await keyspaceSummary({ url: bedUrl() });
    assert.equal(summary.keys, expectedKeys);
    assert.deepEqual(info.types, summary.types);
    assert.deepEqual(Object.keys(summary.types!).sort(), ['hash', 'list', 'set', 'stream', 'string', 'zset']);

    const inspected = await inspectKeys(createReadStream(keysFile));
    assert.equal(inspected.records, expectedKeys);
    assert.equal(inspected.sourceDb, DB);

    const empty = await scratch();
    const imported = await importKeys({ url: empty.url }, createReadStream(keysFile), { replace: false });
    assert.equal(imported.records, expectedKeys);
    assert.equal(imported.restored, expectedKeys);
    assert.equal(imported.expired + imported.duplicates, 0);
    const target = await connectRedis({ url: empty.url });
    try {
      const r = await assertSameKeyspace(source, target);
      assert.equal(r.keys, expectedKeys);
      // Redis 7.0 keeps small string sets in hash tables, whose DUMP lists members in table order: equal as data.
      assert.deepEqual(Object.keys(r.dumpDiffered).filter((t) => t !== 'set'), [], 'other types come back with the same DUMP');

      // Again without replace: every key is there with the same value (SCAN's repeats look like this).
      const again = await importKeys({ url: empty.url }, createReadStream(keysFile), { replace: false });
      assert.equal(again.duplicates, expectedKeys);
      // A key that differs is a conflict without replace, overwritten with it.
      await target.set('str:00001', 'changed');
      await assert.rejects(importKeys({ url: empty.url }, createReadStream(keysFile), { replace: false }), ConflictError);
      const replaced = await importKeys({ url: empty.url }, createReadStream(keysFile), { replace: true });
      assert.equal(replaced.restored, expectedKeys);
      assert.equal(await target.get('str:00001'), 'value 1 x');
    } finally {
      target.disconnect();
    }
  });

  it('migrateKeys: the source server MIGRATEs every key into a password-protected database of another server, type, value and TTL equal', async () => {
    const empty = await scratch({ args: ['--requirepass', 'migrate-pass-3k'] });
    const target = `redis://:migrate-pass-3k@127.0.0.1:${empty.port}/${DB}`;
    const sent = await migrateKeys({ url: bedUrl() }, { url: target });
    assert.ok(sent >= expectedKeys, `${sent} keys sent (SCAN may list one twice)`);
    const copy = await connectRedis({ url: target });
    try {
      const r = await assertSameKeyspace(source, copy);
      assert.equal(r.keys, expectedKeys);
      assert.deepEqual(Object.keys(r.dumpDiffered).filter((t) => t !== 'set'), [], 'other types come back with the same DUMP');
      assert.equal(await source.dbsize(), expectedKeys, 'COPY: the source keeps its keys');
    } finally {
      copy.disconnect();
    }
    await assert.rejects(migrateKeys({ url: bedUrl() }, { url: `redis://:wrong@127.0.0.1:${empty.port}/0` }), (err: Error) =>
      err instanceof PeerRejectedError && /WRONGPASS|invalid password/.test(err.message) && !err.message.includes('wrong@'));
    await assert.rejects(migrateKeys({ url: bedUrl() }, { url: `rediss://127.0.0.1:${empty.port}/0` }), /MIGRATE cannot reach .* over TLS/);
  });

  it('keys whose TTL ran out between export and import are skipped and counted', async () => {
    const small = await scratch();
    const c = await connectRedis({ url: small.url });
    try {
      for (let i = 0; i < 10; i++) await c.set(`short:${i}`, 'x', 'PX', 300);
      for (let i = 0; i < 5; i++) await c.set(`keep:${i}`, 'y');
      const chunks: Buffer[] = [];
      const ex = exportKeys({ url: small.url });
      for await (const chunk of ex.stream) chunks.push(chunk);
      assert.equal((await ex.done).expiring, 10);
      await sleep(600);
      const target = await scratch();
      const r = await importKeys({ url: target.url }, chunks, { replace: false });
      assert.deepEqual({ restored: r.restored, expired: r.expired }, { restored: 5, expired: 10 });
    } finally {
      c.disconnect();
    }
  });

  it('a truncated stream is an IntegrityError; the keys before the break are in the target (so: import into scratch, then swap)', async () => {
    const whole = readFileSync(keysFile);
    // Cut among the last records: whatever SCAN's order (the 4 MiB value may come first), whole batches were restored before it.
    const cut = whole.subarray(0, whole.length - 1000);
    const target = await scratch();
    let reported = -1;
    await assert.rejects(importKeys({ url: target.url }, [cut], { replace: false }), (err: Error) => {
      assert.ok(err instanceof IntegrityError, err.message);
      assert.match(err.message, /truncated/);
      reported = Number(/(\d+) keys were already restored/.exec(err.message)?.[1]);
      return true;
    });
    const c = await connectRedis({ url: target.url });
    try {
      const n = await c.dbsize();
      assert.ok(n > 0 && n < expectedKeys, `a partial import: ${n} of ${expectedKeys} keys`);
      assert.equal(reported, n, 'the error counts the keys it left in the target');
    } finally {
      c.disconnect();
    }
    // Cut exactly after a record or inside the trailer: still truncated.
    await assert.rejects(importKeys({ url: target.url }, [whole.subarray(0, whole.length - 5)], { replace: true }), /truncated/);
    await assert.rejects(inspectKeys([Buffer.alloc(0)]), IntegrityError);
  });

  it('an altered key name is caught by the CRC-32; trailing bytes too', async () => {
    const bytes = Buffer.from(readFileSync(keysFile));
    const at = bytes.indexOf('str:00017');
    assert.ok(at > 0);
    bytes[at + 8] = '9'.charCodeAt(0); // str:00019 now exists twice, with another value
    await assert.rejects(inspectKeys([bytes]), (err: Error) => err instanceof IntegrityError && /CRC-32/.test(err.message));
    const extra = Buffer.concat([readFileSync(keysFile), Buffer.from('x')]);
    await assert.rejects(inspectKeys([extra]), (err: Error) => err instanceof IntegrityError && /after its trailer/.test(err.message));
  });
});

describe('Redis errors', () => {
  it('a wrong password is PeerRejected, without the password in the message', async () => {
    const locked = await scratch({ args: ['--requirepass', 'the-right-secret'] });
    const wrong = locked.url.replace('redis://', 'redis://:a-wrong-secret-value@');
    const noPassword = locked.url;
    const rejected = (err: Error) => {
      assert.ok(err instanceof PeerRejectedError, `${err.name}: ${err.message}`);
      assert.ok(!err.message.includes('a-wrong-secret-value'), err.message);
      assert.match(err.message, /WRONGPASS|NOAUTH/);
      return true;
    };
    await assert.rejects(drain(snapshot({ url: wrong })), rejected);
    await assert.rejects(drain(snapshot({ url: noPassword })), rejected);
    await assert.rejects(drain(exportKeys({ url: wrong })), rejected);
    await assert.rejects(importKeys({ url: wrong }, [], { replace: false }), rejected);
    await assert.rejects(keyspaceSummary({ url: wrong }), rejected);
    // The right one works, and a username form (ACL) too.
    const right = locked.url.replace('redis://', 'redis://default:the-right-secret@');
    assert.equal((await keyspaceSummary({ url: right })).keys, 0);
    assert.ok(((await drain(snapshot({ url: right }, { diskless: false }))) as { rawBytes: number }).rawBytes > 0);
  });

  it('a server that is down is PeerUnavailable (retryable)', async () => {
    const gone = await scratch();
    await gone.stop();
    const unavailable = (err: Error) => err instanceof PeerUnavailableError && err.retryable && /ECONNREFUSED/.test(err.message);
    await assert.rejects(drain(snapshot({ url: gone.url })), unavailable);
    await assert.rejects(drain(exportKeys({ url: gone.url })), unavailable);
    await assert.rejects(keyspaceSummary({ url: gone.url }), unavailable);
  });

  it('a scratch server that loses its port to another redis-server is not taken for ready, though the port answers PING', async () => {
    // A redis-server that always loses the port race: another one takes the port it was given just before it starts.
    const intruders = join(dir, 'intruder-ports');
    const wrapper = join(dir, 'redis-server-losing-its-port');
    writeFileSync(wrapper, [
      '#!/bin/sh',
      'port=$(echo "$@" | sed \'s/.*--port \\([0-9]*\\).*/\\1/\')',
      'redis-server --port "$port" --bind 127.0.0.1 --save "" --daemonize yes --logfile ""',
      'until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done',
      `echo "$port" >> ${intruders}`,
      'sleep 0.5', // a slow start: long enough for a probe of the port to meet the intruder
      'exec redis-server "$@"',
    ].join('\n'), { mode: 0o755 });
    try {
      await assert.rejects(startScratchRedis({ redisServer: wrapper }), (err: Error) =>
        err instanceof PeerUnavailableError && /Address already in use/.test(err.message));
    } finally {
      for (const port of existsSync(intruders) ? readFileSync(intruders, 'utf8').trim().split('\n') : []) {
        const intruder = await connectRedis({ url: `redis://127.0.0.1:${port}/0` });
        await intruder.call('SHUTDOWN', 'NOSAVE').catch(() => undefined);
        intruder.disconnect();
      }
    }
  });

  it('SYNC disabled (managed Redis) is PeerRejected and points to the logical mode, which works there', async () => {
    const managed = await scratch({ args: ['--rename-command', 'SYNC', '', '--rename-command', 'PSYNC', ''] });
    const c = await connectRedis({ url: managed.url });
    await c.set('k', 'v');
    c.disconnect();
    await assert.rejects(drain(snapshot({ url: managed.url })), (err: Error) => {
      assert.ok(err instanceof PeerRejectedError, `${err.name}: ${err.message}`);
      assert.match(err.message, /refused SYNC/);
      assert.match(err.message, /logical mode/);
      return true;
    });
    const ex = exportKeys({ url: managed.url });
    await drain(ex);
    assert.equal((await ex.done).keys, 1);
  });
});

describe('Redis RDB restore into a managed server', () => {
  it('puts the snapshot in place of the dump file, shuts the server down; restarted, it has the snapshot', async () => {
    const dataDir = mkdtempSync(join(dir, 'managed-'));
    const dumpFile = join(dataDir, 'dump.rdb');
    // The "managed" server: this test starts and restarts it on its data directory.
    const first = await scratch({ rdbFile: dumpFile });
    const url = withDb(first.url, DB);
    const snapFile = join(dir, 'snapshot.rdb'); // from the first test: the bed's database 3
    const c = await connectRedis({ url });
    await c.set('written-after-the-backup', 'lost by the restore');
    c.disconnect();

    const result = await restoreRdb({ url }, createReadStream(snapFile));
    assert.equal(result.server, 'stopped');
    assert.equal(result.rdbPath, dumpFile);
    assert.equal(result.rawBytes, statSync(snapFile).size);
    assert.equal(result.verified?.databases[DB]?.keys, expectedKeys);
    if (first.child.exitCode === null && first.child.signalCode === null) await once(first.child, 'exit');
    assert.equal(first.child.exitCode, 0, 'the server exited on SHUTDOWN NOSAVE');

    const restarted = await scratch({ rdbFile: dumpFile });
    const target = await connectRedis({ url: withDb(restarted.url, DB) });
    try {
      assert.equal(await target.exists('written-after-the-backup'), 0);
      assert.equal((await assertSameKeyspace(source, target)).keys, expectedKeys);
    } finally {
      target.disconnect();
    }
  });

  it('refuses a server with appendonly yes (it would load its AOF) and a non-RDB source, leaving the server running', async () => {
    const aof = await scratch({ args: ['--appendonly', 'yes'] });
    await assert.rejects(restoreRdb({ url: aof.url }, createReadStream(join(dir, 'snapshot.rdb'))), ConflictError);
    const plain = await scratch();
    await assert.rejects(restoreRdb({ url: plain.url }, [Buffer.from('not an rdb, just some bytes')]), IntegrityError);
    assert.equal(plain.child.exitCode, null);
    assert.ok(!existsSync(join(plain.dir, 'dump.rdb')));
    assert.equal((await keyspaceSummary({ url: plain.url }, { types: false })).keys, 0);
  });
});
