/**
 * Benchmark data that compresses like logs (zstd about 3-4x): access-log
 * lines cut from an 8 MiB pool, with fresh hex digits every 128 bytes so a
 * compressor cannot just find the pool's repeats. Deterministic per seed.
 */
const MiB = 2 ** 20;

/** A small, fast, seeded PRNG (mulberry32): 32-bit unsigned integers. */
export function prng(seed: number): () => number {
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

/** `bytes` (at most 1 MiB) of log text, cut from the pool at a random offset. */
export function logText(random: () => number, bytes: number): Buffer {
  const chunk = Buffer.allocUnsafe(Math.min(MiB, bytes));
  const start = random() % (POOL.length - MiB);
  POOL.copy(chunk, 0, start, start + chunk.length);
  for (let at = 0; at + 12 <= chunk.length; at += 128) {
    const high = random();
    const low = random();
    for (let digit = 0; digit < 8; digit++) chunk[at + digit] = HEX[(high >>> (4 * digit)) & 15]!;
    for (let digit = 0; digit < 4; digit++) chunk[at + 8 + digit] = HEX[(low >>> (4 * digit)) & 15]!;
  }
  return chunk;
}

/** `totalBytes` of log text in 1 MiB chunks, made on the fly, never held whole in memory. */
export async function* generate(totalBytes: number, seed = 7): AsyncGenerator<Buffer> {
  const random = prng(seed);
  for (let sent = 0; sent < totalBytes; sent += MiB) yield logText(random, totalBytes - sent);
}
