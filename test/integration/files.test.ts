/**
 * Directory trees through GNU tar on this machine: the digest of a tree, of
 * its archive as it streams by, and of the tree extracted from it agree for
 * every kind of entry; a restore is staged beside the live tree, swapped in,
 * swapped back and discarded, each step repeatable and resumable after an
 * interruption; a bad stream never reaches the live tree; a large file
 * streams with flat memory.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  digestingTar,
  discardLocal,
  restorePaths,
  stageLocal,
  stageLocalFromProcess,
  swapBackLocal,
  swapInLocal,
  tarLocal,
  treeDigest,
  type TreeDigest,
} from '../../src/adapters/files.ts';
import { ConflictError, IntegrityError, InvalidInputError, NotFoundError } from '../../src/errors.ts';

let root: string;
/** The tree with every kind of entry, built once. */
let source: string;

const LONG_NAME = `long-${'n'.repeat(150)}.txt`;
const DEEP_DIR = ['level-one-directory', 'level-two-directory', 'level-three-directory', 'level-four-directory', 'level-five'].join('/');
const LONG_TARGET = `${DEEP_DIR}/${'t'.repeat(60)}`;

/** Every case the digest must agree on; returns how many of each it made. */
function buildTree(dir: string): { files: number; directories: number; symlinks: number; bytes: number } {
  mkdirSync(dir);
  chmodSync(dir, 0o750);
  const write = (path: string, data: string | Buffer, mode = 0o644) => {
    writeFileSync(join(dir, path), data);
    chmodSync(join(dir, path), mode);
  };
  write('hello.txt', 'hello\n');
  write('empty', '');
  write('secret', 'only me\n', 0o600);
  write('run.sh', '#!/bin/sh\necho ok\n', 0o755);
  write('group-readable', 'team\n', 0o640);
  write('wide-open', 'anyone\n', 0o777); // would be 0755 under umask 022 without tar -p
  mkdirSync(join(dir, 'empty-dir'));
  mkdirSync(join(dir, 'private-dir'), { mode: 0o700 });
  chmodSync(join(dir, 'private-dir'), 0o700);
  mkdirSync(join(dir, 'a/b/c'), { recursive: true });
  write('a/b/c/nested.bin', randomBytes(70_000));
  write('a/sibling', 'x');
  write(LONG_NAME, 'a name longer than the 100 bytes a tar header holds\n');
  mkdirSync(join(dir, DEEP_DIR), { recursive: true });
  write(`${DEEP_DIR}/${'t'.repeat(60)}`, 'at the end of a path longer than 100 bytes\n');
  write('ünïcødé-名前.txt', 'non-ASCII name\n');
  // Not UTF-8 at all: names are bytes, and must survive as bytes.
  writeFileSync(Buffer.concat([Buffer.from(`${dir}/latin1-`), Buffer.from([0xe9, 0xff]), Buffer.from('.txt')]), 'raw bytes\n');
  symlinkSync('hello.txt', join(dir, 'link-to-file'));
  symlinkSync('a/b', join(dir, 'link-to-dir'));
  symlinkSync('nowhere', join(dir, 'dangling'));
  symlinkSync(LONG_TARGET, join(dir, 'link-with-long-target'));
  linkSync(join(dir, 'hello.txt'), join(dir, 'hard-link'));
  execFileSync('mkfifo', ['-m', '0620', join(dir, 'fifo')]);
  return {
    files: 13, // 11 written, the latin1 one, the hard link
    directories: 11, // root, empty-dir, private-dir, a, a/b, a/b/c, five in DEEP_DIR
    symlinks: 4,
    bytes: [
      'hello\n', '', 'only me\n', '#!/bin/sh\necho ok\n', 'team\n', 'anyone\n', 'x',
      'a name longer than the 100 bytes a tar header holds\n', 'at the end of a path longer than 100 bytes\n',
      'non-ASCII name\n', 'raw bytes\n', 'hello\n',
    ].reduce((n, s) => n + Buffer.byteLength(s), 70_000),
  };
}

/** Archives `dir`, digesting the archive as it goes; returns the bytes and that digest. */
async function archiveOf(dir: string): Promise<{ data: Buffer; digest: TreeDigest }> {
  const tar = tarLocal(dir);
  const digest = digestingTar();
  const chunks: Buffer[] = [];
  for await (const chunk of digest.tap(tar.stream)) chunks.push(chunk);
  await tar.done;
  return { data: Buffer.concat(chunks), digest: digest.result() };
}

async function* chunksOf(data: Buffer, size = 64 * 1024): AsyncGenerator<Buffer> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

const modeOf = (path: string) => statSync(path).mode & 0o7777;
/** What is in `dir`'s parent beside it: what a restore leaves behind. */
const besides = (dir: string) => readdirSync(join(dir, '..')).filter((n) => n.startsWith(`${dir.split('/').pop()}.`)).sort();

before(() => {
  root = mkdtempSync(join(tmpdir(), 'opsflow-files-'));
  source = join(root, 'source');
});

after(() => rmSync(root, { recursive: true, force: true }));

describe('tree digests', () => {
  let expected: ReturnType<typeof buildTree>;
  before(() => {
    expected = buildTree(source);
  });

  it('the tree, its archive streaming by and the tree extracted from it have one digest', async () => {
    const onDisk = await treeDigest(source);
    assert.deepEqual({ ...onDisk, sha256: undefined }, { ...expected, sha256: undefined });

    const tar = tarLocal(source);
    const streamed = digestingTar();
    const target = join(root, 'copy');
    const { staged, digest } = await stageLocal(target, 'first', streamed.tap(tar.stream));
    await tar.done;
    assert.equal(staged, `${target}.opsflow-staged-first`);
    assert.deepEqual(streamed.result(), onDisk);
    assert.deepEqual(digest, onDisk);
    assert.deepEqual(await treeDigest(staged), onDisk);
    assert.equal(existsSync(target), false, 'staging leaves the live path alone');

    // The archive is the same bytes every time: name order, numeric owners, no per-file pax times.
    const again = await archiveOf(source);
    const third = await archiveOf(source);
    assert.equal(createHash('sha256').update(again.data).digest('hex'), createHash('sha256').update(third.data).digest('hex'));
    assert.ok(again.data.includes(Buffer.from('././@LongLink')), 'long names go in GNU long-name entries');
  });

  it('modes, long names, non-UTF-8 names and every entry type survive extraction', async () => {
    const { data } = await archiveOf(source);
    const { staged } = await stageLocal(join(root, 'modes'), 't', chunksOf(data));
    assert.equal(modeOf(staged), 0o750, 'the root keeps its mode');
    for (const [path, mode] of [['secret', 0o600], ['run.sh', 0o755], ['group-readable', 0o640], ['wide-open', 0o777], ['private-dir', 0o700], ['fifo', 0o620]] as const) {
      assert.equal(modeOf(join(staged, path)), mode, path);
    }
    assert.equal(readFileSync(join(staged, LONG_NAME), 'utf8'), 'a name longer than the 100 bytes a tar header holds\n');
    assert.equal(readFileSync(join(staged, DEEP_DIR, 't'.repeat(60)), 'utf8'), 'at the end of a path longer than 100 bytes\n');
    assert.equal(readFileSync(join(staged, 'ünïcødé-名前.txt'), 'utf8'), 'non-ASCII name\n');
    assert.equal(readFileSync(Buffer.concat([Buffer.from(`${staged}/latin1-`), Buffer.from([0xe9, 0xff]), Buffer.from('.txt')]), 'utf8'), 'raw bytes\n');
    assert.equal(execFileSync('readlink', [join(staged, 'link-with-long-target')], { encoding: 'utf8' }).trim(), LONG_TARGET);
    assert.ok(statSync(join(staged, 'fifo')).isFIFO());
    assert.ok(statSync(join(staged, 'empty-dir')).isDirectory());
  });

  it('any change to a path, type, mode, content or link target changes the digest', async () => {
    const tree = join(root, 'changes');
    mkdirSync(tree);
    writeFileSync(join(tree, 'f'), 'one');
    symlinkSync('f', join(tree, 'l'));
    const seen = new Set([(await treeDigest(tree)).sha256]);
    const changes: Array<[string, () => void]> = [
      ['content', () => writeFileSync(join(tree, 'f'), 'two')],
      ['mode', () => chmodSync(join(tree, 'f'), 0o600)],
      ['link target', () => { rmSync(join(tree, 'l')); symlinkSync('g', join(tree, 'l')); }],
      ['empty directory', () => mkdirSync(join(tree, 'd'))],
      ['name', () => renameSync(join(tree, 'd'), join(tree, 'e'))],
      ['type', () => { rmSync(join(tree, 'e'), { recursive: true }); writeFileSync(join(tree, 'e'), ''); }],
      ['root mode', () => chmodSync(tree, 0o700)],
    ];
    for (const [what, change] of changes) {
      change();
      const { sha256 } = await treeDigest(tree);
      assert.ok(!seen.has(sha256), `${what} changed nothing`);
      seen.add(sha256);
      assert.equal((await archiveOf(tree)).digest.sha256, sha256, `archive digest after ${what}`);
    }
  });

  it('only GNU-format archives are read, so nothing is misread', async () => {
    const pax = execFileSync('tar', ['-C', source, '--format=pax', '-cf', '-', '.']);
    const digest = digestingTar();
    assert.throws(() => digest.update(pax), (err: Error) => err instanceof IntegrityError && /not in GNU format \(archives are made with --format=gnu\)/.test(err.message));
  });
});

describe('restore steps', () => {
  let archive: { data: Buffer; digest: TreeDigest };
  /** A live tree that differs from the archive. */
  const makeLive = (dir: string) => {
    mkdirSync(join(dir, 'old'), { recursive: true });
    writeFileSync(join(dir, 'old/data'), 'previous version\n');
    chmodSync(join(dir, 'old/data'), 0o600);
  };
  before(async () => {
    archive = await archiveOf(source);
  });

  it('swap in replaces the live tree and keeps it; swap back restores it exactly; every step repeats as a no-op', async () => {
    const live = join(root, 'live-1');
    makeLive(live);
    const before = await treeDigest(live);
    const { staged, digest } = await stageLocal(live, 'r1', chunksOf(archive.data), { expectedBytes: archive.data.length });
    assert.deepEqual(digest, archive.digest);
    assert.deepEqual(await treeDigest(live), before, 'staging did not touch the live tree');

    await swapInLocal(live, 'r1');
    const { previous } = restorePaths(live, 'r1');
    assert.deepEqual(await treeDigest(live), archive.digest);
    assert.deepEqual(await treeDigest(previous), before);
    assert.equal(existsSync(staged), false);
    await swapInLocal(live, 'r1');
    assert.deepEqual(await treeDigest(live), archive.digest, 'a second swap-in changes nothing');
    assert.deepEqual(await treeDigest(previous), before);

    await swapBackLocal(live, 'r1');
    assert.deepEqual(await treeDigest(live), before);
    assert.deepEqual(besides(live), [], 'swap back leaves nothing beside the live tree');
    await swapBackLocal(live, 'r1');
    await discardLocal(live, 'r1');
    assert.deepEqual(await treeDigest(live), before, 'a second swap-back and a discard change nothing');
  });

  it('discard keeps the restored tree and drops the previous one; then nothing can be undone', async () => {
    const live = join(root, 'live-2');
    makeLive(live);
    await stageLocal(live, 'r2', chunksOf(archive.data));
    await swapInLocal(live, 'r2');
    assert.deepEqual(besides(live), ['live-2.opsflow-swap-r2']);
    await discardLocal(live, 'r2');
    assert.deepEqual(besides(live), []);
    await discardLocal(live, 'r2');
    await swapBackLocal(live, 'r2');
    await assert.rejects(swapInLocal(live, 'r2'), (err: Error) => err instanceof NotFoundError && err.message === `nothing is staged for ${live} (no ${live}.opsflow-staged-r2)`);
    assert.deepEqual(await treeDigest(live), archive.digest);
  });

  it('restores into a directory that did not exist, and swapping back removes it again', async () => {
    const live = join(root, 'live-3');
    await stageLocal(live, 'r3', chunksOf(archive.data));
    await swapInLocal(live, 'r3');
    await swapInLocal(live, 'r3');
    assert.deepEqual(await treeDigest(live), archive.digest);
    await swapBackLocal(live, 'r3');
    await swapBackLocal(live, 'r3');
    assert.equal(existsSync(live), false);
    assert.deepEqual(besides(live), []);
  });

  it('an interrupted swap in (live tree moved aside, staged not yet in place) is finished or undone', async () => {
    for (const next of ['finish', 'undo'] as const) {
      const live = join(root, `live-interrupted-${next}`);
      makeLive(live);
      const before = await treeDigest(live);
      await stageLocal(live, 'r4', chunksOf(archive.data));
      const { swap, previous } = restorePaths(live, 'r4');
      mkdirSync(swap); // what swapInLocal had done when it was interrupted
      renameSync(live, previous);
      await assert.rejects(discardLocal(live, 'r4'), (err: Error) => err instanceof ConflictError && /half done/.test(err.message), 'discarding now would lose the live tree');
      if (next === 'finish') {
        await swapInLocal(live, 'r4');
        assert.deepEqual(await treeDigest(live), archive.digest);
        assert.deepEqual(await treeDigest(previous), before);
      } else {
        await swapBackLocal(live, 'r4');
        assert.deepEqual(await treeDigest(live), before);
        await discardLocal(live, 'r4');
        assert.deepEqual(besides(live), []);
      }
    }
  });

  it('an interrupted swap back (restored tree set aside) is finished by running it again', async () => {
    const live = join(root, 'live-5');
    makeLive(live);
    const before = await treeDigest(live);
    await stageLocal(live, 'r5', chunksOf(archive.data));
    await swapInLocal(live, 'r5');
    const { swap } = restorePaths(live, 'r5');
    renameSync(live, join(swap, 'restored')); // swapBackLocal's first move, then a crash
    await assert.rejects(discardLocal(live, 'r5'), ConflictError);
    await assert.rejects(swapInLocal(live, 'r5'), (err: Error) => err instanceof ConflictError && /swap back of .* is under way/.test(err.message));
    await swapBackLocal(live, 'r5');
    assert.deepEqual(await treeDigest(live), before);
    assert.deepEqual(besides(live), []);
  });

  it('a truncated or corrupt stream fails staging and leaves the live tree as it was', async () => {
    const live = join(root, 'live-6');
    makeLive(live);
    const before = await treeDigest(live);
    const data = archive.data;
    // Where the 70 kB file's data is, and a header boundary (which GNU tar itself accepts as the end).
    const midFile = data.indexOf(Buffer.from('a/b/c/nested.bin')) + 30_000;
    const corruptHeader = Buffer.from(data);
    corruptHeader[512 * 3 + 10] = corruptHeader[512 * 3 + 10]! ^ 0xff;
    const cases: Array<[string, AsyncIterable<Buffer>, number | undefined, RegExp]> = [
      ['cut inside a file', chunksOf(data.subarray(0, midFile)), undefined, /ended after \d+ bytes inside a\/b\/c\/nested\.bin, without its end-of-archive block/],
      ['cut at a header', chunksOf(data.subarray(0, 1024)), undefined, /ended after 1024 bytes, without its end-of-archive block: it is truncated/],
      ['corrupt header', chunksOf(corruptHeader), undefined, /bad header checksum at byte 1536/],
      ['shorter than expected', chunksOf(data), data.length + 512, new RegExp(`ended after ${data.length} of the expected ${data.length + 512} bytes`)],
      ['longer than expected', chunksOf(data), data.length - 512, new RegExp(`longer than the expected ${data.length - 512} bytes`)],
      ['not a tar at all', chunksOf(randomBytes(20_000)), undefined, /bad header checksum at byte 0/],
    ];
    for (const [what, stream, expectedBytes, message] of cases) {
      await assert.rejects(stageLocal(live, 'r6', stream, { expectedBytes }), (err: Error) => {
        assert.ok(err instanceof IntegrityError, `${what}: ${err}`);
        assert.match(err.message, message, what);
        return true;
      });
      assert.deepEqual(await treeDigest(live), before, `${what}: live tree untouched`);
      await assert.rejects(swapInLocal(live, 'r6'), NotFoundError, `${what}: a failed stage cannot be swapped in`);
    }
    async function* broken() {
      yield data.subarray(0, 4096);
      throw new Error('download broke');
    }
    await assert.rejects(stageLocal(live, 'r6', broken()), /download broke/);
    assert.deepEqual(await treeDigest(live), before);
    assert.deepEqual(besides(live), ['live-6.opsflow-staged-r6.partial']);
    await discardLocal(live, 'r6');
    assert.deepEqual(besides(live), []);
  });

  it('from another process (zstd in a restore): tar reads it directly; a cut archive or a tree unlike the backup is refused, not staged', async () => {
    const live = join(root, 'live-9');
    makeLive(live);
    const before = await treeDigest(live);
    /** A process writing `data` to its stdout, as zstd does in a restore. */
    const writer = (data: Buffer) => {
      const file = join(root, `archive-${randomBytes(3).toString('hex')}.tar`);
      writeFileSync(file, data);
      return spawn('cat', [file], { stdio: ['ignore', 'pipe', 'ignore'] }).stdout!;
    };
    const cut = archive.data.subarray(0, archive.data.indexOf(Buffer.from('a/b/c/nested.bin')) + 30_000);
    await assert.rejects(stageLocalFromProcess(live, 'r9', writer(cut), { expected: archive.digest }), (err: Error) => /cannot extract into .*live-9\.opsflow-staged-r9\.partial/.test(err.message));
    await assert.rejects(swapInLocal(live, 'r9'), NotFoundError, 'a cut archive is not staged');
    const other = { ...archive.digest, sha256: 'f'.repeat(64) };
    await assert.rejects(stageLocalFromProcess(live, 'r9', writer(archive.data), { expected: other }), (err: Error) => err instanceof IntegrityError && /differs from the backup's/.test(err.message));
    await assert.rejects(swapInLocal(live, 'r9'), NotFoundError, 'a tree unlike the backup is not staged');
    assert.deepEqual(await treeDigest(live), before, 'the live tree untouched');

    const { staged, digest } = await stageLocalFromProcess(live, 'r9', writer(archive.data), { expected: archive.digest, expectedBytes: archive.data.length });
    assert.deepEqual(digest, archive.digest);
    assert.deepEqual(await treeDigest(staged), archive.digest);
    await discardLocal(live, 'r9');
  });

  it('an aborted stage stops tar and leaves the live tree alone', async () => {
    const live = join(root, 'live-7');
    makeLive(live);
    const before = await treeDigest(live);
    const controller = new AbortController();
    async function* slow() {
      yield archive.data.subarray(0, 8192);
      controller.abort(new Error('cancelled by test'));
      await new Promise((resolve) => setTimeout(resolve, 50));
      yield archive.data.subarray(8192);
    }
    await assert.rejects(stageLocal(live, 'r7', slow(), { signal: controller.signal }), /cancelled by test/);
    assert.deepEqual(await treeDigest(live), before);
    await discardLocal(live, 'r7');
  });

  it('names what is missing or invalid', async () => {
    const missing = join(root, 'no-such-dir');
    const tar = tarLocal(missing);
    await assert.rejects(tar.done, (err: Error) => err instanceof NotFoundError && err.message === `no directory ${missing}`);
    await assert.rejects(async () => {
      for await (const _ of tar.stream);
    }, NotFoundError);
    await assert.rejects(treeDigest(missing), (err: Error) => err instanceof NotFoundError && err.message.includes(missing));
    assert.throws(() => restorePaths(join(root, 'x'), '../evil'), InvalidInputError);
    await assert.rejects(swapInLocal(join(root, 'x'), 'has space'), InvalidInputError);
    await assert.rejects(stageLocal('/', 'ok', chunksOf(archive.data)), (err: Error) => err instanceof InvalidInputError && /cannot restore over \//.test(err.message));
  });
});

describe('a large file', () => {
  it('streams 200 MB through tar, the digest and extraction with flat memory', async () => {
    const dir = join(root, 'large');
    mkdirSync(dir);
    // Mostly a hole (cheap to make), with random blocks spread through it.
    const size = 200 * 1024 * 1024;
    const file = await open(join(dir, 'big.bin'), 'w');
    await file.truncate(size);
    for (let at = 0; at < size; at += 16 * 1024 * 1024) await file.write(randomBytes(1024 * 1024), 0, 1024 * 1024, at);
    await file.close();

    global.gc?.();
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const t0 = Date.now();
    const tar = tarLocal(dir);
    const streamed = digestingTar();
    const { staged, digest } = await stageLocal(join(root, 'large-copy'), 'big', streamed.tap(tar.stream)).finally(() => clearInterval(sampler));
    await tar.done;
    const ms = Date.now() - t0;
    const t1 = Date.now();
    const onDisk = await treeDigest(dir);
    const digestMs = Date.now() - t1;

    assert.deepEqual(streamed.result(), onDisk);
    assert.deepEqual(digest, onDisk);
    assert.equal(onDisk.bytes, size);
    assert.equal(statSync(join(staged, 'big.bin')).size, size);
    const grewMb = (peak - baseline) / 1024 / 1024;
    console.log(
      `200 MB: tar → digest → tar -x → treeDigest of the staged copy in ${ms} ms (${(200 / (ms / 1000)).toFixed(0)} MB/s); ` +
        `treeDigest alone ${digestMs} ms (${(200 / (digestMs / 1000)).toFixed(0)} MB/s); RSS ${(baseline / 1024 / 1024).toFixed(0)} MB, peak +${grewMb.toFixed(0)} MB`,
    );
    assert.ok(grewMb < 100, `RSS grew by ${grewMb.toFixed(0)} MB while streaming 200 MB`);
  });
});
