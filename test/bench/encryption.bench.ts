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
import { generate } from './text.ts';

const MiB = 2 ** 20;
const TOTAL_MIB = Number(process.argv[2] ?? 512);
if (!Number.isInteger(TOTAL_MIB) || TOTAL_MIB < 1) throw new Error(`usage: encryption.bench.ts [MiB], a positive integer (got ${process.argv[2]})`);
const SAMPLE_MIB = 32;
const dataKey = generateDataKey();

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
