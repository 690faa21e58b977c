/**
 * Directory trees as tar streams, backed up from and restored to the worker's
 * filesystem or a pod (through PodExec, needing only sh, tar, head, mv, rm and
 * mkdir in the container). Both places run the same small sh scripts, with
 * paths passed as arguments ("$1"), never spliced into the script text.
 *
 * Archives are GNU tar `--format=gnu`: names are stored as raw bytes, long
 * ones in ././@LongLink entries, and there are no per-file pax headers (GNU
 * tar's pax adds atime/ctime to each), so one tree gives one archive.
 *
 * A restore never touches the live tree before the archive has been
 * extracted beside it and checked; going live is two renames in the same
 * parent directory, and every step can be repeated (a retried activity) or
 * undone (a workflow's compensation). Beside a live tree `<dir>`, restore
 * `<tag>` uses:
 *   <dir>.opsflow-staged-<tag>.partial  the archive being extracted and checked
 *   <dir>.opsflow-staged-<tag>          the extracted and checked archive, until swapped in
 *   <dir>.opsflow-swap-<tag>/previous   the tree that was live (absent if there was none)
 *   <dir>.opsflow-swap-<tag>/restored   the restored tree, while it is being swapped back
 * The swap directory lives from the start of a swap-in to the end of the swap-back
 * or discard, which is how an interrupted step tells how far it got. The live
 * tree must not be a mount point (it cannot be renamed): restore a directory inside the volume.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import { lstat, readdir, readFile, readlink, stat } from 'node:fs/promises';
import { posix, resolve } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { IntegrityError, InvalidInputError, NotFoundError } from '../errors.ts';
import type { PodExec } from './kubernetes/exec.ts';
import { tap } from '../streams.ts';
import { CONFLICT, inPod, local, NOT_FOUND, type Runner } from './scripts.ts';

/**
 * What a tree holds, ignoring times and ownership: every entry's relative
 * path, type, permission bits, size, content hash and symlink target, in
 * byte order of path. Two trees are equal iff their digests are.
 * `directories` counts the root; `bytes` is the total size of regular files.
 */
export interface TreeDigest {
  files: number;
  directories: number;
  symlinks: number;
  bytes: number;
  sha256: string;
}

/** A directory in a container of a pod. */
export interface PodTarget {
  namespace: string;
  pod: string;
  container: string;
  /** Absolute path in the container. */
  dir: string;
}

// ---------------------------------------------------------------------------
// Digests

/** f file, d directory, l symlink, p fifo, c/b char/block device (device numbers are not compared). */
type EntryType = 'f' | 'd' | 'l' | 'p' | 'c' | 'b';

interface Entry {
  /** Relative path bytes ("." for the root): names need not be valid UTF-8. */
  path: Buffer;
  type: EntryType;
  mode: number;
  size: number;
  /** sha256 hex of a file, target of a symlink, empty otherwise. */
  content: Buffer;
}

const ROOT = Buffer.from('.');
const SLASH = Buffer.from('/');
const NOTHING = Buffer.alloc(0);

function entry(path: Buffer, type: EntryType, mode: number, size = 0, content: Buffer = NOTHING): Entry {
  // Linux cannot set a symlink's mode, so it cannot be restored: leave it out.
  return { path, type, mode: type === 'l' ? 0 : mode & 0o7777, size, content };
}

function summarize(entries: Iterable<Entry>): TreeDigest {
  const sorted = [...entries].sort((a, b) => Buffer.compare(a.path, b.path));
  const hash = createHash('sha256');
  const digest = { files: 0, directories: 0, symlinks: 0, bytes: 0 };
  for (const e of sorted) {
    // NUL ends each field: paths and symlink targets cannot contain it.
    hash.update(e.path).update(`\0${e.type}\0${e.mode.toString(8)}\0${e.size}\0`).update(e.content).update('\0');
    if (e.type === 'f') {
      digest.files++;
      digest.bytes += e.size;
    } else if (e.type === 'd') digest.directories++;
    else if (e.type === 'l') digest.symlinks++;
  }
  return { ...digest, sha256: hash.digest('hex') };
}

const hexOf = (hash: Hash) => Buffer.from(hash.digest('hex'));

/**
 * How many files the digest reads at once. One at a time, a tree of many
 * small files waits on a thread-pool round trip per step (open, read,
 * close): 20,000 files (357 MB, in the page cache) took 4.0-4.5 s, with 8 at
 * once 1.6-2.3 s. Order does not matter: the entries are sorted before they
 * are hashed together.
 */
const DIGEST_READS_AT_ONCE = 8;

/** Files up to this size are read whole in one go; larger ones are streamed, so memory stays flat. */
const WHOLE_FILE_BYTES = 1024 * 1024;

/** The digest of a directory on this machine. Sockets are skipped, as tar skips them. */
export async function treeDigest(dir: string): Promise<TreeDigest> {
  const root = resolve(dir);
  let info: Stats;
  try {
    info = await stat(root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`no directory ${root}`);
    throw err;
  }
  if (!info.isDirectory()) throw new NotFoundError(`${root} is not a directory`);
  const entries = [entry(ROOT, 'd', info.mode)];
  const reads = new BoundedTasks(DIGEST_READS_AT_ONCE);
  await walk(Buffer.from(root), NOTHING, entries, reads);
  await reads.settled();
  return summarize(entries);
}

/** The tree in order, one directory entry at a time; only the files' reads run side by side. */
async function walk(abs: Buffer, rel: Buffer, entries: Entry[], reads: BoundedTasks): Promise<void> {
  for (const name of await readdir(abs, { encoding: 'buffer' })) {
    const full = Buffer.concat([abs, SLASH, name]);
    const path = rel.length ? Buffer.concat([rel, SLASH, name]) : name;
    const s = await lstat(full);
    if (s.isDirectory()) {
      entries.push(entry(path, 'd', s.mode));
      await walk(full, path, entries, reads);
    } else if (s.isFile()) {
      await reads.start(async () => {
        const { size, sha256 } = await hashFile(full, s.size);
        entries.push(entry(path, 'f', s.mode, size, sha256));
      });
    } else if (s.isSymbolicLink()) entries.push(entry(path, 'l', s.mode, 0, await readlink(full, { encoding: 'buffer' })));
    else if (s.isFIFO()) entries.push(entry(path, 'p', s.mode));
    else if (s.isCharacterDevice()) entries.push(entry(path, 'c', s.mode));
    else if (s.isBlockDevice()) entries.push(entry(path, 'b', s.mode));
  }
}

async function hashFile(file: Buffer, statSize: number): Promise<{ size: number; sha256: Buffer }> {
  const hash = createHash('sha256');
  if (statSize <= WHOLE_FILE_BYTES) {
    const content = await readFile(file);
    return { size: content.length, sha256: hexOf(hash.update(content)) };
  }
  let size = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: WHOLE_FILE_BYTES }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { size, sha256: hexOf(hash) };
}

/** At most `limit` tasks in flight: `start` waits for a free slot, so memory stays flat however many there are. */
class BoundedTasks {
  private readonly running = new Set<Promise<void>>();
  private failure: unknown;

  constructor(private readonly limit: number) {}

  async start(task: () => Promise<void>): Promise<void> {
    while (this.running.size >= this.limit) await Promise.race(this.running);
    if (this.failure !== undefined) throw this.failure;
    const run: Promise<void> = task()
      .catch((err: unknown) => void (this.failure ??= err))
      .finally(() => this.running.delete(run));
    this.running.add(run);
  }

  /** Waits for every task; throws the first failure. */
  async settled(): Promise<void> {
    await Promise.all(this.running);
    if (this.failure !== undefined) throw this.failure;
  }
}

export interface DigestingTar {
  /** Takes the next chunk of the archive; throws IntegrityError where it is not GNU tar. */
  update(chunk: Buffer): void;
  /** Passes a stream through `update`. */
  tap(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer>;
  /** The digest, once the end-of-archive block has passed; IntegrityError before. */
  result(): TreeDigest;
}

const BLOCK = 512;
/** GNU tar's magic and version fields; POSIX ustar has "ustar\0" "00" and a name prefix we would misread. */
const GNU_MAGIC = 'ustar  \0';
/** Long names and link targets are at most PATH_MAX; anything bigger is not a name. */
const MAX_LONG_NAME = 64 * 1024;
const TYPES: Record<string, EntryType> = { '0': 'f', '\0': 'f', '7': 'f', '2': 'l', '3': 'c', '4': 'b', '5': 'd', '6': 'p' };

/**
 * Computes the TreeDigest of a GNU tar stream as it passes by, chunk by
 * chunk (file contents are hashed, never held): the digest that `treeDigest`
 * gives for the tree the archive extracts to. Feed it with `update`, or
 * pass the stream through `tap`; `result` throws IntegrityError unless the
 * stream ended with the end-of-archive block, which catches truncation.
 */
export function digestingTar(): DigestingTar {
  const entries = new Map<string, Entry>(); // by path: a later member replaces an earlier one, as on extraction
  const header = Buffer.alloc(BLOCK);
  let filled = 0;
  let offset = 0; // bytes consumed, for messages
  let ended = false;
  // The member whose data is passing: a file being hashed, a long name being collected, or data to skip.
  let member: { name: string; dataLeft: number; padLeft: number; hash?: Hash; parts?: Buffer[]; done?: (data: Buffer) => void } | undefined;
  let longName: Buffer | undefined;
  let longLink: Buffer | undefined;

  const corrupt = (what: string) => new IntegrityError(`tar stream is not a GNU tar archive or is corrupt: ${what}`);

  function startMember(): void {
    if (header.every((b) => b === 0)) {
      ended = true;
      return;
    }
    const at = offset - BLOCK;
    if (numeric(header, 148, 8) !== checksum(header)) throw corrupt(`bad header checksum at byte ${at}`);
    if (header.toString('latin1', 257, 265) !== GNU_MAGIC) throw corrupt(`the header at byte ${at} is not in GNU format (archives are made with --format=gnu)`);
    const size = numeric(header, 124, 12);
    const mode = numeric(header, 100, 8);
    if (!Number.isSafeInteger(size) || Number.isNaN(mode)) throw corrupt(`the header at byte ${at} has no valid size or mode`);
    const flag = String.fromCharCode(header[156]!);
    const path = normalize(longName ?? cstring(header, 0, 100));
    const link = longLink ?? cstring(header, 157, 100);
    const name = path.toString('utf8');
    member = { name, dataLeft: size, padLeft: (BLOCK - (size % BLOCK)) % BLOCK };

    if (flag === 'L' || flag === 'K') {
      if (size > MAX_LONG_NAME) throw corrupt(`a long name of ${size} bytes at byte ${at}`);
      member.parts = [];
      member.done = (data) => {
        const value = cstring(data, 0, data.length);
        if (flag === 'L') longName = value;
        else longLink = value;
      };
    } else {
      longName = longLink = undefined;
      const key = path.toString('latin1');
      const type = TYPES[flag];
      if (flag === '1') {
        // A hard link carries no data: it is the file it links to, under another name.
        const target = entries.get(normalize(link).toString('latin1'));
        if (!target) throw corrupt(`hard link ${name} points to ${link.toString('utf8')}, which is not earlier in the archive`);
        entries.set(key, { ...target, path });
      } else if (type === 'f') {
        const hash = createHash('sha256');
        member.hash = hash;
        member.done = () => entries.set(key, entry(path, 'f', mode, size, hexOf(hash)));
      } else if (type) {
        entries.set(key, entry(path, type, mode, 0, type === 'l' ? link : NOTHING));
      } else {
        throw corrupt(`unsupported entry type "${flag}" for ${name} at byte ${at}`);
      }
    }
    if (size === 0) endData();
  }

  function endData(): void {
    member!.done?.(member!.parts ? Buffer.concat(member!.parts) : NOTHING);
  }

  function update(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !ended) {
      const start = at;
      if (member && member.dataLeft > 0) {
        const piece = chunk.subarray(at, at + member.dataLeft);
        member.hash?.update(piece);
        member.parts?.push(Buffer.from(piece)); // a copy: the producer owns the chunk
        member.dataLeft -= piece.length;
        at += piece.length;
        if (member.dataLeft === 0) endData();
      } else if (member && member.padLeft > 0) {
        const n = Math.min(member.padLeft, chunk.length - at);
        member.padLeft -= n;
        at += n;
      } else {
        const n = chunk.copy(header, filled, at, at + BLOCK - filled);
        filled += n;
        at += n;
      }
      offset += at - start;
      if (filled === BLOCK) {
        filled = 0;
        startMember();
      }
    }
  }

  function result(): TreeDigest {
    if (!ended) {
      const inside = member && (member.dataLeft > 0 || member.padLeft > 0) ? ` inside ${member.name}` : '';
      throw new IntegrityError(`tar stream ended after ${offset} bytes${inside}, without its end-of-archive block: it is truncated`);
    }
    return summarize(entries.values());
  }

  return { update, tap: (source) => tap(source, update), result };
}

/** A tar number: octal text, or base-256 when the top bit is set (GNU, for sizes of 8 GiB and more); NaN if neither. */
function numeric(block: Buffer, start: number, length: number): number {
  const field = block.subarray(start, start + length);
  if (field[0]! & 0x80) return field.subarray(1).reduce((n, b) => n * 256 + b, field[0]! & 0x7f);
  const text = field.toString('latin1').replace(/\0.*$/s, '').trim();
  return /^[0-7]*$/.test(text) ? parseInt(text || '0', 8) : NaN;
}

/** The header's checksum: its bytes summed with the checksum field counted as spaces. */
function checksum(block: Buffer): number {
  let sum = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) sum += block[i]!;
  return sum;
}

function cstring(block: Buffer, start: number, length: number): Buffer {
  const field = block.subarray(start, start + length);
  const end = field.indexOf(0);
  return Buffer.from(end === -1 ? field : field.subarray(0, end));
}

/** "./a/b/" → "a/b", "./" → ".": the relative paths treeDigest uses. latin1 maps bytes 1:1. */
function normalize(path: Buffer): Buffer {
  const relative = path.toString('latin1').replace(/\/+$/, '').replace(/^(\.\/+)+/, '');
  return relative === '' ? ROOT : Buffer.from(relative, 'latin1');
}

// ---------------------------------------------------------------------------
// The steps, the same in both places.

/** $1 = directory. --sort=name and --numeric-owner: the same tree gives the same bytes on any machine. */
const ARCHIVE = `[ -d "$1" ] || { printf 'no directory %s\\n' "$1" >&2; exit ${NOT_FOUND}; }
exec tar -C "$1" --sort=name --numeric-owner --format=gnu -cf - .`;

/**
 * $1 = partial directory, $2 = archive size or "". `head -c` ends the input
 * by itself, for exec transports that never deliver stdin's EOF. -p keeps
 * the modes as archived rather than masked by the umask.
 */
const STAGE = `set -e
rm -rf "$1"
mkdir -p "$1"
if [ -n "$2" ]; then head -c "$2" | tar -x -p -f - -C "$1"; else exec tar -x -p -f - -C "$1"; fi`;

/** $1 = partial, $2 = staged: only a checked tree ever bears the staged name, so a failed stage cannot be swapped in. */
const PROMOTE = `set -e
rm -rf "$2"
mv "$1" "$2"`;

/** $1 = live directory, $2 = staged, $3 = swap directory, $4 = partial. */
const SWAP_PRELUDE = `set -e
d=$1 s=$2 w=$3 p=$4
exists() { [ -e "$1" ] || [ -L "$1" ]; }
`;

/** Staged gone and the swap directory there = already swapped in. mv onto an existing directory would move into it: checked first. */
const SWAP_IN = `${SWAP_PRELUDE}
if exists "$w/restored"; then printf 'a swap back of %s is under way: run it to the end first\\n' "$d" >&2; exit ${CONFLICT}; fi
if ! exists "$s"; then
  [ -d "$w" ] && exit 0
  printf 'nothing is staged for %s (no %s)\\n' "$d" "$s" >&2; exit ${NOT_FOUND}
fi
mkdir -p "$w"
if exists "$d"; then
  if exists "$w/previous"; then printf '%s and %s both exist\\n' "$d" "$w/previous" >&2; exit ${CONFLICT}; fi
  mv "$d" "$w/previous"
fi
mv "$s" "$d"`;

/**
 * Staged still there = the swap-in did not finish, so the live tree (if any)
 * is not the restored one. The restored tree is set aside inside the swap
 * directory first, so a second run knows it is gone.
 */
const SWAP_BACK = `${SWAP_PRELUDE}
[ -d "$w" ] || exit 0
if ! exists "$s" && ! exists "$w/restored" && exists "$d"; then mv "$d" "$w/restored"; fi
if exists "$w/previous"; then
  if exists "$d"; then printf 'cannot put %s back: %s exists\\n' "$w/previous" "$d" >&2; exit ${CONFLICT}; fi
  mv "$w/previous" "$d"
fi
rm -rf "$w"`;

/** Refuses while a swap is half done: removing its directory then would lose the live tree. */
const DISCARD = `${SWAP_PRELUDE}
if { exists "$s" && [ -d "$w" ]; } || exists "$w/restored"; then
  printf 'a swap of %s is half done: finish it (swap in) or undo it (swap back) first\\n' "$d" >&2; exit ${CONFLICT}
fi
rm -rf "$s" "$p" "$w"`;

/** The live tree and every restore copy beside it: a scratch place emptied after a drill. */
const REMOVE = `${SWAP_PRELUDE}
rm -rf "$d" "$s" "$w" "$p"`;

const TAG = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Where restore `tag` keeps its trees beside the live directory `dir` (an absolute path). */
export function restorePaths(dir: string, tag: string): { partial: string; staged: string; swap: string; previous: string } {
  if (!TAG.test(tag)) throw new InvalidInputError(`restore tag "${tag}" must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit`);
  if (posix.dirname(dir) === dir) throw new InvalidInputError(`cannot restore over ${dir}: a restore renames the directory`);
  const staged = `${dir}.opsflow-staged-${tag}`;
  const swap = `${dir}.opsflow-swap-${tag}`;
  return { partial: `${staged}.partial`, staged, swap, previous: `${swap}/previous` };
}

function archive(runner: Runner, dir: string, signal?: AbortSignal): { stream: Readable; done: Promise<void> } {
  const path = runner.path(dir);
  const stream = new PassThrough({ highWaterMark: 1024 * 1024 });
  // Readers get a failure through their own listeners, and `done` has it: no unhandled 'error' before anyone reads.
  stream.on('error', () => undefined);
  const done = runner.run(`cannot archive ${path}`, ARCHIVE, [path], { stdout: stream, signal }).then(
    () => void stream.end(),
    (err: unknown) => {
      stream.destroy(err as Error);
      throw err;
    },
  );
  done.catch(() => undefined);
  return { stream, done };
}

async function digestOf(runner: Runner, dir: string, signal?: AbortSignal): Promise<TreeDigest> {
  const { stream, done } = archive(runner, dir, signal);
  const tree = digestingTar();
  for await (const chunk of stream) tree.update(chunk as Buffer);
  await done;
  return tree.result();
}

/**
 * Extracts `source` beside the live tree (into a fresh partial directory, so
 * a retry starts clean), digesting the archive on the way: a truncated or
 * corrupt stream, or one longer or shorter than `expectedBytes`, fails here,
 * whatever tar made of it. The extracted tree (digested by `digestOfTree`)
 * must match the archive before it takes the staged name.
 */
async function stage(
  runner: Runner,
  dir: string,
  tag: string,
  source: AsyncIterable<Buffer>,
  options: { signal?: AbortSignal; expectedBytes?: number },
  digestOfTree: (path: string) => Promise<TreeDigest>,
): Promise<{ staged: string; digest: TreeDigest }> {
  const live = runner.path(dir);
  const { partial, staged } = restorePaths(live, tag);
  const expected = options.expectedBytes;
  checkExpectedBytes(expected);
  const tree = digestingTar();
  let bytes = 0;
  let archived: TreeDigest | undefined;
  let sourceError: unknown;
  async function* checked(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of source) {
        bytes += chunk.length;
        if (expected !== undefined && bytes > expected) throw new IntegrityError(`the archive for ${live}${runner.where} is longer than the expected ${expected} bytes`);
        tree.update(chunk);
        yield chunk;
      }
      if (expected !== undefined && bytes < expected) throw new IntegrityError(`the archive for ${live}${runner.where} ended after ${bytes} of the expected ${expected} bytes`);
      archived = tree.result();
    } catch (err) {
      sourceError = err;
      throw err;
    }
  }
  try {
    await runner.run(`cannot extract into ${partial}`, STAGE, [partial, expected === undefined ? '' : String(expected)], { stdin: checked(), signal: options.signal });
  } catch (err) {
    throw sourceError ?? err;
  }
  if (sourceError) throw sourceError;
  // A command that stops at expectedBytes may be done before the source has told us it ended.
  archived ??= tree.result();

  const digest = await digestOfTree(partial);
  if (digest.sha256 !== archived.sha256) {
    throw new IntegrityError(`the tree extracted into ${partial}${runner.where} differs from its archive (archive: ${describeDigest(archived)}; extracted: ${describeDigest(digest)})`);
  }
  await runner.run(`cannot move ${partial} to ${staged}`, PROMOTE, [partial, staged], { signal: options.signal });
  return { staged, digest };
}

function describeDigest(d: TreeDigest): string {
  return `${d.files} files, ${d.directories} directories, ${d.symlinks} symlinks, ${d.bytes} bytes`;
}

function checkExpectedBytes(expected: number | undefined): void {
  if (expected !== undefined && !(Number.isSafeInteger(expected) && expected > 0)) throw new InvalidInputError(`expectedBytes must be a positive integer, not ${expected}`);
}

async function swap(runner: Runner, script: string, what: string, dir: string, tag: string, signal?: AbortSignal): Promise<void> {
  const live = runner.path(dir);
  const { staged, swap, partial } = restorePaths(live, tag);
  await runner.run(`cannot ${what} ${live}`, script, [live, staged, swap, partial], { signal });
}

// ---------------------------------------------------------------------------
// This machine

/** Streams `dir` as a GNU tar archive. `done` rejects with NotFoundError if there is no such directory. */
export function tarLocal(dir: string, options: { signal?: AbortSignal } = {}): { stream: Readable; done: Promise<void> } {
  return archive(local, dir, options.signal);
}

/**
 * Extracts an archive beside `dir`, in `<dir>.opsflow-staged-<tag>`, and
 * checks that what landed on disk is what the archive holds. Compare the
 * returned digest with the one recorded at backup time before swapping in.
 */
export function stageLocal(dir: string, tag: string, source: AsyncIterable<Buffer>, options: { signal?: AbortSignal; expectedBytes?: number } = {}): Promise<{ staged: string; digest: TreeDigest }> {
  return stage(local, dir, tag, source, options, treeDigest);
}

/**
 * `stageLocal` of an archive that another process writes (zstd's stdout),
 * handed to tar as its stdin, so that its bytes never pass through Node.
 * The extracted tree, digested from disk, must equal `expected` (the digest
 * taken at backup time) before it takes the staged name. A truncated archive
 * fails in tar; a corrupt download fails its own checks.
 */
export async function stageLocalFromProcess(
  dir: string,
  tag: string,
  archive: Readable,
  options: { expected: TreeDigest; expectedBytes?: number; signal?: AbortSignal },
): Promise<{ staged: string; digest: TreeDigest }> {
  checkExpectedBytes(options.expectedBytes);
  const { partial, staged } = restorePaths(resolve(dir), tag);
  await local.run(`cannot extract into ${partial}`, STAGE, [partial, options.expectedBytes === undefined ? '' : String(options.expectedBytes)], { stdinFrom: archive, signal: options.signal });
  const digest = await treeDigest(partial);
  if (digest.sha256 !== options.expected.sha256) {
    throw new IntegrityError(`the tree extracted into ${partial} differs from the backup's (backup: ${describeDigest(options.expected)}; extracted: ${describeDigest(digest)})`);
  }
  await local.run(`cannot move ${partial} to ${staged}`, PROMOTE, [partial, staged], { signal: options.signal });
  return { staged, digest };
}

/** Makes the staged tree live and keeps the previous one (if `dir` existed). Again after success: nothing. */
export function swapInLocal(dir: string, tag: string): Promise<void> {
  return swap(local, SWAP_IN, 'swap the staged tree into', dir, tag);
}

/** Puts the previous tree back (or none, if `dir` did not exist) and drops the restored one. Nothing to undo: nothing. */
export function swapBackLocal(dir: string, tag: string): Promise<void> {
  return swap(local, SWAP_BACK, 'swap back', dir, tag);
}

/** Removes the staged and previous trees (the restore is kept, or was never swapped in). ConflictError while a swap is half done. */
export function discardLocal(dir: string, tag: string): Promise<void> {
  return swap(local, DISCARD, 'discard the restore copies of', dir, tag);
}

/** Removes the tree and what restore `tag` left beside it (a scratch system's, after a drill). */
export function removeLocal(dir: string, tag: string): Promise<void> {
  return swap(local, REMOVE, 'remove', dir, tag);
}

// ---------------------------------------------------------------------------
// A pod

/** Streams `target.dir` from the container as a GNU tar archive (GNU tar needed there). */
export function tarFromPod(exec: PodExec, target: PodTarget, options: { signal?: AbortSignal } = {}): { stream: Readable; done: Promise<void> } {
  return archive(inPod(exec, target), target.dir, options.signal);
}

/** The digest of a directory in a container, from its archive streamed through `digestingTar` (nothing runs there but tar). */
export function digestOfPodTree(exec: PodExec, target: PodTarget, options: { signal?: AbortSignal } = {}): Promise<TreeDigest> {
  return digestOf(inPod(exec, target), target.dir, options.signal);
}

/**
 * stageLocal in a container. `expectedBytes`, the archive's exact size, is
 * required: the command stops after that many bytes, as stdin's EOF may
 * never arrive. The staged tree is checked by archiving it back.
 */
export function stageInPod(exec: PodExec, target: PodTarget, tag: string, source: AsyncIterable<Buffer>, options: { signal?: AbortSignal; expectedBytes: number }): Promise<{ staged: string; digest: TreeDigest }> {
  const runner = inPod(exec, target);
  return stage(runner, target.dir, tag, source, options, (path) => digestOf(runner, path, options.signal));
}

export function swapInPod(exec: PodExec, target: PodTarget, tag: string, options: { signal?: AbortSignal } = {}): Promise<void> {
  return swap(inPod(exec, target), SWAP_IN, 'swap the staged tree into', target.dir, tag, options.signal);
}

export function swapBackPod(exec: PodExec, target: PodTarget, tag: string, options: { signal?: AbortSignal } = {}): Promise<void> {
  return swap(inPod(exec, target), SWAP_BACK, 'swap back', target.dir, tag, options.signal);
}

export function discardInPod(exec: PodExec, target: PodTarget, tag: string, options: { signal?: AbortSignal } = {}): Promise<void> {
  return swap(inPod(exec, target), DISCARD, 'discard the restore copies of', target.dir, tag, options.signal);
}

export function removeInPod(exec: PodExec, target: PodTarget, tag: string, options: { signal?: AbortSignal } = {}): Promise<void> {
  return swap(inPod(exec, target), REMOVE, 'remove', target.dir, tag, options.signal);
}
