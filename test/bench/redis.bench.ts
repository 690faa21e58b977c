/**
 * Redis snapshot benchmark (a script, not a test): `npm run bench:redis [-- flags]`.
 *
 * For each size, starts a throwaway redis-server (no bed needed), fills it
 * with about that many MiB (INFO used_memory) of mixed data, then takes the
 * same snapshot, in the same run, with:
 *   redis-cli  redis-cli -p P --rdb FILE                       (the plain tool)
 *   opsflow    snapshot() → FILE, in its own node process        (src/adapters/redis.ts)
 * once per transfer mode of the server: diskless (the RDB streamed from the
 * fork; Redis 7's default) and disk (BGSAVE to the server's disk, then the
 * file). Both run under /usr/bin/time for wall, CPU and peak RSS. The first
 * opsflow RDB of each size is loaded by verifyRdb and its keys counted.
 * Prints a table and, as the last line of stdout, a JSON summary.
 *
 * Flags: --sizes 200,800 (MiB of used_memory)  --runs 1 (median of N)
 * --to file|null (null: both write to /dev/null)  --check (exit 1 if a target is missed)
 */
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { readFileSync, openSync, closeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Redis } from 'ioredis';
import { connectRedis, snapshot, startScratchRedis, verifyRdb, type ScratchRedis } from '../../src/adapters/redis.ts';

const { values: flags } = parseArgs({
  options: {
    sizes: { type: 'string', default: '200,800' },
    runs: { type: 'string', default: '1' },
    to: { type: 'string', default: 'file' },
    check: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
    // Internal: this file run as the opsflow side of one measurement.
    child: { type: 'string' },
    out: { type: 'string' },
  },
});

const MiB = 2 ** 20;

// ---------------------------------------------------------------- child: one opsflow snapshot

if (flags.child) {
  // The RSS of this process before the snapshot (node, tsx, modules loaded), and its peak while streaming, sampled.
  const rssBeforeBytes = process.memoryUsage.rss();
  let rssPeakBytes = rssBeforeBytes;
  const sampler = setInterval(() => (rssPeakBytes = Math.max(rssPeakBytes, process.memoryUsage.rss())), 20);
  const started = performance.now();
  const snap = snapshot({ url: flags.child });
  if (flags.out === '/dev/null') for await (const chunk of snap.stream) void chunk;
  else {
    await pipeline(snap.stream, createWriteStream(flags.out!));
    // As redis-cli does before it reports success.
    const fh = await open(flags.out!, 'r');
    await fh.sync();
    await fh.close();
  }
  const info = await snap.done;
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  rssPeakBytes = Math.max(rssPeakBytes, process.memoryUsage.rss());
  process.stdout.write(`${JSON.stringify({ ...info, seconds, rssBeforeBytes, rssPeakBytes, maxRssBytes: process.resourceUsage().maxRSS * 1024 })}\n`);
  process.exit(0);
}

if (flags.help) {
  process.stdout.write(readFileSync(new URL(import.meta.url)).toString().split('*/')[0]!.replace(/^\/\*\*\n/, '').replace(/^ \* ?/gm, '') + '\n');
  process.exit(0);
}

const SIZES_MIB = flags.sizes.split(',').map((s) => Number(s.trim()));
if (!SIZES_MIB.length || SIZES_MIB.some((n) => !Number.isFinite(n) || n < 8)) throw new Error(`--sizes: MiB values >= 8, comma-separated (got ${flags.sizes})`);
const RUNS = Number(flags.runs);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`--runs: a positive integer (got ${flags.runs})`);
if (flags.to !== 'file' && flags.to !== 'null') throw new Error(`--to: file or null (got ${flags.to})`);

/** opsflow's time over redis-cli's (per transfer mode); opsflow's peak RSS; its RSS while streaming, largest size less smallest. */
const TARGETS = { timeVsRedisCli: 1.2, peakRssMiB: 150, rssGrowthMiB: 20 };
const BENCH_START = Date.now();
const SELF = fileURLToPath(import.meta.url);

function log(line: string): void {
  process.stderr.write(`[bench ${((Date.now() - BENCH_START) / 1000).toFixed(0).padStart(4)}s] ${line}\n`);
}

// ---------------------------------------------------------------- data

/**
 * Mixed data like an application cache and queue: strings of 100 B – 2 KiB
 * (JSON-ish text with random ids and tokens, some random binary), hashes of
 * 10 fields, lists of 20 items, sorted sets of 20 members. Random enough that
 * the RDB's LZF compression does not make it trivially small.
 */
async function fill(client: Redis, targetBytes: number): Promise<{ keys: number; usedMemory: number }> {
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
      used = Number(/^used_memory:(\d+)/m.exec(await client.info('memory'))![1]);
      log(`  filled ${keys.toLocaleString('en-US')} keys, used_memory ${(used / MiB).toFixed(0)} MiB of ${(targetBytes / MiB).toFixed(0)} MiB`);
    }
  }
  return { keys: await client.dbsize(), usedMemory: Number(/^used_memory:(\d+)/m.exec(await client.info('memory'))![1]) };
}

// ---------------------------------------------------------------- measurements

interface Measurement {
  method: 'redis-cli' | 'opsflow';
  transfer: 'diskless' | 'disk';
  /** Wall time of the process, start to exit (opsflow: includes node + tsx start-up). */
  wallSeconds: number;
  /** opsflow: from calling snapshot() to `done`; redis-cli: its wall time. */
  seconds: number;
  cpuSeconds: number;
  /** Peak RSS of the process (VmHWM, /usr/bin/time): for opsflow, node's start-up (tsx compiling) may set it. */
  peakRssBytes: number;
  /** opsflow: RSS before calling snapshot() and its peak while streaming (sampled every 20 ms). */
  rssBeforeBytes?: number;
  rssDuringBytes?: number;
  rdbBytes: number;
  /** opsflow: from SYNC to the first RDB byte (the server's fork, or its whole BGSAVE for disk). */
  preparedMs?: number;
}

/** Runs `cmd` under /usr/bin/time; resolves with its stdout (unless sent to /dev/null) and time's numbers. */
function timed(cmd: string, args: string[], stdoutToNull = false): Promise<{ stdout: string; wall: number; cpu: number; maxRssBytes: number }> {
  return new Promise((resolve, reject) => {
    const devNull = stdoutToNull ? openSync('/dev/null', 'w') : undefined;
    const child = spawn('/usr/bin/time', ['-f', 'OPSFLOW_TIME %e %U %S %M', cmd, ...args], { stdio: ['ignore', devNull ?? 'pipe', 'pipe'] });
    if (devNull !== undefined) closeSync(devNull);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('error', reject);
    child.once('close', (code) => {
      const m = /OPSFLOW_TIME (\S+) (\S+) (\S+) (\d+)/.exec(stderr);
      if (code !== 0 || !m) return reject(new Error(`${cmd} failed (${code}): ${stderr.slice(-2000)}`));
      resolve({ stdout, wall: Number(m[1]), cpu: Number(m[2]) + Number(m[3]), maxRssBytes: Number(m[4]) * 1024 });
    });
  });
}

async function runRedisCli(server: ScratchRedis, transfer: Measurement['transfer'], file: string): Promise<Measurement> {
  // To /dev/null through stdout ("--rdb -"): redis-cli fsyncs a file it writes, and /dev/null refuses fsync.
  const t = file === '/dev/null' ? await timed('redis-cli', ['-p', String(server.port), '--rdb', '-'], true) : await timed('redis-cli', ['-p', String(server.port), '--rdb', file]);
  return { method: 'redis-cli', transfer, wallSeconds: t.wall, seconds: t.wall, cpuSeconds: t.cpu, peakRssBytes: t.maxRssBytes, rdbBytes: file === '/dev/null' ? 0 : statSync(file).size };
}

async function runOpsflow(server: ScratchRedis, transfer: Measurement['transfer'], file: string): Promise<Measurement> {
  const t = await timed(process.execPath, ['--import', 'tsx', SELF, '--child', server.url, '--out', file]);
  const r = JSON.parse(t.stdout.trim().split('\n').pop()!) as { seconds: number; rawBytes: number; preparedMs: number; transfer: string; rssBeforeBytes: number; rssPeakBytes: number };
  if (r.transfer !== transfer) throw new Error(`opsflow saw a ${r.transfer} transfer, expected ${transfer}`);
  if (file !== '/dev/null' && statSync(file).size !== r.rawBytes) throw new Error(`opsflow reported ${r.rawBytes} bytes, the file has ${statSync(file).size}`);
  return { method: 'opsflow', transfer, wallSeconds: t.wall, seconds: r.seconds, cpuSeconds: t.cpu, peakRssBytes: t.maxRssBytes, rssBeforeBytes: r.rssBeforeBytes, rssDuringBytes: r.rssPeakBytes, rdbBytes: r.rawBytes, preparedMs: r.preparedMs };
}

function median(xs: Measurement[]): Measurement {
  const sorted = [...xs].sort((a, b) => a.seconds - b.seconds);
  return {
    ...sorted[Math.floor((sorted.length - 1) / 2)]!,
    peakRssBytes: Math.max(...xs.map((x) => x.peakRssBytes)),
    ...(xs[0]!.rssDuringBytes === undefined ? {} : { rssDuringBytes: Math.max(...xs.map((x) => x.rssDuringBytes ?? 0)) }),
  };
}

// ---------------------------------------------------------------- one size

interface SizeResult {
  targetMiB: number;
  keys: number;
  usedMemory: number;
  fillSeconds: number;
  verified: { keys: number; loadMs: number };
  runs: Measurement[];
}

/** opsflow's RDB, loaded by a scratch redis-server: every key there. */
async function verify(file: string, keys: number, targetMiB: number): Promise<SizeResult['verified']> {
  const v = await verifyRdb(file);
  if (v.keys !== keys) throw new Error(`opsflow's RDB holds ${v.keys} keys, the server ${keys}`);
  log(`${targetMiB} MiB: opsflow's RDB loads in a scratch redis-server with all ${v.keys.toLocaleString('en-US')} keys (${(v.loadMs / 1000).toFixed(1)} s)`);
  return { keys: v.keys, loadMs: v.loadMs };
}

async function benchSize(dir: string, targetMiB: number): Promise<SizeResult> {
  log(`${targetMiB} MiB: starting redis-server and filling it`);
  // No wait for other replicas before a diskless transfer: measure the transfer, not Redis's 5 s default delay.
  const server = await startScratchRedis({ args: ['--repl-diskless-sync-delay', '0'] });
  const client = await connectRedis({ url: server.url });
  try {
    const fillStart = Date.now();
    const { keys, usedMemory } = await fill(client, targetMiB * MiB);
    const fillSeconds = (Date.now() - fillStart) / 1000;
    log(`${targetMiB} MiB: ${keys.toLocaleString('en-US')} keys, used_memory ${(usedMemory / MiB).toFixed(0)} MiB, filled in ${fillSeconds.toFixed(0)} s`);
    const runs: Measurement[] = [];
    let verified: SizeResult['verified'] | undefined;
    for (const transfer of ['diskless', 'disk'] as const) {
      await client.config('SET', 'repl-diskless-sync', transfer === 'diskless' ? 'yes' : 'no');
      const cli: Measurement[] = [];
      const ops: Measurement[] = [];
      for (let r = 1; r <= RUNS; r++) {
        const tag = RUNS > 1 ? ` run ${r}/${RUNS}` : '';
        const cliFile = flags.to === 'null' ? '/dev/null' : join(dir, `cli-${targetMiB}-${transfer}.rdb`);
        const c = await runRedisCli(server, transfer, cliFile);
        if (cliFile !== '/dev/null') rmSync(cliFile);
        cli.push(c);
        log(`${targetMiB} MiB ${transfer}${tag}: redis-cli ${c.seconds.toFixed(2)} s, ${(c.rdbBytes / MiB).toFixed(0)} MiB, peak RSS ${(c.peakRssBytes / MiB).toFixed(1)} MiB`);
        const opsFile = flags.to === 'null' ? '/dev/null' : join(dir, `opsflow-${targetMiB}-${transfer}.rdb`);
        const o = await runOpsflow(server, transfer, opsFile);
        ops.push(o);
        log(`${targetMiB} MiB ${transfer}${tag}: opsflow   ${o.seconds.toFixed(2)} s (process ${o.wallSeconds.toFixed(2)} s), ${(o.rdbBytes / MiB).toFixed(0)} MiB, peak RSS ${(o.peakRssBytes / MiB).toFixed(1)} MiB, RSS ${(o.rssBeforeBytes! / MiB).toFixed(0)} → ${(o.rssDuringBytes! / MiB).toFixed(0)} MiB while streaming`);
        if (opsFile !== '/dev/null') {
          verified ??= await verify(opsFile, keys, targetMiB);
          rmSync(opsFile);
        }
      }
      runs.push(median(cli), median(ops));
    }
    if (!verified) {
      // Output went to /dev/null: one more snapshot, unmeasured, to check what opsflow streams.
      const file = join(dir, `verify-${targetMiB}.rdb`);
      const snap = snapshot({ url: server.url });
      await pipeline(snap.stream, createWriteStream(file));
      await snap.done;
      verified = await verify(file, keys, targetMiB);
      rmSync(file);
    }
    return { targetMiB, keys, usedMemory, fillSeconds, verified: verified!, runs };
  } finally {
    client.disconnect();
    await server.stop();
  }
}

// ---------------------------------------------------------------- report

const mib = (b: number) => (b / MiB).toFixed(b < 10 * MiB ? 1 : 0);

function report(results: SizeResult[]): { text: string; pass: boolean; ratios: Record<string, number[]> } {
  const out: string[] = [];
  out.push('', `Redis snapshot benchmark — ${new Date().toISOString()}, ${RUNS} run(s) per method${RUNS > 1 ? ' (median shown)' : ''}, output to ${flags.to === 'null' ? '/dev/null' : 'a file'}, ${availableParallelism()} cores, MiB = 2^20 bytes`);
  const cols = ['transfer', 'method', 's', 'process s', 'RDB MiB/s', 'RDB MiB', 'CPU s', 'peak RSS MiB', 'RSS before → during', 'server prep ms'];
  const w = [9, 10, 7, 10, 10, 8, 7, 13, 20, 14];
  const row = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  for (const r of results) {
    out.push('', `== ${r.targetMiB} MiB target: used_memory ${mib(r.usedMemory)} MiB, ${r.keys.toLocaleString('en-US')} keys; opsflow's RDB verified: ${r.verified.keys.toLocaleString('en-US')} keys loaded in ${(r.verified.loadMs / 1000).toFixed(1)} s`);
    out.push(row(cols));
    for (const m of r.runs) {
      const bytes = m.rdbBytes || r.runs.find((x) => x.transfer === m.transfer && x.rdbBytes)?.rdbBytes || 0;
      out.push(row([m.transfer, m.method, m.seconds.toFixed(2), m.wallSeconds.toFixed(2), (bytes / MiB / m.seconds).toFixed(0), bytes ? mib(bytes) : '-', m.cpuSeconds.toFixed(2), mib(m.peakRssBytes), m.rssDuringBytes === undefined ? '-' : `${mib(m.rssBeforeBytes!)} → ${mib(m.rssDuringBytes)}`, m.preparedMs === undefined ? '-' : String(m.preparedMs)]));
    }
  }
  out.push(
    '',
    '"s": redis-cli\'s process wall time; opsflow\'s time from snapshot() to done (a worker is long-lived), "process s" adds node and tsx start-up.',
    '"peak RSS": the process\'s VmHWM (/usr/bin/time), which for opsflow is node + tsx start-up; "RSS before → during": opsflow\'s RSS before snapshot() and its peak while streaming.',
    '"server prep": from SYNC to the first RDB byte, the server\'s fork (diskless) or its whole BGSAVE to disk (disk).',
  );

  const ratios: Record<string, number[]> = {};
  for (const transfer of ['diskless', 'disk'] as const) {
    ratios[`opsflow / redis-cli time, ${transfer}`] = results.map((r) => {
      const o = r.runs.find((m) => m.transfer === transfer && m.method === 'opsflow')!;
      const c = r.runs.find((m) => m.transfer === transfer && m.method === 'redis-cli')!;
      return o.seconds / c.seconds;
    });
  }
  const opsflowRuns = (r: SizeResult) => r.runs.filter((m) => m.method === 'opsflow');
  const peaks = results.map((r) => Math.max(...opsflowRuns(r).map((m) => m.peakRssBytes)) / MiB);
  const during = results.map((r) => Math.max(...opsflowRuns(r).map((m) => m.rssDuringBytes ?? 0)) / MiB);
  const checks = [
    ...Object.entries(ratios).map(([name, values]) => ({ name, values, fmt: (v: number) => v.toFixed(2), target: `<= ${TARGETS.timeVsRedisCli}`, ok: values.every((v) => v <= TARGETS.timeVsRedisCli) })),
    { name: 'opsflow peak RSS (MiB)', values: peaks, fmt: (v: number) => v.toFixed(0), target: `< ${TARGETS.peakRssMiB}`, ok: peaks.every((v) => v < TARGETS.peakRssMiB) },
    {
      name: 'opsflow RSS while streaming, largest − smallest size (MiB)',
      values: [during[during.length - 1]! - during[0]!],
      fmt: (v: number) => v.toFixed(1),
      target: `< ${TARGETS.rssGrowthMiB}`,
      ok: during[during.length - 1]! - during[0]! < TARGETS.rssGrowthMiB,
    },
  ];
  out.push('', ['ratio'.padEnd(46), ...results.map((r) => `${r.targetMiB} MiB`.padStart(9)), 'target'.padStart(8), 'ok'].join('  '));
  for (const c of checks) {
    const cells = c.values.length === results.length ? c.values.map((v) => c.fmt(v).padStart(9)) : [c.fmt(c.values[0]!).padStart(9 * results.length + 2 * (results.length - 1))];
    out.push([c.name.padEnd(46), ...cells, c.target.padStart(8), c.ok ? 'yes' : 'NO'].join('  '));
  }
  return { text: out.join('\n'), pass: checks.every((c) => c.ok), ratios };
}

// ---------------------------------------------------------------- main

const dir = mkdtempSync(join(tmpdir(), 'opsflow-bench-redis-'));
try {
  const results: SizeResult[] = [];
  for (const size of SIZES_MIB) results.push(await benchSize(dir, size));
  const { text, pass, ratios } = report(results);
  const summary = {
    bench: 'redis',
    pass,
    to: flags.to,
    runs: RUNS,
    ratios,
    sizes: results.map((r) => ({
      targetMiB: r.targetMiB,
      keys: r.keys,
      usedMemoryBytes: r.usedMemory,
      runs: r.runs.map((m) => ({ ...m })),
    })),
  };
  process.stdout.write(`${text}\n\n${JSON.stringify(summary)}\n`);
  rmSync(dir, { recursive: true, force: true });
  process.exit(flags.check && !pass ? 1 : 0);
} catch (err) {
  log(`failed: ${(err as Error).stack ?? err}`);
  rmSync(dir, { recursive: true, force: true });
  process.exit(2);
}
