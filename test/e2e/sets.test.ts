/**
 * Whole backup sets against the real bed: a system with PostgreSQL, Redis
 * (snapshot), a directory and a SQLite database, encrypted. Backed up as one
 * set, the live data changed, the set restored: every component equal to
 * what was backed up. Then verification, `latest-verified`, a corrupted
 * object, a wrong master key, Redis's logical mode, and old sets readable
 * after the master key changes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { bedEnv, bedStore, client, startWorker, testSetup, type TestSetup, type WorkerProcess } from '../support/bed.ts';
import { createSampleDatabase, dropDatabase, sql } from '../support/data.ts';
import { assertSameRedis, fillFiles, fillRedis, redisState, redisUrl, setFingerprint, sqlite as sqliteIn } from '../support/sets.ts';
import { startScratchRedis, type ScratchRedis } from '../../src/adapters/redis.ts';
import { findComponent, type Manifest } from '../../src/domain/manifest.ts';
import { innermostMessage } from '../../src/errors.ts';
import type { OpsflowClient } from '../../src/client.ts';

const DB = 'sets_app';
const LIVE_DB = 5;
const STAGING_DB = 6;
const LOGICAL_DB = 7;
const dir = join(bedEnv('OPSFLOW_TEST_DIR'), `sets-${randomBytes(3).toString('hex')}`);
const dataDir = join(dir, 'data');
const sqliteFile = join(dir, 'hive.db');
const sqlite = (sqlText: string) => sqliteIn(sqliteFile, sqlText);
const keys = { K1: randomBytes(32).toString('base64'), K2: randomBytes(32).toString('hex') };

function setupWith(current: 'k1' | 'k2'): TestSetup {
  return testSetup('sets', { full: DB, logical: DB, counted: DB }, {
    full: {
      redis: { url: { env: 'FULL_REDIS_URL' } },
      backup: {
        components: [
          { kind: 'postgres' },
          { kind: 'redis', name: 'cache', mode: 'snapshot', stagingDb: STAGING_DB },
          { kind: 'files', name: 'data', path: dataDir },
          { kind: 'sqlite', name: 'hive', path: sqliteFile },
        ],
        encryption: { current, keys: { k1: { env: 'SETS_KEY1' }, k2: { env: 'SETS_KEY2' } } },
      },
    },
    logical: {
      redis: { url: { env: 'LOGICAL_REDIS_URL' } },
      backup: { components: [{ kind: 'redis', name: 'cache', mode: 'logical', stagingDb: LOGICAL_DB + 1 }] },
    },
    counted: {
      redis: { url: { env: 'COUNTED_REDIS_URL' } },
      backup: { components: [{ kind: 'redis', name: 'cache', mode: 'snapshot' }] },
    },
  });
}

const setup = setupWith('k1');
/** COUNTED_REDIS_URL is added once its server is up. */
const workerEnv: Record<string, string> = { FULL_REDIS_URL: redisUrl(LIVE_DB), LOGICAL_REDIS_URL: redisUrl(LOGICAL_DB), SETS_KEY1: keys.K1, SETS_KEY2: keys.K2 };
/** A redis-server of this test's own for `counted`, whose databases in use it decides. */
let countedRedis: ScratchRedis;
const COUNTED_DB = 2;
let opsflow: OpsflowClient;
let worker: WorkerProcess;

// ---------------------------------------------------------------- the live data and its fingerprints

const fingerprint = () => setFingerprint({ database: DB, redisDb: LIVE_DB, filesDir: dataDir, sqliteFile });

/** Changes every component, so a restore has something to undo. */
async function changeEverything(): Promise<void> {
  await sql(DB, `DELETE FROM app.documents WHERE id % 3 = 0; INSERT INTO audit.events (kind, at) VALUES ('after-backup', now())`);
  const r = new Redis(redisUrl(LIVE_DB));
  await r.del('h', 's:1');
  await r.set('new-key', 'x');
  await r.persist('ttl:3');
  r.disconnect();
  writeFileSync(join(dataDir, 'checkpoints', 'cp-0.bin'), 'overwritten');
  rmSync(join(dataDir, 'empty'), { recursive: true });
  writeFileSync(join(dataDir, 'added.txt'), 'new');
  sqlite(`INSERT INTO agents (name) VALUES ('late')`);
}

async function failureOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return innermostMessage(err);
  }
  assert.fail('expected the run to fail');
}

before(async () => {
  mkdirSync(dir, { recursive: true });
  await createSampleDatabase(DB, 5000);
  await fillRedis(LIVE_DB);
  fillFiles(dataDir);
  sqlite(`PRAGMA journal_mode=WAL; CREATE TABLE agents (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO agents (name) SELECT 'agent ' || value FROM generate_series(1, 300);`);
  countedRedis = await startScratchRedis({ args: ['--repl-diskless-sync-delay', '0'] }); // no wait for other replicas
  workerEnv.COUNTED_REDIS_URL = `redis://127.0.0.1:${countedRedis.port}/${COUNTED_DB}`;
  opsflow = await client(setup);
  worker = await startWorker(setup, workerEnv);
});

after(async () => {
  await worker?.stop();
  await opsflow?.close();
  await countedRedis?.stop();
  await dropDatabase(DB);
  for (const db of [LIVE_DB, STAGING_DB, LOGICAL_DB, LOGICAL_DB + 1]) {
    const r = new Redis(redisUrl(db));
    await r.flushdb();
    r.disconnect();
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('backup sets: every component, encrypted, round trip', () => {
  let manifest: Manifest;
  let before: Awaited<ReturnType<typeof fingerprint>>;

  it('backs up all components under one set ID and one manifest, encrypted', async () => {
    before = await fingerprint();
    const result = await (await opsflow.startBackup({ system: 'full' })).result();
    manifest = result.manifest!;
    assert.deepEqual(manifest.components.map((c) => `${c.kind}:${c.name}`), ['postgres:postgres', 'redis:cache', 'files:data', 'sqlite:hive']);
    assert.equal(manifest.encryption?.wrappedKey.keyId, 'k1');
    const cache = findComponent(manifest, 'cache');
    assert.equal(cache?.kind === 'redis' && cache.keys, 555, 'exact key count of the snapshot');
    const files = findComponent(manifest, 'data');
    assert.equal(files?.kind === 'files' && files.tree.sha256, before.files.sha256, 'the digest of the tree as archived');
    for (const c of manifest.components) {
      assert.match(c.key, new RegExp(`^${setup.prefix}/full/\\d{4}/\\d{2}/\\d{2}/${manifest.backupId}/${c.name}\\.[a-z]+\\.zst\\.enc$`));
      const { body } = await bedStore().getStream(c.key);
      const head = (await body.toArray() as Buffer[]).reduce((a, b) => Buffer.concat([a, b])).subarray(0, 7);
      assert.equal(head.toString('latin1'), 'opsflow', `${c.name} is stored encrypted`);
    }
  });

  it('restores the whole set: PostgreSQL tables and schema, Redis keys with TTLs, the file tree and SQLite all equal the backup', async () => {
    await changeEverything();
    assert.notDeepEqual((await fingerprint()).tables, before.tables);
    const run = await opsflow.startRestore({ system: 'full', backup: manifest.backupId, approved: true });
    const result = await run.result();
    assert.deepEqual(Object.keys(result.restored ?? {}), ['postgres', 'cache', 'data', 'hive']);
    const after = await fingerprint();
    assert.deepEqual(after.tables, before.tables);
    assert.equal(after.schema, before.schema);
    assertSameRedis(after.redis, before.redis);
    assert.deepEqual(after.files, before.files);
    assert.equal(after.sqlite, before.sqlite);
    const staging = new Redis(redisUrl(STAGING_DB));
    assert.equal(await staging.dbsize(), 0, 'the spare Redis database is emptied');
    staging.disconnect();
  });

  it('deep verification restores each component into a scratch place; latest-verified then picks the set', async () => {
    const verified = await (await opsflow.startVerify({ system: 'full', backup: manifest.backupId })).result();
    assert.deepEqual(Object.keys(verified.components), ['postgres', 'cache', 'data', 'hive']);
    assert.match(verified.components.cache!, /555 keys/);
    const dry = await (await opsflow.startRestore({ system: 'full', backup: 'latest-verified', dryRun: true })).result();
    assert.equal(dry.plan.backupId, manifest.backupId);
    const scratch = await sql<{ datname: string }>('postgres', `SELECT datname FROM pg_database WHERE datname LIKE '${DB}_verify_%'`);
    assert.deepEqual(scratch, [], 'no scratch database left');
  });

  it('a corrupted object: verification and restore fail naming it, and the live data is unchanged', async () => {
    const second = (await (await opsflow.startBackup({ system: 'full' })).result()).manifest!;
    const files = findComponent(second, 'hive')!;
    const { body } = await bedStore().getStream(files.key);
    const bytes = Buffer.concat(await body.toArray() as Buffer[]);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    await bedStore().uploadStream(files.key, (async function* () { yield bytes; })());
    const live = await fingerprint();

    const verifyError = await failureOf((await opsflow.startVerify({ system: 'full', backup: second.backupId })).result());
    assert.match(verifyError, /failed authentication|corrupt/);
    const restoreError = await failureOf((await opsflow.startRestore({ system: 'full', backup: second.backupId, approved: true })).result());
    assert.match(restoreError, /failed authentication|corrupt/);
    const after = await fingerprint();
    assert.deepEqual(after.tables, live.tables);
    assertSameRedis(after.redis, live.redis);
    assert.deepEqual(after.files, live.files);
    assert.equal(after.sqlite, live.sqlite);
    await bedStore().deleteObjects([`${files.key.slice(0, files.key.lastIndexOf('/') + 1)}manifest.json`]);
  });

  it('a wrong master key: a clear error naming the key, nothing changed', async () => {
    const wrong = await startWorker(setup, { ...workerEnv, SETS_KEY1: randomBytes(32).toString('base64') });
    await worker.stop();
    try {
      const message = await failureOf((await opsflow.startRestore({ system: 'full', backup: manifest.backupId, approved: true, components: ['data'] })).result());
      assert.match(message, /master key "k1" does not open: wrong master key or a tampered manifest/);
      assert.ok(!message.includes(keys.K1));
    } finally {
      await wrong.stop();
      worker = await startWorker(setup, workerEnv);
    }
  });

  it('after the master key changes, new sets use the new key and old sets stay readable', async () => {
    const rotated = setupWith('k2');
    writeFileSync(setup.configPath, readFileSync(rotated.configPath, 'utf8').replaceAll(rotated.prefix, setup.prefix));
    await worker.stop();
    worker = await startWorker(setup, workerEnv);
    const fresh = (await (await opsflow.startBackup({ system: 'full' })).result()).manifest!;
    assert.equal(fresh.encryption?.wrappedKey.keyId, 'k2');
    const old = await (await opsflow.startVerify({ system: 'full', backup: manifest.backupId })).result();
    assert.equal(old.backupId, manifest.backupId);
  });
});

describe('Redis logical mode (SCAN + DUMP + PTTL, RESTORE)', () => {
  it('round trip into the live database through a spare one', async () => {
    await fillRedis(LOGICAL_DB);
    const expected = await redisState(LOGICAL_DB);
    const result = await (await opsflow.startBackup({ system: 'logical' })).result();
    const cache = findComponent(result.manifest!, 'cache')!;
    assert.equal(cache.kind === 'redis' && cache.mode, 'logical');
    const r = new Redis(redisUrl(LOGICAL_DB));
    await r.flushdb();
    await r.set('stray', '1');
    r.disconnect();
    await (await opsflow.startRestore({ system: 'logical', approved: true })).result();
    assertSameRedis(await redisState(LOGICAL_DB), expected);
  });
});

describe("a snapshot's key counts", () => {
  const backUp = async () => {
    const manifest = (await (await opsflow.startBackup({ system: 'counted' })).result()).manifest!;
    const cache = findComponent(manifest, 'cache');
    assert.ok(cache?.kind === 'redis');
    return cache;
  };

  it("come from the RDB's opening when the database is its first; else redis-check-rdb reads the whole RDB for them", async () => {
    const r = new Redis(countedRedis.url);
    try {
      await r.select(COUNTED_DB);
      for (let i = 0; i < 300; i++) await (i < 40 ? r.set(`k:${i}`, i, 'EX', 3600) : r.set(`k:${i}`, i));
      const first = await backUp();
      assert.deepEqual([first.keys, first.expires, first.deepChecked], [300, 40, false], `db ${COUNTED_DB} alone: counted from its RESIZEDB record`);
      await r.select(0);
      await r.set('before', 'x');
      const behind = await backUp();
      assert.deepEqual([behind.keys, behind.expires, behind.deepChecked], [300, 40, true], 'behind db 0: counted by the check');
    } finally {
      r.disconnect();
    }
  });
});
