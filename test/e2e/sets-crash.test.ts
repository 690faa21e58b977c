/**
 * Worker crashes in the middle of a backup set and of its restore, for every
 * component kind: PostgreSQL, Redis (snapshot), a directory and SQLite,
 * encrypted. The worker is killed (SIGKILL) while each component's bytes
 * are moving (`backup <name>` one after another; then once in the restore,
 * whose components stage at once) and once inside a swap (`swapIn cache`,
 * held there by pausing Redis writes); a new worker finishes the same
 * workflow each time.
 *
 * Nothing lost: the set verifies, and the restored live data equals what was
 * backed up, component by component. Nothing done twice: one set, one
 * manifest listing each component once, one object per component, no
 * incomplete upload, no staging database, spare Redis database, staged or
 * swapped-out sibling left, and nothing in S3 but the set itself.
 *
 * A transfer cap (`limits.transferMBps`) makes each component's transfer
 * last seconds, so the kill lands mid-transfer; workers that only finish
 * (the last retry, verification) run without it, to keep the file short.
 */
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import pg from 'pg';
import { bedEnv, bedStore, client, eventually, pgUrl, startWorker, testSetup, type WorkerProcess } from '../support/bed.ts';
import { createSampleDatabase, dropDatabase, sql } from '../support/data.ts';
import { assertSameSet, fillFiles, fillRedis, redisUrl, setFingerprint, sqlite, type SetFingerprint } from '../support/sets.ts';
import type { OpsflowClient } from '../../src/client.ts';
import { componentStoredBytes, objectsOf, type Manifest, type PostgresComponent } from '../../src/domain/manifest.ts';
import { heartbeatsOf } from '../../src/progress.ts';
import { backupIdFor, backupPrefix, recoveryDatabaseName, retiredDatabaseName } from '../../src/domain/names.ts';

const SYSTEM = 'setscrash';
const DB = 'setscrash_app';
const LIVE_DB = 9;
const STAGING_DB = 10;
const dir = join(bedEnv('OPSFLOW_TEST_DIR'), `sets-crash-${randomBytes(3).toString('hex')}`);
const dataDir = join(dir, 'data');
const sqliteFile = join(dir, 'hive.db');
/** The workers' temporary directory, to see what killed workers leave there. */
const workerTmp = join(dir, 'tmp');
const places = { database: DB, redisDb: LIVE_DB, filesDir: dataDir, sqliteFile };
/** Each component is ~4 MB stored (incompressible data): at 1 MB/s, seconds of transfer to land a kill in. */
const BULK = { count: 1000, bytes: 4000 };

/**
 * Component names in set order, their object names in the set's folder, and
 * the object that holds the bulk. The database is split: a schema object and
 * 3 data parts, the first two app.blobs' rows (the largest table, in 2 row
 * ranges, written and read back with COPY), the last the other tables'.
 */
const COMPONENTS = [
  { name: 'postgres', file: 'postgres.dump.zst.enc', bulk: 'postgres.data-1.dump.zst.enc' },
  { name: 'cache', file: 'cache.rdb.zst.enc', bulk: 'cache.rdb.zst.enc' },
  { name: 'data', file: 'data.tar.zst.enc', bulk: 'data.tar.zst.enc' },
  { name: 'hive', file: 'hive.sqlite.zst.enc', bulk: 'hive.sqlite.zst.enc' },
] as const;

const setup = testSetup('setscrash', { [SYSTEM]: DB }, {
  [SYSTEM]: {
    redis: { url: { env: 'SETSCRASH_REDIS_URL' } },
    limits: { transferMBps: 1 },
    backup: {
      components: [
        { kind: 'postgres', splitFromBytes: 0 },
        { kind: 'redis', name: 'cache', mode: 'snapshot', stagingDb: STAGING_DB, deepCheck: true },
        { kind: 'files', name: 'data', path: dataDir },
        { kind: 'sqlite', name: 'hive', path: sqliteFile },
      ],
      encryption: { current: 'k1', keys: { k1: { env: 'SETSCRASH_KEY' } } },
    },
  },
});
/** The same config without the cap, for workers that only finish what was started. */
const fastConfig = join(dir, 'fast.yaml');
const workerEnv = { SETSCRASH_REDIS_URL: redisUrl(LIVE_DB), SETSCRASH_KEY: randomBytes(32).toString('base64'), TMPDIR: workerTmp };

let opsflow: OpsflowClient;
let worker: WorkerProcess | undefined;
let syncDelay: string | undefined;
const started = Date.now();

async function newWorker(speed: 'capped' | 'fast'): Promise<void> {
  worker = await startWorker(setup, speed === 'fast' ? { ...workerEnv, OPSFLOW_CONFIG: fastConfig } : workerEnv);
}

/**
 * Waits until the workflow's running activities heartbeat every one of
 * `steps` (first attempts) with at least `minBytes` moved each, SIGKILLs the
 * worker, and starts a new one. Returns the bytes each had moved.
 */
async function killDuring(t: TestContext, workflowId: string, steps: string[], minBytes: number, next: 'capped' | 'fast', beforeKill?: () => Promise<void>) {
  const handle = opsflow.temporal.workflow.getHandle(workflowId);
  const moved = await eventually(`${steps.join(', ')} under way`, async () => {
    const heartbeats = await heartbeatsOf(handle);
    const seen: Record<string, number> = {};
    for (const hb of heartbeats) {
      if (!steps.includes(hb.step) || hb.attempt !== 1) continue;
      seen[hb.step] = 'bytesIn' in hb ? (hb.step.startsWith('backup') ? hb.bytesOut : hb.bytesIn) : 0;
    }
    return steps.every((step) => (seen[step] ?? -1) >= minBytes) ? seen : undefined;
  }, 120_000).catch(async (err: Error) => {
    // Say where the run is instead: its steps, its running activities, the worker's last lines.
    const status = await opsflow.status(workflowId).catch((e: Error) => e.message);
    const pending = (await handle.describe()).raw.pendingActivities?.map((a) => ({ type: a.activityType?.name, attempt: a.attempt, state: a.state, lastFailure: a.lastFailure?.message }));
    throw new Error(`${err.message}\nstatus: ${JSON.stringify(status)}\npending: ${JSON.stringify(pending)}\nheartbeats: ${JSON.stringify(await heartbeatsOf(handle))}\nworker:\n${worker?.logs().slice(-3000)}`);
  });
  await beforeKill?.();
  await worker!.kill();
  t.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)} s: killed the worker during ${steps.map((step) => `"${step}" after ${moved[step]} bytes`).join(', ')}`);
  await newWorker(next);
  return moved;
}

/** The last attempt of each `activityType` activity in the workflow's history, by component name. */
async function lastAttempts(workflowId: string, activityType: string): Promise<Record<string, number>> {
  const events = (await opsflow.temporal.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  const names = new Map<string, string>();
  const attempts: Record<string, number> = {};
  for (const e of events) {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled?.activityType?.name === activityType) {
      const input = JSON.parse(Buffer.from(scheduled.input!.payloads![0]!.data!).toString('utf8')) as { name?: string; component?: { name: string } };
      names.set(String(e.eventId), input.name ?? input.component!.name);
    }
    const startedEvent = e.activityTaskStartedEventAttributes;
    const name = startedEvent && names.get(String(startedEvent.scheduledEventId));
    if (name) attempts[name] = Math.max(attempts[name] ?? 0, startedEvent.attempt ?? 1);
  }
  return attempts;
}

/** Processes with `dir` on their command line (a scratch redis-server has its --dir there). */
function processesUsing(dir: string): string[] {
  try {
    return execFileSync('pgrep', ['-a', '-f', dir], { encoding: 'utf8' }).trim().split('\n');
  } catch {
    return []; // pgrep exits 1 when none match
  }
}

async function listKeys(prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of bedStore().listKeys(prefix)) keys.push(o.key);
  return keys.sort();
}

async function objectDigest(key: string): Promise<{ sha256: string; bytes: number }> {
  const { body } = await bedStore().getStream(key);
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** What restores and verifications leave beside the live places: must be nothing. */
function siblingsLeft(): string[] {
  return readdirSync(dir).filter((name) => name.includes('opsflow'));
}

async function withRedis<T>(db: number, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(redisUrl(db));
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

// ---------------------------------------------------------------- the live data

async function fillAll(): Promise<void> {
  await createSampleDatabase(DB, 5000);
  // md5 of random text: 16 incompressible bytes each, BULK.bytes per row.
  await sql(DB, `CREATE TABLE app.blobs (id int PRIMARY KEY, data bytea NOT NULL);
    INSERT INTO app.blobs SELECT g, decode(string_agg(md5(random()::text), ''), 'hex')
      FROM generate_series(1, ${BULK.count}) g, generate_series(1, ${BULK.bytes / 16}) i GROUP BY g`);

  await fillRedis(LIVE_DB);
  await withRedis(LIVE_DB, async (r) => {
    const p = r.pipeline();
    for (let i = 0; i < BULK.count; i++) p.set(`bulk:${i}`, randomBytes(BULK.bytes));
    await p.exec();
  });

  fillFiles(dataDir);
  mkdirSync(join(dataDir, 'bulk'));
  for (let i = 0; i < 4; i++) writeFileSync(join(dataDir, 'bulk', `part-${i}.bin`), randomBytes((BULK.count * BULK.bytes) / 4));

  sqlite(sqliteFile, `PRAGMA journal_mode=WAL;
    CREATE TABLE agents (id INTEGER PRIMARY KEY, name TEXT);
    INSERT INTO agents (name) SELECT 'agent ' || value FROM generate_series(1, 300);
    CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
    INSERT INTO blobs (data) SELECT randomblob(${BULK.bytes}) FROM generate_series(1, ${BULK.count});`);
}

/** Changes every component, so the restore has something to undo. */
async function changeEverything(): Promise<void> {
  await sql(DB, `DELETE FROM app.documents WHERE id % 3 = 0; DELETE FROM app.blobs WHERE id % 2 = 0;
    INSERT INTO audit.events (kind, at) VALUES ('after-backup', now())`);
  await withRedis(LIVE_DB, async (r) => {
    await r.del('h', 's:1', 'bulk:7');
    await r.set('new-key', 'x');
    await r.persist('ttl:3');
  });
  writeFileSync(join(dataDir, 'checkpoints', 'cp-0.bin'), 'overwritten');
  rmSync(join(dataDir, 'bulk', 'part-1.bin'));
  writeFileSync(join(dataDir, 'added.txt'), 'new');
  sqlite(sqliteFile, `INSERT INTO agents (name) VALUES ('late'); DELETE FROM blobs WHERE id < 100;`);
}

before(async () => {
  mkdirSync(workerTmp, { recursive: true });
  const capped = readFileSync(setup.configPath, 'utf8');
  const fast = capped.replace('    limits:\n      transferMBps: 1\n', '');
  assert.notEqual(fast, capped, 'the fast config drops the transfer cap');
  writeFileSync(fastConfig, fast);
  await fillAll();
  // Redis waits repl-diskless-sync-delay (5 s) before it streams a snapshot: no need to, here.
  await withRedis(LIVE_DB, async (r) => {
    syncDelay = ((await r.call('CONFIG', 'GET', 'repl-diskless-sync-delay')) as string[])[1];
    await r.call('CONFIG', 'SET', 'repl-diskless-sync-delay', '0');
  });
  opsflow = await client(setup);
});

after(async () => {
  await worker?.stop();
  await opsflow?.close();
  await withRedis(LIVE_DB, async (r) => {
    await r.call('CLIENT', 'UNPAUSE');
    if (syncDelay !== undefined) await r.call('CONFIG', 'SET', 'repl-diskless-sync-delay', syncDelay);
  }).catch(() => undefined);
  for (const { datname } of await sql<{ datname: string }>('postgres', `SELECT datname FROM pg_database WHERE datname LIKE '${DB}%'`)) await dropDatabase(datname);
  for (const db of [LIVE_DB, STAGING_DB]) await withRedis(db, (r) => r.flushdb());
  rmSync(dir, { recursive: true, force: true });
});

describe('worker killed mid-backup and mid-restore of a set, every component kind', () => {
  let manifest: Manifest;
  let backedUp: SetFingerprint;

  it('a backup killed during each component is finished by new workers: one set, each component once, no incomplete upload, verifies', async (t) => {
    backedUp = await setFingerprint(places);
    await newWorker('capped');
    const run = await opsflow.startBackup({ system: SYSTEM });
    const { startTime } = await run.handle.describe();
    const folder = backupPrefix(setup.prefix, SYSTEM, backupIdFor(startTime, run.workflowId));
    const killedAfter: Record<string, number> = {};
    for (const [i, { name, bulk }] of COMPONENTS.entries()) {
      const last = i === COMPONENTS.length - 1;
      const moved = await killDuring(t, run.workflowId, [`backup ${name}`], 100_000, last ? 'fast' : 'capped', async () => {
        assert.equal((await bedStore().incompleteUploads(folder + bulk)).length, 1, `the upload of ${name} is in flight`);
      });
      killedAfter[name] = moved[`backup ${name}`]!;
    }

    manifest = (await run.result()).manifest!;
    t.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)} s: backup ${manifest.backupId} done`);
    assert.deepEqual(manifest.components.map((c) => c.name), COMPONENTS.map((c) => c.name), 'each component once, in order');
    assert.equal(manifest.encryption?.wrappedKey.keyId, 'k1');
    const cache = manifest.components[1];
    assert.ok(cache?.kind === 'redis' && cache.deepChecked, 'redis-check-rdb read the whole RDB (deepCheck), in the attempt that finished');
    const keys = COMPONENTS.map((c) => folder + c.file);
    assert.deepEqual(manifest.components.map((c) => c.key), keys);
    const pgParts = (manifest.components[0] as PostgresComponent).dataParts ?? [];
    assert.deepEqual(pgParts.map((p) => p.key), [1, 2, 3].map((n) => `${folder}postgres.data-${n}.dump.zst.enc`), 'the database in a schema object and 3 data parts');
    assert.deepEqual(pgParts.map((p) => p.rows && p.tables), [['app.blobs'], ['app.blobs'], undefined], "app.blobs' rows in 2 ranges, then an archive of the rest");
    const objects = manifest.components.flatMap((c) => objectsOf(c));
    assert.deepEqual(await listKeys(`${setup.prefix}/`), [...objects.map((o) => o.key), `${folder}manifest.json`].sort(), 'one set: its objects and one manifest, nothing else');
    for (const o of objects) {
      // MinIO lists multipart uploads by exact key only.
      assert.deepEqual(await bedStore().incompleteUploads(o.key), [], `no incomplete upload of ${o.key}`);
      assert.deepEqual(await objectDigest(o.key), { sha256: o.sha256, bytes: o.storedBytes }, `${o.key} as stored is what the manifest says`);
    }
    for (const c of manifest.components) {
      assert.ok(killedAfter[c.name]! < componentStoredBytes(c), `${c.name}: the kill came mid-transfer (${killedAfter[c.name]} of ${componentStoredBytes(c)} bytes)`);
    }
    assert.deepEqual(await lastAttempts(run.workflowId, 'backupComponent'), { postgres: 2, cache: 2, data: 2, hive: 2 }, 'each component backed up again by a new worker, once');

    const verified = await (await opsflow.startVerify({ system: SYSTEM, backup: manifest.backupId })).result();
    assert.deepEqual(Object.keys(verified.components), COMPONENTS.map((c) => c.name));
    assert.match(verified.components.cache!, new RegExp(`^${BULK.count + 555} keys`));
    assert.deepEqual(siblingsLeft(), []);
    t.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)} s: verified`);
  });

  it('a restore killed while staging every component and inside a swap is finished by new workers: every component exact, nothing left behind', async (t) => {
    assert.ok(manifest, 'needs the backup of the first test');
    await changeEverything();
    assert.notDeepEqual((await setFingerprint(places)).tables, backedUp.tables);
    await worker!.stop();
    await newWorker('capped');

    // The database's swap-in, the first, will be held on a lock: its RENAME waits for this open
    // transaction's COMMENT ON the database. Then Redis writes are paused, the lock let go, and the
    // cache's SWAPDB, next, waits inside its activity for a kill.
    const hold = new pg.Client({ connectionString: pgUrl('postgres') });
    await hold.connect();
    await hold.query('BEGIN');
    await hold.query(`COMMENT ON DATABASE ${DB} IS 'held by the test'`);
    let run: Awaited<ReturnType<typeof opsflow.startRestore>>;
    let tag: string;
    try {
      run = await opsflow.startRestore({ system: SYSTEM, backup: manifest.backupId, approved: true });
      tag = (await run.handle.describe()).runId;
      // The components stage at once: one kill lands in all four downloads.
      const moved = await killDuring(t, run.workflowId, COMPONENTS.map(({ name }) => `stage ${name}`), 100_000, 'fast');
      for (const { name } of COMPONENTS) {
        const storedBytes = componentStoredBytes(manifest.components.find((c) => c.name === name)!);
        assert.ok(moved[`stage ${name}`]! < storedBytes, `${name}: the kill came mid-download (${moved[`stage ${name}`]} of ${storedBytes} bytes)`);
      }
      await eventually('the database swap waiting on the lock', async () => {
        const waiting = await hold.query(`SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.objid WHERE l.locktype = 'object' AND NOT l.granted AND d.datname = $1`, [DB]);
        return waiting.rowCount ? true : undefined;
      }, 120_000);
      await withRedis(LIVE_DB, (r) => r.call('CLIENT', 'PAUSE', '120000', 'WRITE'));
    } finally {
      await hold.query('ROLLBACK');
      await hold.end();
    }
    await killDuring(t, run.workflowId, ['swapIn cache'], 0, 'fast', async () => {
      assert.equal(await withRedis(STAGING_DB, (r) => r.exists(`opsflow:restore-marker:${tag}`)), 1, 'the cache is staged, not yet swapped');
    });
    await withRedis(LIVE_DB, (r) => r.call('CLIENT', 'UNPAUSE'));
    // Either way is right: the killed attempt's SWAPDB, sent before the kill, may run as Redis resumes; then the retry finds the marker live and does nothing.
    await sleep(500);
    const stillStaged = await withRedis(STAGING_DB, (r) => r.exists(`opsflow:restore-marker:${tag}`));
    t.diagnostic(stillStaged ? 'the killed swap-in had not swapped: the new worker swaps' : 'the killed swap-in\'s SWAPDB ran when Redis resumed: the new worker finds it done');

    const result = await run.result();
    t.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)} s: restore done`);
    assert.deepEqual(Object.keys(result.restored ?? {}), COMPONENTS.map((c) => c.name));
    assertSameSet(await setFingerprint(places), backedUp);

    assert.deepEqual(await lastAttempts(run.workflowId, 'stageComponent'), { postgres: 2, cache: 2, data: 2, hive: 2 }, 'each component staged again by a new worker');
    assert.equal((await lastAttempts(run.workflowId, 'swapInComponent')).cache, 2, 'the cache swapped in by a new worker');

    // What a successful restore keeps: the replaced database, renamed. Nothing else.
    const databases = await sql<{ datname: string }>('postgres', `SELECT datname FROM pg_database WHERE datname LIKE '${DB}%' ORDER BY 1`);
    assert.deepEqual(databases.map((d) => d.datname), [DB, retiredDatabaseName(DB, tag)].sort());
    assert.ok(!databases.some((d) => d.datname === recoveryDatabaseName(DB, tag)));
    assert.equal(await withRedis(STAGING_DB, (r) => r.dbsize()), 0, 'the spare Redis database is empty');
    assert.deepEqual(siblingsLeft(), [], 'no staged, partial or swapped-out copy beside the directory or the SQLite file');
    const folder = manifest.components[0]!.key.slice(0, manifest.components[0]!.key.lastIndexOf('/') + 1);
    assert.deepEqual(
      await listKeys(`${setup.prefix}/`),
      [...manifest.components.flatMap((c) => objectsOf(c).map((o) => o.key)), `${folder}manifest.json`, `${folder}verified.json`].sort(),
      'no restore scratch objects in S3',
    );
    // Killed workers leave scratch directories (and a scratch redis-server on one); each new worker removed them as it started.
    assert.deepEqual(readdirSync(workerTmp), [], 'nothing left in the workers\' temporary directory');
    assert.deepEqual(processesUsing(workerTmp), [], 'no scratch process left running');
  });
});
