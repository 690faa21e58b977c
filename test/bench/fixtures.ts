/**
 * Data the benchmarks generate, shared so each measures the same shapes: a
 * directory tree of mixed files, and a Redis keyspace of mixed types.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, randomFillSync } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { log, MiB } from './common.ts';
import { logText, prng } from './text.ts';

const KINDS = [
  { dir: 'config', share: 0.05, min: 256, max: 8 * 1024, text: true, ext: 'conf' },
  { dir: 'logs', share: 0.45, min: 32 * 1024, max: MiB, text: true, ext: 'log' },
  { dir: 'uploads', share: 0.35, min: 16 * 1024, max: MiB, text: false, ext: 'jpg' },
  { dir: 'checkpoints', share: 0.15, min: 8 * MiB, max: 24 * MiB, text: false, ext: 'ckpt' },
];

export interface Tree {
  files: number;
  bytes: number;
  /** The share of the bytes that compresses (text). */
  textBytes: number;
}

/** Writes about `totalBytes` of files under `root` (at most 100 a directory), deterministically for one size. */
export function writeTree(root: string, totalBytes: number): Tree {
  const random = prng(totalBytes);
  const tree: Tree = { files: 0, bytes: 0, textBytes: 0 };
  for (const kind of KINDS) {
    const budget = kind.share * totalBytes;
    for (let i = 0, written = 0; written < budget; i++) {
      const size = Math.min(kind.min + (random() % (kind.max - kind.min)), Math.max(kind.min, Math.ceil(budget - written)));
      const dir = join(root, kind.dir, `d${String(Math.floor(i / 100)).padStart(3, '0')}`);
      if (i % 100 === 0) mkdirSync(dir, { recursive: true });
      const fd = openSync(join(dir, `${kind.dir}-${i}.${kind.ext}`), 'w');
      for (let left = size; left > 0; left -= MiB) writeSync(fd, kind.text ? logText(random, left) : randomFillSync(Buffer.allocUnsafe(Math.min(MiB, left))));
      closeSync(fd);
      written += size;
      tree.files++;
      tree.bytes += size;
      if (kind.text) tree.textBytes += size;
    }
  }
  execFileSync('sync'); // no method pays for writing the tree back
  return tree;
}

/**
 * Mixed data like an application cache and queue: strings of 100 B – 2 KiB
 * (JSON-ish text with random ids and tokens, some random binary), hashes of
 * 10 fields, lists of 20 items, sorted sets of 20 members. Random enough that
 * the RDB's LZF compression does not make it trivially small.
 */
export async function fillRedis(client: Redis, targetBytes: number): Promise<{ keys: number; usedMemory: number }> {
  const pool = randomBytes(4 * MiB);
  let at = 0;
  const rand = (n: number) => {
    if (at + n > pool.length) at = 0;
    const b = pool.subarray(at, at + n);
    at += n + 7;
    return b;
  };
  const words = 'alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa'.split(' ');
  const text = (i: number, n: number) => {
    let s = `{"id":${i},"token":"${rand(12).toString('hex')}","tags":[`;
    while (s.length < n) s += `"${words[(i + s.length) % words.length]}",`;
    return `${s}"end"]}`;
  };
  // Counted from what the server used before, so a shared server's other databases do not count.
  const usedMemory = async () => Number(/^used_memory:(\d+)/m.exec(await client.info('memory'))![1]);
  const base = await usedMemory();
  let keys = 0;
  let used = 0;
  for (let batch = 0; used < targetBytes; batch++) {
    const p = client.pipeline();
    for (let j = 0; j < 1000; j++) {
      const i = keys++;
      const kind = i % 10;
      if (kind < 5) p.set(`cache:${i}`, text(i, 100 + ((i * 37) % 1900)));
      else if (kind === 5) p.set(`blob:${i}`, rand(64 + (i % 1024)));
      else if (kind < 8) {
        const fields: string[] = [];
        for (let f = 0; f < 10; f++) fields.push(`field${f}`, f % 3 ? `${words[f]}-${i}` : rand(16).toString('base64'));
        p.hset(`user:${i}`, ...fields);
      } else if (kind === 8) p.rpush(`queue:${i}`, ...Array.from({ length: 20 }, (_, k) => text(i + k, 60)));
      else p.zadd(`rank:${i}`, ...Array.from({ length: 20 }, (_, k) => [k * 3.25 + i, `member-${i}-${k}`]).flat());
      if (i % 50 === 0) p.pexpire(`cache:${i - (i % 10)}`, 3_600_000 + i);
    }
    await p.exec();
    if (batch % 20 === 0) {
      used = (await usedMemory()) - base;
      log(`  filled ${keys.toLocaleString('en-US')} keys, used_memory ${(used / MiB).toFixed(0)} MiB of ${(targetBytes / MiB).toFixed(0)} MiB`);
    }
  }
  return { keys: await client.dbsize(), usedMemory: await usedMemory() };
}

