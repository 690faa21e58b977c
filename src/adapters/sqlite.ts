/**
 * SQLite backups through the `sqlite3` CLI: a snapshot with the online backup
 * API (`.backup`), never a copy of the live file, which is torn while a
 * writer is busy and stale without its -wal; an inspection (integrity_check,
 * exact row counts); and an atomic restore that keeps the database it
 * replaces until the caller discards it or puts it back.
 *
 * A snapshot is standalone: its journal mode is switched to DELETE, so it
 * needs no -wal beside it. A restore replaces the file under the application,
 * which must be stopped for it (a process that holds the old file open goes
 * on writing to it) and started again after.
 */
import { randomBytes } from 'node:crypto';
import { chmod, copyFile, open, rename, rm, stat, writeFile } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { dirname, posix, resolve } from 'node:path';
import { Transform, Writable, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import { CommandFailedError, ConflictError, IntegrityError, InvalidInputError, NotFoundError, PeerRejectedError, PeerUnavailableError } from '../errors.ts';
import type { PodExec } from './kubernetes/exec.ts';
import { startTool } from './process.ts';
import { CONFLICT, inPod, NOT_FOUND } from './scripts.ts';

export interface SqliteInfo {
  bytes: number;
  pageSize: number;
  journalMode: string;
  /** Exact row counts per table (not sqlite_* tables, nor virtual ones: their rows live in counted shadow tables). */
  tables: Record<string, number>;
  integrity: 'ok';
  /** Of the sqlite3 that made and checked the file. */
  sqliteVersion: string;
}

/** How long a locked database is waited for before sqlite3 gives up. */
const BUSY_TIMEOUT_MS = 60_000;
/** Files SQLite keeps beside a database; a stale one beside another database would be replayed into it. */
const SIDECARS = ['-wal', '-shm', '-journal'] as const;
const INTEGRITY_REPORT_LINES = 5;

// ---------------------------------------------------------------- running sqlite3

/** Runs sqlite3 with `args` (the database, then one SQL statement or dot-command each) and returns its stdout. */
type Sqlite3 = (what: string, args: string[]) => Promise<string>;

function sqliteError(what: string, stderr: string): Error {
  const message = `${what}: ${stderr.trim() || 'sqlite3 failed'}`;
  if (/malformed|not a database|corrupt/i.test(stderr)) return new IntegrityError(message);
  if (/unable to open database/i.test(stderr)) return new NotFoundError(message);
  if (/locked|busy|disk I\/O error|disk is full/i.test(stderr)) return new PeerUnavailableError(message);
  return new PeerRejectedError(message);
}

function localSqlite3(signal?: AbortSignal): Sqlite3 {
  return async (what, args) => {
    const tool = startTool('sqlite3', args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      signal,
      onFailure: (message, stderr) => sqliteError(what, stderr || message),
    });
    const out: Buffer[] = [];
    tool.child.stdout!.on('data', (chunk: Buffer) => out.push(chunk));
    await tool.done;
    return Buffer.concat(out).toString('utf8');
  };
}

/** A dot-command argument: double-quoted, the shell resolves backslash escapes in it. */
function dotArg(value: string): string {
  return `"${value.replace(/[\\"]/g, '\\$&')}"`;
}

const sqlString = (value: string) => `'${value.replaceAll("'", "''")}'`;
const sqlIdentifier = (value: string) => `"${value.replaceAll('"', '""')}"`;

/**
 * sqlite3 arguments that back `source` up into `dest`. The source is opened
 * read-write (a WAL reader must be able to write the -shm; a hot journal must
 * be rolled back) but never created: `mode=rw` fails on a missing file.
 */
function backupArgs(source: string, dest: string): string[] {
  return [
    '-bail',
    `${pathToFileURL(source).href}?mode=rw`,
    `.timeout ${BUSY_TIMEOUT_MS}`,
    // One read transaction around the copy: `.backup` copies 100 pages a step
    // and starts over whenever another process commits between steps, so
    // against a steady writer it would never finish. Inside the transaction it
    // copies one snapshot; in WAL mode the writer goes on meanwhile, with a
    // rollback journal it waits (its busy timeout) until the copy is done.
    'BEGIN',
    'SELECT count(*) FROM sqlite_master',
    `.backup ${dotArg(dest)}`,
    'COMMIT',
  ];
}

async function setJournalMode(sqlite3: Sqlite3, path: string, mode: 'delete' | 'wal'): Promise<void> {
  const result = (await sqlite3(`cannot set the journal mode of ${path}`, ['-bail', path, `PRAGMA journal_mode=${mode}`])).trim();
  if (result !== mode) throw new PeerRejectedError(`cannot set the journal mode of ${path} to ${mode}: it stays ${result}`);
}

const INFO_QUERY = `SELECT json_object(
  'integrity', (SELECT json_group_array(integrity_check) FROM pragma_integrity_check),
  'pageSize', (SELECT page_size FROM pragma_page_size),
  'pageCount', (SELECT page_count FROM pragma_page_count),
  'journalMode', (SELECT journal_mode FROM pragma_journal_mode),
  'sqliteVersion', sqlite_version(),
  'tables', (SELECT json_group_array(name) FROM sqlite_master
             WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND sql NOT LIKE 'CREATE VIRTUAL %'))`;

/** Integrity and counts of the database at `path`, opened read-only; `bytes` is page count × page size. */
async function queryInfo(sqlite3: Sqlite3, path: string): Promise<SqliteInfo> {
  const what = `cannot inspect ${path}`;
  const meta = JSON.parse(await sqlite3(what, ['-bail', '-readonly', path, INFO_QUERY])) as {
    integrity: string[];
    pageSize: number;
    pageCount: number;
    journalMode: string;
    sqliteVersion: string;
    tables: string[];
  };
  if (meta.integrity.length !== 1 || meta.integrity[0] !== 'ok') {
    const report = meta.integrity.slice(0, INTEGRITY_REPORT_LINES).join('\n');
    throw new IntegrityError(`${path} fails integrity_check (${meta.integrity.length} problems), first:\n${report}`);
  }
  const tables: Record<string, number> = {};
  if (meta.tables.length) {
    // One statement a table, each printing a JSON line: no limit on compound SELECTs or function arguments to hit.
    const counts = meta.tables.map((name) => `SELECT json_array(${sqlString(name)}, count(*)) FROM ${sqlIdentifier(name)}`);
    const out = await sqlite3(what, ['-bail', '-readonly', path, ...counts]);
    for (const line of out.split('\n').filter(Boolean)) {
      const [name, rows] = JSON.parse(line) as [string, number];
      tables[name] = rows;
    }
  }
  return {
    bytes: meta.pageSize * meta.pageCount,
    pageSize: meta.pageSize,
    journalMode: meta.journalMode,
    tables,
    integrity: 'ok',
    sqliteVersion: meta.sqliteVersion,
  };
}

// ---------------------------------------------------------------- files

async function statIfExists(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function statOrNotFound(path: string, what: string): Promise<Stats> {
  const stats = await statIfExists(path);
  if (!stats) throw new NotFoundError(`no ${what} at ${path}`);
  if (!stats.isFile()) throw new InvalidInputError(`${what} at ${path} is not a file`);
  return stats;
}

async function fsync(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function removeWithSidecars(path: string): Promise<void> {
  for (const suffix of ['', ...SIDECARS]) await rm(path + suffix, { force: true });
}

const SQLITE_MAGIC = 'SQLite format 3\0';
/** Header byte 18, the file format's read version: 2 means WAL mode. */
const HEADER_READ_VERSION = 18;

/** The file's header: IntegrityError when it is not a SQLite database at all. */
async function readHeader(path: string): Promise<{ walMode: boolean }> {
  const handle = await open(path, 'r');
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(100), 0, 100, 0);
    if (bytesRead < 100 || buffer.toString('latin1', 0, 16) !== SQLITE_MAGIC) throw new IntegrityError(`${path} is not a SQLite database`);
    return { walMode: buffer[HEADER_READ_VERSION] === 2 };
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------- snapshot and inspection

/**
 * Backs `dbPath` up into `outFile` with the online backup API, consistent
 * while other processes write (WAL mode too), then checks the copy. The copy
 * is made beside `outFile` and renamed over it when complete, so `outFile` is
 * never a partial file and a retry starts clean.
 */
export async function sqliteSnapshot(dbPath: string, outFile: string, options: { signal?: AbortSignal }): Promise<SqliteInfo> {
  const source = resolve(dbPath);
  const target = resolve(outFile);
  await statOrNotFound(source, 'SQLite database');
  const sqlite3 = localSqlite3(options.signal);
  const partial = `${target}.opsflow-partial`;
  await removeWithSidecars(partial);
  try {
    await sqlite3(`cannot back up ${source}`, backupArgs(source, partial));
    // The copy keeps the source's WAL flag; in DELETE mode it opens alone.
    await setJournalMode(sqlite3, partial, 'delete');
    const info = await inspectSqlite(partial, options);
    await fsync(partial);
    await rename(partial, target);
    await fsync(dirname(target));
    return info;
  } catch (err) {
    await removeWithSidecars(partial);
    throw err;
  }
}

/** Checks a database file (integrity_check, row counts) without changing it: opened read-only. */
export async function inspectSqlite(file: string, options: { signal?: AbortSignal } = {}): Promise<SqliteInfo> {
  const path = resolve(file);
  const { size } = await statOrNotFound(path, 'SQLite database');
  // sqlite3 takes an empty file for a valid empty database; a truncated download is not one.
  await readHeader(path);
  return { ...(await queryInfo(localSqlite3(options.signal), path)), bytes: size };
}

// ---------------------------------------------------------------- restore

function restorePaths(dbPath: string, tag: string) {
  // The tag becomes part of file names.
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(tag)) throw new InvalidInputError(`restore tag must be letters, digits, ".", "_" or "-": got ${JSON.stringify(tag)}`);
  const db = resolve(dbPath);
  // `none`: an empty file saying there was no database to move aside, so a swap-back removes the restored one.
  return { db, staged: `${db}.opsflow-staged-${tag}`, previous: `${db}.opsflow-previous-${tag}`, none: `${db}.opsflow-previous-${tag}.none` };
}

async function sameBytes(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([statIfExists(a), statIfExists(b)]);
  if (!sa || !sb || sa.size !== sb.size) return false;
  const [ha, hb] = await Promise.all([open(a, 'r'), open(b, 'r')]);
  try {
    const size = 1 << 20;
    const [ba, bb] = [Buffer.alloc(size), Buffer.alloc(size)];
    for (let position = 0; position < sa.size; position += size) {
      const [ra, rb] = await Promise.all([ha.read(ba, 0, size, position), hb.read(bb, 0, size, position)]);
      if (ra.bytesRead !== rb.bytesRead || !ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
    }
    return true;
  } finally {
    await Promise.all([ha.close(), hb.close()]);
  }
}

async function moveAside(from: string, to: string): Promise<void> {
  if (!(await statIfExists(from))) return;
  if (await statIfExists(to)) throw new ConflictError(`cannot move ${from} aside: ${to} exists already. Is something still using the database? Stop it before restoring`);
  await rename(from, to);
}

/**
 * Puts `fromFile` in place of the database at `dbPath`, atomically: a copy
 * is staged beside it (`<db>.opsflow-staged-<tag>`), synced and checked; the
 * live database and its sidecars move to `<db>.opsflow-previous-<tag>`; the
 * staged copy is renamed in. The restored file takes the live one's WAL flag
 * and permissions, so the application runs as before. `tag` names this
 * restore (unique per restore, e.g. the workflow id).
 *
 * Safe to run again after any partial step, and a no-op once done. Nothing
 * live is touched when the copy fails its check.
 */
export async function restoreSqlite(dbPath: string, fromFile: string, tag: string, options: { signal?: AbortSignal } = {}): Promise<{ previous?: string }> {
  const at = restorePaths(dbPath, tag);
  const [live, previous, staged, none] = await Promise.all([statIfExists(at.db), statIfExists(at.previous), statIfExists(at.staged), statIfExists(at.none)]);
  if (none && live && !staged) return {}; // done onto no database
  if (previous && live) {
    // The swap has happened; a staged copy left now means a database appeared where the moved one was.
    if (staged) throw new ConflictError(`restore ${tag} of ${at.db} moved the database aside, but a new one appeared at its path before the restored copy was put there: stop what created it, remove it and retry`);
    return { previous: at.previous };
  }
  const source = resolve(fromFile);
  await statOrNotFound(source, 'backup to restore');
  // The database already holds these bytes.
  if (!previous && (await sameBytes(at.db, source)) && !(await statIfExists(`${at.db}-wal`)) && !(await statIfExists(`${at.db}-journal`))) return {};

  const liveFile = live ? at.db : previous ? at.previous : undefined;
  if (!(await statIfExists(dirname(at.db)))) throw new NotFoundError(`no directory ${dirname(at.db)} to restore ${at.db} into`);
  // A leftover of an earlier attempt may carry the live file's permissions (read-only, say).
  await removeWithSidecars(at.staged);
  await copyFile(source, at.staged);
  try {
    await fsync(at.staged);
    const info = await inspectSqlite(at.staged, options);
    // A read-only open of a WAL-mode file leaves empty sidecars behind.
    for (const suffix of SIDECARS) await rm(at.staged + suffix, { force: true });
    if (liveFile) {
      const { walMode: liveWal } = await readHeader(liveFile);
      if (liveWal !== (info.journalMode === 'wal')) await setJournalMode(localSqlite3(options.signal), at.staged, liveWal ? 'wal' : 'delete');
      await chmod(at.staged, (await stat(liveFile)).mode & 0o7777);
      await fsync(at.staged);
    }
    options.signal?.throwIfAborted();
  } catch (err) {
    await removeWithSidecars(at.staged);
    throw err;
  }
  // Sidecars before the database: once it has moved, nothing of it is left to pair with the restored file.
  for (const suffix of [...SIDECARS, '']) await moveAside(at.db + suffix, at.previous + suffix);
  const movedAside = await statIfExists(at.previous);
  if (!movedAside) {
    await writeFile(at.none, '');
    await fsync(dirname(at.db));
  }
  await rename(at.staged, at.db);
  await fsync(dirname(at.db));
  return movedAside ? { previous: at.previous } : {};
}

/**
 * Puts back the database `restoreSqlite` moved aside, with its sidecars; or,
 * where there was none, removes the restored one. Idempotent.
 */
export async function undoRestoreSqlite(dbPath: string, tag: string): Promise<void> {
  const at = restorePaths(dbPath, tag);
  if (await statIfExists(at.none)) {
    await removeWithSidecars(at.db);
    await rm(at.none); // after the database: a retry still finds it
  }
  if (await statIfExists(at.previous)) {
    // The restored database's sidecars must not be paired with the previous one.
    for (const suffix of SIDECARS) await rm(at.db + suffix, { force: true });
    await rename(at.previous, at.db);
  }
  // After the database: a retry finds them still waiting here.
  for (const suffix of SIDECARS) if (await statIfExists(at.previous + suffix)) await rename(at.previous + suffix, at.db + suffix);
  await removeWithSidecars(at.staged);
  await fsync(dirname(at.db));
}

/** Deletes the database `restoreSqlite` moved aside (and any staged copy left over). Idempotent. */
export async function discardSqlitePrevious(dbPath: string, tag: string): Promise<void> {
  const at = restorePaths(dbPath, tag);
  await removeWithSidecars(at.previous);
  await removeWithSidecars(at.staged);
  await rm(at.none, { force: true });
}

/** Deletes the database and its sidecars, and whatever restore `tag` left beside it. Idempotent. */
export async function removeSqlite(dbPath: string, tag: string): Promise<void> {
  await discardSqlitePrevious(dbPath, tag);
  await removeWithSidecars(restorePaths(dbPath, tag).db);
}

// ---------------------------------------------------------------- in a pod

export interface PodSqliteTarget {
  namespace: string;
  pod: string;
  container: string;
  /** Absolute path of the database inside the container. */
  path: string;
}

export interface PodSqliteSnapshot {
  /** The snapshot's bytes (a standalone database file). */
  stream: Readable;
  /** The snapshot's check, known before its first byte is sent. */
  info: Promise<SqliteInfo>;
  /** Resolves once `stream` has been read to its end, every byte counted, and the temporary copy removed. */
  done: Promise<void>;
}

function podSqlite3(exec: PodExec, target: PodSqliteTarget, signal?: AbortSignal): Sqlite3 {
  return async (what, args) => {
    const out: Buffer[] = [];
    const stdout = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        out.push(chunk);
        callback();
      },
    });
    try {
      await exec.exec(target.namespace, target.pod, target.container, ['sqlite3', ...args], { stdout, signal });
    } catch (err) {
      throw err instanceof CommandFailedError ? sqliteError(`${what} in pod ${target.namespace}/${target.pod}`, err.stderrTail) : err;
    }
    return Buffer.concat(out).toString('utf8');
  };
}

/**
 * `sqliteSnapshot` for a database in a pod (its container must have sqlite3):
 * `.backup` to a temporary file beside the database (the one directory sure
 * to be writable there), checked in the pod, streamed out with `cat`, then
 * removed. The copy needs as much free space as the database.
 */
export function sqliteSnapshotInPod(exec: PodExec, target: PodSqliteTarget, options: { signal?: AbortSignal } = {}): PodSqliteSnapshot {
  if (!posix.isAbsolute(target.path)) throw new InvalidInputError(`the database path in the pod must be absolute: got ${JSON.stringify(target.path)}`);
  const { namespace, pod, container, path } = target;
  const where = `pod ${namespace}/${pod}`;
  const temp = `${path}.opsflow-snapshot-${randomBytes(6).toString('hex')}`;
  const sqlite3 = podSqlite3(exec, target, options.signal);

  const info = (async () => {
    await sqlite3(`cannot back up ${path}`, backupArgs(path, temp));
    await setJournalMode(sqlite3, temp, 'delete');
    return queryInfo(sqlite3, temp);
  })();

  let received = 0;
  let expected = -1;
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      callback(null, chunk);
    },
    flush(callback) {
      callback(received === expected ? null : new IntegrityError(`the snapshot of ${path} in ${where} arrived with ${received} bytes, not ${expected}`));
    },
  });

  const done = (async () => {
    let failed = true;
    try {
      expected = (await info).bytes;
      await exec.exec(namespace, pod, container, ['cat', '--', temp], { stdout: stream, signal: options.signal });
      failed = false;
    } finally {
      // Also after a failure: a leftover copy of the whole database would fill the pod's volume.
      await exec.exec(namespace, pod, container, ['rm', '-f', '--', ...['', ...SIDECARS].map((suffix) => temp + suffix)]).catch((err: unknown) => {
        if (!failed) throw err;
      });
    }
    stream.end();
    await finished(stream, { readable: false });
  })();
  done.catch((err: unknown) => stream.destroy(err as Error));
  info.catch(() => undefined);
  return { stream, info, done };
}

// ---------------------------------------------------------------- restore in a pod

/*
 * The same atomic restore in a container, by sh scripts through the exec API
 * (the container needs sh, sqlite3, head, od, stat, mv, rm). Beside the
 * database `<db>`, restore `<tag>` uses:
 *   <db>.opsflow-download-<tag>     the copy being received and checked
 *   <db>.opsflow-staged-<tag>       checked, with the live one's journal mode and permissions
 *   <db>.opsflow-swap-<tag>/        from the start of the swap-in to the end of a swap-back or discard:
 *     previous[-wal|-shm|-journal]  the database that was live, with its sidecars
 *     undoing                       a swap-back under way (the restored copy is removed)
 * Each script can be run again after any partial run; CONFLICT where going
 * on could lose a database.
 */

/**
 * $1 = download, $2 = size: `head -c` ends the input itself (kwok's exec
 * never delivers stdin's EOF). The directory is made if it is not there yet
 * (new infrastructure).
 */
const POD_RECEIVE = `set -e
mkdir -p "$(dirname "$1")"
rm -f "$1" "$1-wal" "$1-shm" "$1-journal"
head -c "$2" > "$1"`;

/** $1 = live, $2 = download, $3 = staged: the checked copy takes the live one's journal mode (header byte 18: 2 is WAL) and permissions. */
const POD_PROMOTE = `set -e
d=$1 p=$2 s=$3
if [ -e "$d" ]; then
  if [ "$(od -An -tu1 -j18 -N1 "$d" | tr -d ' ')" = 2 ]; then m=wal; else m=delete; fi
  sqlite3 "$p" "PRAGMA journal_mode=$m;" > /dev/null
  chmod "$(stat -c %a "$d")" "$p"
fi
rm -f "$p-wal" "$p-shm" "$p-journal"
mv "$p" "$s"`;

/** $1 = live, $2 = staged, $3 = swap directory. Staged gone and the swap directory there: swapped in already. */
const POD_SWAP_IN = `set -e
d=$1 s=$2 w=$3
if [ -e "$w/undoing" ]; then printf 'a swap back of %s is under way: run it to the end first\\n' "$d" >&2; exit ${CONFLICT}; fi
if [ ! -e "$s" ]; then
  [ -d "$w" ] && exit 0
  printf 'nothing is staged for %s (no %s)\\n' "$d" "$s" >&2; exit ${NOT_FOUND}
fi
mkdir -p "$w"
for x in -wal -shm -journal ''; do
  [ -e "$d$x" ] || continue
  if [ -e "$w/previous$x" ]; then printf '%s and %s both exist\\n' "$d$x" "$w/previous$x" >&2; exit ${CONFLICT}; fi
  mv "$d$x" "$w/previous$x"
done
mv "$s" "$d"`;

/** $1 = live, $2 = staged, $3 = swap directory. The restored copy goes (once: `undoing` marks it gone), then the previous one comes back. */
const POD_SWAP_BACK = `set -e
d=$1 s=$2 w=$3
[ -d "$w" ] || exit 0
if [ ! -e "$w/undoing" ]; then
  if [ ! -e "$s" ]; then rm -f "$d" "$d-wal" "$d-shm" "$d-journal"; fi
  mkdir "$w/undoing"
fi
for x in '' -wal -shm -journal; do
  if [ -e "$w/previous$x" ]; then mv "$w/previous$x" "$d$x"; fi
done
rm -rf "$w"`;

/** $1 = live, $2 = staged, $3 = swap directory, $4 = download. Refused while a swap is half done. */
const POD_DISCARD = `set -e
d=$1 s=$2 w=$3 p=$4
if { [ -e "$s" ] && [ -d "$w" ]; } || [ -e "$w/undoing" ]; then
  printf 'a swap of %s is half done: finish it (swap in) or undo it (swap back) first\\n' "$d" >&2; exit ${CONFLICT}
fi
rm -rf "$s" "$w" "$p" "$p-wal" "$p-shm" "$p-journal"`;

/** $1 = live, $2 = staged, $3 = swap directory, $4 = download: everything, for a scratch system after a drill. */
const POD_REMOVE = `rm -rf "$1" "$1-wal" "$1-shm" "$1-journal" "$2" "$3" "$4" "$4-wal" "$4-shm" "$4-journal"`;

function podRestorePaths(target: PodSqliteTarget, tag: string) {
  if (!posix.isAbsolute(target.path)) throw new InvalidInputError(`the database path in the pod must be absolute: got ${JSON.stringify(target.path)}`);
  const db = posix.normalize(target.path);
  const { staged } = restorePaths(db, tag); // checks the tag
  return { db, staged, swap: `${db}.opsflow-swap-${tag}`, download: `${db}.opsflow-download-${tag}` };
}

/**
 * Streams a snapshot of `expectedBytes` into the pod beside the database,
 * checks it there (integrity_check, row counts returned for the caller to
 * compare), and makes it the staged copy. Nothing live is touched.
 */
export async function stageSqliteInPod(exec: PodExec, target: PodSqliteTarget, tag: string, source: AsyncIterable<Buffer>, options: { expectedBytes: number; signal?: AbortSignal }): Promise<SqliteInfo> {
  const at = podRestorePaths(target, tag);
  const shell = inPod(exec, target);
  let received = 0;
  let sourceError: unknown;
  async function* counted(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of source) {
        received += chunk.length;
        if (received > options.expectedBytes) throw new IntegrityError(`the copy of ${at.db}${shell.where} is longer than the expected ${options.expectedBytes} bytes`);
        yield chunk;
      }
      // Failing the input ends the exec: `head -c` would wait for the missing bytes, as no EOF may come.
      if (received < options.expectedBytes) throw new IntegrityError(`the copy of ${at.db}${shell.where} ended after ${received} of the expected ${options.expectedBytes} bytes`);
    } catch (err) {
      sourceError = err;
      throw err;
    }
  }
  try {
    await shell.run(`cannot receive the copy of ${at.db}`, POD_RECEIVE, [at.download, String(options.expectedBytes)], { stdin: counted(), signal: options.signal });
  } catch (err) {
    throw sourceError ?? err;
  }
  if (sourceError) throw sourceError;
  const info = await queryInfo(podSqlite3(exec, { ...target, path: at.download }, options.signal), at.download);
  await shell.run(`cannot stage the copy of ${at.db}`, POD_PROMOTE, [at.db, at.download, at.staged], { signal: options.signal });
  return { ...info, bytes: received };
}

export function swapInSqliteInPod(exec: PodExec, target: PodSqliteTarget, tag: string, options: { signal?: AbortSignal } = {}): Promise<void> {
  const at = podRestorePaths(target, tag);
  return inPod(exec, target).run(`cannot swap the restored copy into ${at.db}`, POD_SWAP_IN, [at.db, at.staged, at.swap], options);
}

export function swapBackSqliteInPod(exec: PodExec, target: PodSqliteTarget, tag: string, options: { signal?: AbortSignal } = {}): Promise<void> {
  const at = podRestorePaths(target, tag);
  return inPod(exec, target).run(`cannot put back the previous ${at.db}`, POD_SWAP_BACK, [at.db, at.staged, at.swap], options);
}

export function discardSqliteInPod(exec: PodExec, target: PodSqliteTarget, tag: string, options: { signal?: AbortSignal } = {}): Promise<void> {
  const at = podRestorePaths(target, tag);
  return inPod(exec, target).run(`cannot discard the restore copies of ${at.db}`, POD_DISCARD, [at.db, at.staged, at.swap, at.download], options);
}

export function removeSqliteInPod(exec: PodExec, target: PodSqliteTarget, tag: string, options: { signal?: AbortSignal } = {}): Promise<void> {
  const at = podRestorePaths(target, tag);
  return inPod(exec, target).run(`cannot remove ${at.db}`, POD_REMOVE, [at.db, at.staged, at.swap, at.download], options);
}
