/**
 * Live data for backup-set tests and exact fingerprints of it: Redis keys
 * (type, value, absolute expiry), a directory tree, a SQLite database and a
 * PostgreSQL database, so a restore can be compared with what was backed up.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { bedEnv } from './bed.ts';
import { schemaOf, tableChecksums } from './data.ts';
import { treeDigest, type TreeDigest } from '../../src/adapters/files.ts';

/** Database `db` of the bed's Redis. */
export const redisUrl = (db: number) => `redis://127.0.0.1:${bedEnv('BED_REDIS_PORT')}/${db}`;

/** Empties Redis database `db` and fills it with every type, TTLs and a binary key. */
export async function fillRedis(db: number): Promise<void> {
  const r = new Redis(redisUrl(db));
  await r.flushdb();
  const p = r.pipeline();
  for (let i = 0; i < 500; i++) p.set(`s:${i}`, `value ${i} ✓`);
  for (let i = 0; i < 50; i++) p.set(`ttl:${i}`, `expires ${i}`, 'EX', 3600 + i);
  p.hset('h', { a: '1', b: '2', c: 'ü' });
  p.rpush('l', 'x', 'y', 'z');
  p.sadd('set', 'm1', 'm2', 'm3');
  p.zadd('z', 1, 'one', 2.5, 'two and a half');
  p.set(Buffer.from([0xff, 0x00, 0x01]), Buffer.from([0xde, 0xad]));
  await p.exec();
  r.disconnect();
}

export type RedisState = Map<string, { type: string; value: string; expireAt: number }>;

/** Every key: type, value (order-free where Redis is), and absolute expiry in ms (0: none). */
export async function redisState(db: number): Promise<RedisState> {
  const r = new Redis(redisUrl(db));
  const state: RedisState = new Map();
  for (const key of await r.keysBuffer('*')) {
    const type = await r.type(key);
    let value: unknown;
    if (type === 'string') value = (await r.getBuffer(key))!.toString('hex');
    else if (type === 'hash') value = Object.entries(await r.hgetall(key)).sort();
    else if (type === 'list') value = await r.lrange(key, 0, -1);
    else if (type === 'set') value = (await r.smembers(key)).sort();
    else if (type === 'zset') value = await r.zrange(key, 0, -1, 'WITHSCORES');
    const pttl = await r.pttl(key);
    state.set(key.toString('hex'), { type, value: JSON.stringify(value), expireAt: pttl > 0 ? Date.now() + pttl : 0 });
  }
  r.disconnect();
  return state;
}

export function assertSameRedis(actual: RedisState, expected: RedisState): void {
  assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort(), 'the same keys');
  for (const [key, e] of expected) {
    const a = actual.get(key)!;
    assert.equal(a.type, e.type, `type of ${key}`);
    assert.equal(a.value, e.value, `value of ${key}`);
    assert.equal(a.expireAt === 0, e.expireAt === 0, `TTL present on ${key}`);
    if (e.expireAt) assert.ok(Math.abs(a.expireAt - e.expireAt) < 1000, `TTL of ${key} within a second (${a.expireAt - e.expireAt} ms)`);
  }
}

/** (Re)creates `dir` with files of several sizes, nested and empty directories, modes, a long name and a symlink. */
export function fillFiles(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'checkpoints', 'deep', 'er'), { recursive: true });
  mkdirSync(join(dir, 'empty'));
  for (let i = 0; i < 40; i++) writeFileSync(join(dir, 'checkpoints', `cp-${i}.bin`), randomBytes(1000 + i * 37));
  writeFileSync(join(dir, 'checkpoints', 'deep', 'er', `${'long-name-'.repeat(12)}.json`), '{"ok":true}');
  writeFileSync(join(dir, 'secret.key'), 'k');
  chmodSync(join(dir, 'secret.key'), 0o600);
  writeFileSync(join(dir, 'run.sh'), '#!/bin/sh\n');
  chmodSync(join(dir, 'run.sh'), 0o755);
  symlinkSync('checkpoints/cp-1.bin', join(dir, 'latest'));
}

/** Runs one statement (or dot-command) with the sqlite3 CLI on `file`; its output. */
export function sqlite(file: string, sqlText: string): string {
  return execFileSync('sqlite3', [file, sqlText]).toString();
}

/** SHA-256 of `.dump`: the schema and every row, whatever the file's page layout. */
export function sqliteDumpHash(file: string): string {
  return createHash('sha256').update(execFileSync('sqlite3', [file, '.dump'], { maxBuffer: 1 << 30 })).digest('hex');
}

/** Where a set's four components live. */
export interface SetPlaces {
  database: string;
  redisDb: number;
  filesDir: string;
  sqliteFile: string;
}

export interface SetFingerprint {
  tables: Record<string, string>;
  schema: string;
  redis: RedisState;
  files: TreeDigest;
  sqlite: string;
}

export async function setFingerprint(places: SetPlaces): Promise<SetFingerprint> {
  return {
    tables: await tableChecksums(places.database),
    schema: schemaOf(places.database),
    redis: await redisState(places.redisDb),
    files: await treeDigest(places.filesDir),
    sqlite: sqliteDumpHash(places.sqliteFile),
  };
}

/** Every component of `actual` equals `expected`'s: tables and schema, keys with TTLs, the tree, the SQLite dump. */
export function assertSameSet(actual: SetFingerprint, expected: SetFingerprint): void {
  assert.deepEqual(actual.tables, expected.tables);
  assert.equal(actual.schema, expected.schema);
  assertSameRedis(actual.redis, expected.redis);
  assert.deepEqual(actual.files, expected.files);
  assert.equal(actual.sqlite, expected.sqlite);
}
