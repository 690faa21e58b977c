/**
 * Encryption benchmark (a script, not a test):
 *   node --import tsx test/bench/encryption.bench.ts [MiB]     (default 512)
 *
 * Times, in one run and on the same generated data (log-like text that zstd
 * compresses about 3-4x, made on the fly, never held whole in memory):
 *   zstd             data → zstd -3 -T0 → SHA-256              (the backup pipeline without encryption)
 *   zstd + encrypt   data → zstd -3 -T0 → encryptStream → SHA-256
 * and encryptStream and decryptStream alone on a 32 MiB in-memory sample.
 * Throughput is MiB/s of plaintext; peak RSS is this node process's (zstd's
 * own memory is not counted), sampled every 20 ms during each row.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { decryptStream, encryptStream, encryptedSize, generateDataKey } from '../../src/crypto.ts';
import { feed } from '../../src/streams.ts';

const MiB = 2 ** 20;
const TOTAL_MIB = Number(process.argv[2] ?? 512);
if (!Number.isInteger(TOTAL_MIB) || TOTAL_MIB < 1) throw new Error(`usage: encryption.bench.ts [MiB], a positive integer (got ${process.argv[2]})`);
const SAMPLE_MIB = 32;
const dataKey = generateDataKey();

// ---------------------------------------------------------------- data

function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const HEX = Buffer.from('0123456789abcdef');

/** 8 MiB of access-log lines, the material every chunk is cut from. */
function logLinePool(random: () => number): Buffer {
  const methods = ['GET', 'GET', 'GET', 'POST', 'PUT', 'DELETE'];
  const paths = ['/products', '/cart', '/checkout', '/account', '/search', '/api/v2/orders', '/api/v2/events'];
  const statuses = [200, 200, 200, 200, 304, 301, 404, 500];
  const agents = ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0', 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4) Safari/604.1', 'okhttp/4.12.0', 'python-requests/2.31.0'];
  const pick = <T>(list: T[]) => list[random() % list.length]!;
  const pool = Buffer.alloc(8 * MiB);
  for (let i = 0, at = 0; ; i++) {
    const line =
      `2026-11-23T02:${String((i / 6000) % 60 | 0).padStart(2, '0')}:${String((i / 100) % 60 | 0).padStart(2, '0')}.${String(i % 1000).padStart(3, '0')}Z ` +
      `${pick(methods)} ${pick(paths)}/${random() % 50000} ${pick(statuses)} ${random() % 2000}ms user=${random() % 100000} ` +
      `agent="${pick(agents)}" trace=${(random() >>> 0).toString(16)}${(random() >>> 0).toString(16)}\n`;
    if (at + line.length > pool.length) return pool.subarray(0, at);
    at += pool.write(line, at);
  }
}

const POOL = logLinePool(prng(1));

/**
 * `totalBytes` in 1 MiB chunks, each cut from the pool at a random offset with
 * 12 fresh hex digits every 128 bytes, so zstd cannot just find the pool's
 * repeats. Deterministic per `seed`: both pipelines compress the same bytes.
 */
async function* generate(totalBytes: number, seed = 7): AsyncGenerator<Buffer> {
  const random = prng(seed);
  for (let sent = 0; sent < totalBytes; sent += MiB) {
    const chunk = Buffer.allocUnsafe(Math.min(MiB, totalBytes - sent));
    const start = random() % (POOL.length - MiB);
    POOL.copy(chunk, 0, start, start + chunk.length);
    for (let at = 0; at + 12 <= chunk.length; at += 128) {
      const high = random();
      const low = random();
      for (let digit = 0; digit < 8; digit++) chunk[at + digit] = HEX[(high >>> (4 * digit)) & 15]!;
      for (let digit = 0; digit < 4; digit++) chunk[at + 8 + digit] = HEX[(low >>> (4 * digit)) & 15]!;
    }
    yield chunk;
  }
}

// ---------------------------------------------------------------- measuring

interface Row {
  name: string;
  plainBytes: number;
  seconds: number;
  peakRssBytes: number;
  outputBytes: number;
}

async function measure(name: string, plainBytes: number, run: () => Promise<number>): Promise<Row> {
  let peakRssBytes = process.memoryUsage.rss();
  const sampler = setInterval(() => (peakRssBytes = Math.max(peakRssBytes, process.memoryUsage.rss())), 20);
  const started = performance.now();
  const outputBytes = await run();
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  process.stderr.write(`[bench] ${name}: ${seconds.toFixed(2)} s\n`);
  return { name, plainBytes, seconds, peakRssBytes: Math.max(peakRssBytes, process.memoryUsage.rss()), outputBytes };
}

/** data → zstd -3 -T0 → (encryptStream) → SHA-256; returns the bytes that would be stored. */
async function zstdPipeline(totalBytes: number, encrypt: boolean): Promise<number> {
  const zstd = spawn('zstd', ['-3', '-T0', '-q', '-c'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve, reject) => {
    zstd.on('error', reject);
    zstd.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`zstd exited with ${code}`))));
  });
  const hash = createHash('sha256');
  let stored = 0;
  const consume = async () => {
    const compressed = zstd.stdout as AsyncIterable<Buffer>;
    for await (const chunk of encrypt ? encryptStream(compressed, dataKey) : compressed) {
      hash.update(chunk);
      stored += chunk.length;
    }
  };
  await Promise.all([feed(generate(totalBytes), zstd.stdin), consume(), exited]);
  hash.digest();
  return stored;
}

async function drain(stream: AsyncIterable<Buffer>): Promise<number> {
  let bytes = 0;
  for await (const chunk of stream) bytes += chunk.length;
  return bytes;
}

async function* replay(chunks: Buffer[]): AsyncGenerator<Buffer> {
  yield* chunks;
}

// ---------------------------------------------------------------- run

const total = TOTAL_MIB * MiB;
// Warms the JIT for the streaming stages before anything is timed.
await zstdPipeline(16 * MiB, true);
const idleRssBytes = process.memoryUsage.rss();
const rows = [
  await measure('data generation alone', total, () => drain(generate(total))),
  await measure('zstd -3 -T0 + sha256', total, () => zstdPipeline(total, false)),
  await measure('zstd -3 -T0 + encrypt + sha256', total, () => zstdPipeline(total, true)),
];

// Made only now, so the streaming rows' RSS does not include the sample.
const sample: Buffer[] = [];
for await (const chunk of generate(SAMPLE_MIB * MiB, 99)) sample.push(chunk);
const sealedSample: Buffer[] = [];
for await (const segment of encryptStream(replay(sample), dataKey)) sealedSample.push(segment);
await drain(decryptStream(replay(sealedSample), dataKey));
const passes = Math.max(1, Math.round(TOTAL_MIB / SAMPLE_MIB));
rows.push(
  // Each pass seals afresh (new salt), as separate objects would be.
  await measure('encryptStream alone (in memory)', passes * SAMPLE_MIB * MiB, async () => {
    let sealed = 0;
    for (let i = 0; i < passes; i++) sealed += await drain(encryptStream(replay(sample), dataKey));
    return sealed;
  }),
  await measure('decryptStream alone (in memory)', passes * SAMPLE_MIB * MiB, async () => {
    let opened = 0;
    for (let i = 0; i < passes; i++) opened += await drain(decryptStream(replay(sealedSample), dataKey));
    return opened;
  }),
);

const [, plain, encrypted] = rows as [Row, Row, Row];
const mibps = (row: Row) => row.plainBytes / MiB / row.seconds;
const table = [
  ['stage', 'MiB', 'seconds', 'MiB/s', 'peak RSS MiB'],
  ...rows.map((row) => [row.name, (row.plainBytes / MiB).toFixed(0), row.seconds.toFixed(2), mibps(row).toFixed(0), (row.peakRssBytes / MiB).toFixed(0)]),
];
const widths = table[0]!.map((_, column) => Math.max(...table.map((cells) => cells[column]!.length)));
for (const cells of table) process.stdout.write(cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ') + '\n');

const stored = { plain: plain.outputBytes, encrypted: encrypted.outputBytes };
process.stdout.write(
  `\nencryption after zstd costs ${((encrypted.seconds / plain.seconds - 1) * 100).toFixed(1)}% more time ` +
    `(${mibps(plain).toFixed(0)} → ${mibps(encrypted).toFixed(0)} MiB/s)\n` +
    `zstd ratio ${(total / stored.plain).toFixed(2)}x; encrypted object ${stored.encrypted} bytes ` +
    `(${stored.encrypted === encryptedSize(stored.plain) ? '= encryptedSize of the compressed stream' : `≠ encryptedSize ${encryptedSize(stored.plain)}: BUG`})\n` +
    `RSS before the first row ${(idleRssBytes / MiB).toFixed(0)} MiB; the in-memory rows hold their ${SAMPLE_MIB} MiB sample, plain and sealed\n`,
);
