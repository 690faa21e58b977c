/**
 * The SQLite adapter against the real sqlite3 CLI: a WAL-mode database with
 * an oddly named table and 100k rows (~25 MB), snapshotted while another
 * sqlite3 process keeps committing two rows per transaction. The snapshot
 * checks out, holds one consistent state (an even count) and opens alone,
 * without the -wal. Then restore, retry, undo and discard; a corrupted file;
 * a missing database.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { discardSqlitePrevious, inspectSqlite, restoreSqlite, sqliteSnapshot, undoRestoreSqlite } from '../../src/adapters/sqlite.ts';
import { IntegrityError, NotFoundError } from '../../src/errors.ts';

const ODD_TABLE = `it's an "odd" table`;
const ITEMS = 100_000;
const NOTES = 3_000;

const root = mkdtempSync(join(process.env.OPSFLOW_TEST_DIR ?? tmpdir(), 'sqlite-'));
// Quotes and a space in the directory: paths reach sqlite3 inside dot-commands and URIs.
const dir = join(root, `db dir 'with' "quotes"`);
mkdirSync(dir);
const source = join(dir, 'app.db');
const snapshotFile = join(dir, 'snapshot.sqlite');

function sqlite(db: string, ...commands: string[]): string {
  const result = spawnSync('sqlite3', ['-bail', db, ...commands], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (result.status !== 0) throw new Error(`sqlite3 ${db} failed: ${result.stderr}`);
  return result.stdout.trim();
}

/** The logical content, read without checkpointing or otherwise changing the files. */
function dumpHash(db: string): string {
  return createHash('sha256').update(sqlite(db, '-readonly', '.dump')).digest('hex');
}
const fileHash = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const walFlag = (path: string) => readFileSync(path).subarray(18, 19)[0];

function createDatabase(db: string): void {
  sqlite(
    db,
    'PRAGMA journal_mode=WAL',
    'CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, payload BLOB)',
    'CREATE TABLE pairs (batch INTEGER NOT NULL, side TEXT NOT NULL)',
    `CREATE TABLE "${ODD_TABLE.replaceAll('"', '""')}" (note TEXT)`,
    'CREATE INDEX pairs_batch ON pairs (batch)',
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${ITEMS}) INSERT INTO items (name, payload) SELECT 'item ' || i, randomblob(200) FROM n`,
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${NOTES}) INSERT INTO "${ODD_TABLE.replaceAll('"', '""')}" SELECT 'note ' || i FROM n`,
  );
}

/** A sqlite3 process committing two rows to `pairs` per transaction until stopped. */
function startWriter(db: string): { child: ChildProcess; stop: () => Promise<void> } {
  let running = true;
  const transactions = Readable.from(
    (function* () {
      yield '.timeout 10000\n';
      for (let batch = 0; running; batch++) {
        yield `BEGIN; INSERT INTO pairs VALUES (${batch}, 'left'); INSERT INTO pairs VALUES (${batch}, 'right'); COMMIT;\n`;
      }
    })(),
  );
  const child = spawn('sqlite3', ['-bail', db], { stdio: ['pipe', 'ignore', 'inherit'] });
  transactions.pipe(child.stdin!);
  return {
    child,
    stop: async () => {
      running = false;
      const [code] = await once(child, 'exit');
      assert.equal(code, 0, 'the writer exits cleanly');
    },
  };
}

const pairsIn = (db: string) => Number(sqlite(db, '-readonly', 'SELECT count(*) FROM pairs'));

before(() => createDatabase(source));
after(() => rmSync(root, { recursive: true, force: true }));

describe('sqliteSnapshot', () => {
  it('takes a consistent, checked, standalone copy while another process writes', { timeout: 60_000 }, async () => {
    const writer = startWriter(source);
    try {
      while (pairsIn(source) < 200) await sleep(20);
      const before = pairsIn(source);
      const started = Date.now();
      const info = await sqliteSnapshot(source, snapshotFile, {});
      const tookMs = Date.now() - started;
      const afterSnapshot = pairsIn(source);
      // A backup that restarts whenever the writer commits takes seconds here, or never ends; one snapshot takes ~0.1 s.
      assert.ok(tookMs < 5_000, `the snapshot took ${tookMs} ms`);
      assert.equal(writer.child.exitCode, null, 'the writer was still writing when the snapshot finished');
      assert.ok(afterSnapshot > before, 'the writer committed while the snapshot ran');

      assert.equal(info.integrity, 'ok');
      assert.equal(info.journalMode, 'delete');
      assert.equal(info.bytes, statSync(snapshotFile).size);
      assert.equal(info.pageSize, 4096);
      assert.match(info.sqliteVersion, /^3\.\d+\.\d+$/);
      assert.deepEqual(Object.keys(info.tables).sort(), [ODD_TABLE, 'items', 'pairs'].sort());
      assert.equal(info.tables.items, ITEMS);
      assert.equal(info.tables[ODD_TABLE], NOTES);
      const pairs = info.tables.pairs!;
      assert.equal(pairs % 2, 0, `each transaction adds two rows: ${pairs} means a torn copy`);
      assert.ok(pairs >= before && pairs <= afterSnapshot, `${pairs} pairs, between ${before} and ${afterSnapshot}`);
    } finally {
      await writer.stop();
    }
  });

  it('opens alone: no -wal beside it, nor needed', async () => {
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('snapshot.sqlite')), ['snapshot.sqlite']);
    assert.equal(walFlag(snapshotFile), 1, 'the header says rollback journal, not WAL');
    const alone = join(mkdtempSync(join(root, 'alone-')), 'copy.sqlite');
    copyFileSync(snapshotFile, alone);
    const info = await inspectSqlite(alone);
    assert.deepEqual(info.tables, (await inspectSqlite(snapshotFile)).tables);
    assert.equal(sqlite(alone, '-readonly', `SELECT count(*) FROM items WHERE name = 'item ${ITEMS}'`), '1');
  });

  it('a missing database is NotFound, naming the path, and is not created', async () => {
    const missing = join(dir, 'missing.db');
    await assert.rejects(sqliteSnapshot(missing, join(dir, 'never.sqlite'), {}), (err: Error) => {
      assert.ok(err instanceof NotFoundError);
      assert.ok(err.message.includes(missing), err.message);
      return true;
    });
    assert.equal(existsSync(missing), false);
    assert.equal(existsSync(join(dir, 'never.sqlite')), false);
    await assert.rejects(inspectSqlite(missing), NotFoundError);
    await assert.rejects(restoreSqlite(join(dir, 'target.db'), missing, 'm1'), NotFoundError);
    assert.equal(existsSync(join(dir, 'target.db')), false);
  });
});

describe('restoreSqlite', () => {
  const live = join(dir, 'live.db');
  let liveDump: string;
  let liveWal: string;

  before(async () => {
    createDatabase(live);
    // An application killed after committing: rows only in the -wal, which must move with the database.
    const app = spawn('sqlite3', [live], { stdio: ['pipe', 'ignore', 'inherit'] });
    app.stdin!.write(`PRAGMA wal_autocheckpoint=0; INSERT INTO items (name) VALUES ('only in the wal');\n`);
    while (sqlite(live, '-readonly', `SELECT count(*) FROM items WHERE name = 'only in the wal'`) !== '1') await sleep(20);
    app.kill('SIGKILL');
    await once(app, 'exit');
    assert.ok(statSync(`${live}-wal`).size > 0, 'the live database has a -wal with commits');
    liveDump = dumpHash(live);
    liveWal = fileHash(`${live}-wal`);
  });

  it('replaces the live database, keeping the previous one with its sidecars', async () => {
    const { previous } = await restoreSqlite(live, snapshotFile, 'r1');
    assert.equal(previous, `${live}.opsflow-previous-r1`);
    // Before anything opens it (a reader of a WAL-mode file creates an empty -wal).
    assert.equal(existsSync(`${live}-wal`), false, 'no -wal of the old database beside the restored one');
    assert.equal(dumpHash(live), dumpHash(snapshotFile));
    assert.equal(fileHash(`${previous}-wal`), liveWal);
    assert.equal(dumpHash(previous!), liveDump);
    assert.equal(walFlag(live), 2, 'the restored database is in WAL mode, as the live one was');
    assert.equal(existsSync(`${live}.opsflow-staged-r1`), false);
  });

  it('run again after it succeeded, changes nothing', async () => {
    const restored = fileHash(live);
    const previous = fileHash(`${live}.opsflow-previous-r1`);
    assert.deepEqual(await restoreSqlite(live, snapshotFile, 'r1'), { previous: `${live}.opsflow-previous-r1` });
    assert.equal(fileHash(live), restored);
    assert.equal(fileHash(`${live}.opsflow-previous-r1`), previous);
  });

  it('undo puts the previous database back exactly, and again is a no-op', async () => {
    await undoRestoreSqlite(live, 'r1');
    assert.equal(dumpHash(live), liveDump);
    assert.equal(fileHash(`${live}-wal`), liveWal);
    assert.equal(existsSync(`${live}.opsflow-previous-r1`), false);
    await undoRestoreSqlite(live, 'r1');
    assert.equal(dumpHash(live), liveDump);
  });

  it('finishes a restore interrupted after the live database was moved aside', async () => {
    // As a crash would leave it: the staged copy and the previous files present, no database.
    copyFileSync(snapshotFile, `${live}.opsflow-staged-r2`);
    for (const suffix of ['-wal', '-shm', '']) renameSync(live + suffix, `${live}.opsflow-previous-r2${suffix}`);
    const { previous } = await restoreSqlite(live, snapshotFile, 'r2');
    assert.equal(dumpHash(live), dumpHash(snapshotFile));
    assert.equal(dumpHash(previous!), liveDump);
    await undoRestoreSqlite(live, 'r2');
    assert.equal(dumpHash(live), liveDump);
  });

  it('discard deletes the previous database, and again is a no-op', async () => {
    await restoreSqlite(live, snapshotFile, 'r3');
    await discardSqlitePrevious(live, 'r3');
    await discardSqlitePrevious(live, 'r3');
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.opsflow-')), []);
    assert.equal(dumpHash(live), dumpHash(snapshotFile));
  });

  it('restores onto no database, and a retry is a no-op', async () => {
    const fresh = join(dir, 'fresh.db');
    assert.deepEqual(await restoreSqlite(fresh, snapshotFile, 'r4'), {});
    assert.equal(fileHash(fresh), fileHash(snapshotFile));
    assert.deepEqual(await restoreSqlite(fresh, snapshotFile, 'r4'), {});
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('fresh.db')), ['fresh.db', 'fresh.db.opsflow-previous-r4.none']);
    await discardSqlitePrevious(fresh, 'r4');
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('fresh.db')), ['fresh.db'], 'committed: only the restored database');
  });

  it('a swap-back after a restore onto no database leaves no database, as before; again is a no-op', async () => {
    const fresh = join(dir, 'fresh-undone.db');
    await restoreSqlite(fresh, snapshotFile, 'r5');
    assert.equal(fileHash(fresh), fileHash(snapshotFile));
    await undoRestoreSqlite(fresh, 'r5');
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('fresh-undone.db')), []);
    await undoRestoreSqlite(fresh, 'r5');
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('fresh-undone.db')), []);
  });
});

describe('a corrupted file', () => {
  const corrupted = join(dir, 'corrupted.sqlite');

  before(() => {
    copyFileSync(snapshotFile, corrupted);
    const fd = openSync(corrupted, 'r+');
    writeSync(fd, Buffer.alloc(3 * 4096, 0xa5), 0, 3 * 4096, Math.floor(statSync(corrupted).size / 2 / 4096) * 4096 + 100);
    closeSync(fd);
  });

  it('fails inspection with IntegrityError', async () => {
    await assert.rejects(inspectSqlite(corrupted), (err: Error) => {
      assert.ok(err instanceof IntegrityError, `${err.name}: ${err.message}`);
      assert.ok(err.message.includes(corrupted), err.message);
      return true;
    });
  });

  it('is not restored: the live database stays untouched', async () => {
    const target = join(dir, 'untouched.db');
    copyFileSync(snapshotFile, target);
    const before = fileHash(target);
    await assert.rejects(restoreSqlite(target, corrupted, 'bad'), IntegrityError);
    assert.equal(fileHash(target), before);
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('untouched.db')), ['untouched.db']);
  });

  it('a file that is not a database at all, or an empty one, is IntegrityError too', async () => {
    const garbage = join(dir, 'garbage.sqlite');
    const fd = openSync(garbage, 'w');
    writeSync(fd, Buffer.alloc(8192, 0x42));
    closeSync(fd);
    await assert.rejects(inspectSqlite(garbage), IntegrityError);
    const empty = join(dir, 'empty.sqlite');
    closeSync(openSync(empty, 'w'));
    await assert.rejects(inspectSqlite(empty), IntegrityError);
  });
});
