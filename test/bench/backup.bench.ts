/**
 * Backup benchmark (a script, not a test): `npm run bench:backup [-- flags]`.
 *
 * Starts a local bed, and for each database size generates realistic data,
 * then times, on the same data in the same run:
 *   floor    pg_dump -Fc -Z0 > /dev/null                       (what reading the database costs)
 *   gzip     pg_dump | gzip | aws s3 cp - s3://bucket/key        (the runbooks' pipeline, to the bed's MinIO)
 *   opsflow  the real `backup` workflow on a real worker process (pg_dump -Fc → zstd → S3 multipart)
 * and prints a table, the ratios against their targets, and a one-line JSON
 * summary (the last line of stdout). See test/bench/README.md.
 *
 * Flags: --sizes 1024,256 (MiB, approximate pg_database_size)  --runs 1 (median
 * of N per method)  --keep (keep the bed's directory)  --check (exit 1 if a
 * target is missed).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, readdirSync, rmSync, mkdirSync } from 'node:fs';
import { availableParallelism, homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { S3Client, HeadObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { startBed, type Bed } from '../../deploy/bed/bed.ts';
import { writeWorkflowBundle } from '../../workers/bundle.ts';
import { libpqEnv } from '../../src/adapters/postgres.ts';
import { client, startWorker, testSetup, pgUrl, type WorkerProcess } from '../support/bed.ts';
import { createBenchDatabase, dropBenchDatabase } from './data.ts';
import { findComponent, type PostgresComponent } from '../../src/domain/manifest.ts';

// ---------------------------------------------------------------- options

const { values: flags } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1024,256' },
    runs: { type: 'string', default: '1' },
    keep: { type: 'boolean', default: false },
    check: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  process.stdout.write(readFileSync(new URL(import.meta.url)).toString().split('*/')[0]!.replace(/^\/\*\*\n/, '').replace(/^ \* ?/gm, '') + '\n');
  process.exit(0);
}
const SIZES_MIB = flags.sizes.split(',').map((s) => Number(s.trim()));
if (!SIZES_MIB.length || SIZES_MIB.some((n) => !Number.isFinite(n) || n < 8)) throw new Error(`--sizes: MiB values >= 8, comma-separated (got ${flags.sizes})`);
const RUNS = Number(flags.runs);
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error(`--runs: a positive integer (got ${flags.runs})`);

const TARGETS = { throughputVsGzip: 2, timeVsFloor: 1.3, outputVsGzip: 1, workerRssMiB: 300 };
const MiB = 2 ** 20;
const BENCH_START = Date.now();

function log(line: string): void {
  process.stderr.write(`[bench ${((Date.now() - BENCH_START) / 1000).toFixed(0).padStart(4)}s] ${line}\n`);
}

// ---------------------------------------------------------------- AWS CLI (v1, from PyPI) in a cached venv

function ensureAwsCli(): string {
  const venv = join(process.env.OPSFLOW_CACHE || join(homedir(), '.cache/opsflow'), 'bench-venv');
  const aws = join(venv, 'bin/aws');
  const works = () => {
    try {
      return execFileSync(aws, ['--version'], { stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
    } catch {
      return undefined;
    }
  };
  let version = existsSync(aws) ? works() : undefined;
  if (!version) {
    log(`installing the AWS CLI into ${venv} (pip install awscli)`);
    mkdirSync(venv, { recursive: true });
    execFileSync(process.env.OPSFLOW_BENCH_PYTHON || 'python3', ['-m', 'venv', venv], { stdio: 'inherit' });
    execFileSync(join(venv, 'bin/pip'), ['install', '--quiet', '--disable-pip-version-check', 'awscli'], { stdio: 'inherit' });
    version = works();
    if (!version) throw new Error(`${aws} does not run after installing awscli`);
  }
  log(`AWS CLI: ${version}`);
  return aws;
}

// ---------------------------------------------------------------- /proc: peak RSS of a process tree

function statusKiB(pid: number, field: 'VmHWM' | 'VmRSS'): number | undefined {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined; // gone
  }
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

interface Sampled {
  /** Peak RSS (VmHWM) by process name, of the processes under the method's root (not the root itself). */
  peaks: Record<string, number>;
  /** CPU seconds (user + system) used during the window by every process this script started (the bed's daemons, the worker, the tools), by name. */
  cpu: Record<string, number>;
}

/**
 * Samples /proc every `intervalMs` while a method runs: the peak RSS
 * (VmHWM, which only grows) of each process under `methodRoot`, and the CPU
 * time of every process under this script (so the bed's PostgreSQL backend
 * and MinIO count too, not only the tools).
 *
 * A process that exits is seen last up to `intervalMs` before its end. The
 * CPU it used after that is not lost: its reaper's children-time (cutime +
 * cstime) grows by the exited process's whole lifetime, so for each living
 * process the growth of its children-time, less what was sampled of the
 * exited processes below it, is the unsampled tail, shared among them in
 * proportion to what was sampled. A peak RSS reached in a tool's last moments
 * can still be missed; for tools that stream for seconds it is not reached then.
 */
function sampleProcesses(methodRoot: number, intervalMs = 100) {
  const self = process.pid;
  interface Seen { name: string; ppid: number; own0: number; own: number; kids0: number; kids: number; hwm: number; inMethod: boolean; alive: boolean }
  const seen = new Map<number, Seen>();
  let first = true;
  const sample = () => {
    const stats = new Map<number, { name: string; ppid: number; own: number; kids: number }>();
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        const close = stat.lastIndexOf(')');
        const f = stat.slice(close + 2).split(' ').map(Number); // f[0] is field 3 (state): ppid 4, utime 14, stime 15, cutime 16, cstime 17
        stats.set(Number(entry), { name: stat.slice(stat.indexOf('(') + 1, close), ppid: f[1]!, own: (f[11]! + f[12]!) / CLK_TCK, kids: (f[13]! + f[14]!) / CLK_TCK });
      } catch {
        // exited meanwhile
      }
    }
    const under = (pid: number, root: number): boolean => {
      for (let p = stats.get(pid)?.ppid, depth = 0; p && depth < 32; p = stats.get(p)?.ppid, depth++) if (p === root) return true;
      return false;
    };
    for (const info of seen.values()) info.alive = false;
    for (const [pid, st] of stats) {
      if (pid !== self && !under(pid, self)) continue;
      let info = seen.get(pid);
      if (!info) {
        // Running before the window: count from now. Started during it: count all its time.
        info = { name: st.name, ppid: st.ppid, own0: first ? st.own : 0, own: 0, kids0: first ? st.kids : 0, kids: 0, hwm: 0, inMethod: false, alive: true };
        seen.set(pid, info);
      }
      Object.assign(info, { name: st.name, ppid: st.ppid, own: st.own, kids: st.kids, alive: true }); // a forked child execs into its tool
      if (pid !== methodRoot && under(pid, methodRoot)) {
        info.inMethod = true;
        info.hwm = Math.max(info.hwm, (statusKiB(pid, 'VmHWM') ?? 0) * 1024);
      }
    }
    first = false;
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop(): Sampled {
      clearInterval(timer);
      sample();
      const cpu = new Map<number, number>();
      for (const [pid, info] of seen) if (pid !== self) cpu.set(pid, info.own - info.own0);
      // The unsampled tails of exited processes, from their nearest living ancestor's children-time.
      const reaperOf = (pid: number): number | undefined => {
        for (let p = seen.get(pid)?.ppid, depth = 0; p !== undefined && depth < 32; p = seen.get(p)?.ppid, depth++) {
          if (p === self || seen.get(p)?.alive) return p;
        }
        return undefined;
      };
      const exitedBelow = new Map<number, number[]>();
      for (const [pid, info] of seen) {
        if (info.alive || pid === self) continue;
        const reaper = reaperOf(pid);
        if (reaper !== undefined) exitedBelow.set(reaper, [...(exitedBelow.get(reaper) ?? []), pid]);
      }
      for (const [reaper, pids] of exitedBelow) {
        const r = seen.get(reaper)!;
        const sampled = pids.reduce((a, p) => a + cpu.get(p)!, 0);
        const tail = r.kids - r.kids0 - sampled;
        if (tail <= 0) continue;
        for (const p of pids) cpu.set(p, cpu.get(p)! + (sampled > 0 ? (tail * cpu.get(p)!) / sampled : tail / pids.length));
      }
      const peaks: Record<string, number> = {};
      const byName: Record<string, number> = {};
      for (const [pid, info] of seen) {
        if (info.inMethod) peaks[info.name] = Math.max(peaks[info.name] ?? 0, info.hwm);
        if (pid !== self) byName[info.name] = (byName[info.name] ?? 0) + cpu.get(pid)!;
      }
      return { peaks, cpu: byName };
    },
  };
}

// ---------------------------------------------------------------- measurements

interface Measurement {
  method: 'floor' | 'gzip' | 'opsflow';
  seconds: number;
  /** Bytes pg_dump wrote (its own format: custom for floor/opsflow, plain for gzip). */
  dumpBytes: number;
  /** Bytes stored (S3 object), 0 for the floor. */
  outputBytes: number;
  /** Peak RSS by process name, sampled. */
  toolPeaks: Record<string, number>;
  /** CPU seconds by process name during the run (see sampleProcesses). */
  cpu: Record<string, number>;
}

function waitExit(child: ChildProcess, what: string, stderr: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${what} failed (${code ?? signal}): ${stderr().slice(-2000)}`)),
    );
  });
}

async function runFloor(pgBin: string, url: string): Promise<Omit<Measurement, 'dumpBytes'>> {
  const devNull = openSync('/dev/null', 'w');
  let err = '';
  const started = performance.now();
  const child = spawn(`${pgBin}/pg_dump`, ['--format=custom', '--compress=0', '--no-password'], {
    env: { ...process.env, ...libpqEnv(url) },
    stdio: ['ignore', devNull, 'pipe'],
    detached: true, // its own process group, so an interrupted bench can end it (see cleanup)
  });
  activeTool = child;
  // The root is this script: pg_dump is the method's only process.
  const sampler = sampleProcesses(process.pid);
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  try {
    await waitExit(child, 'pg_dump', () => err);
  } finally {
    closeSync(devNull);
  }
  const seconds = (performance.now() - started) / 1000;
  const { peaks, cpu } = sampler.stop();
  return { method: 'floor', seconds, outputBytes: 0, toolPeaks: { pg_dump: peaks.pg_dump ?? 0 }, cpu };
}

async function runGzipPipeline(bed: Bed, aws: string, s3: S3Client, url: string, key: string): Promise<Measurement> {
  // Exactly the runbooks' shape; pipefail so a failed pg_dump fails the run.
  const script = 'set -o pipefail; "$PG_BIN/pg_dump" --no-password | gzip | "$AWS" s3 cp - "s3://$BUCKET/$KEY" --endpoint-url "$ENDPOINT" --only-show-errors';
  let err = '';
  const started = performance.now();
  const child = spawn('bash', ['-c', script], {
    env: {
      ...process.env,
      ...libpqEnv(url),
      PG_BIN: bed.env.OPSFLOW_PG_BIN!,
      AWS: aws,
      BUCKET: bed.s3.bucket,
      KEY: key,
      ENDPOINT: bed.s3.endpoint,
      AWS_ACCESS_KEY_ID: bed.s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: bed.s3.secretAccessKey,
      AWS_DEFAULT_REGION: 'us-east-1',
      AWS_REGION: 'us-east-1',
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, so an interrupted bench can end the whole pipeline (see cleanup)
  });
  activeTool = child;
  const sampler = sampleProcesses(child.pid!);
  child.stdout!.on('data', (c: Buffer) => (err += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  await waitExit(child, 'pg_dump | gzip | aws s3 cp', () => err);
  const seconds = (performance.now() - started) / 1000;
  const { peaks, cpu } = sampler.stop();
  delete peaks.bash; // the pipeline's subshells before they exec

  const head = await s3.send(new HeadObjectCommand({ Bucket: bed.s3.bucket, Key: key }));
  const outputBytes = Number(head.ContentLength);
  // gzip's trailer holds the uncompressed size mod 2^32 (ISIZE): the plain dump's size, without counting in the pipe.
  const tail = await s3.send(new GetObjectCommand({ Bucket: bed.s3.bucket, Key: key, Range: 'bytes=-4' }));
  const isize = Buffer.from(await tail.Body!.transformToByteArray()).readUInt32LE(0);
  return { method: 'gzip', seconds, dumpBytes: isize, outputBytes, toolPeaks: peaks, cpu };
}

/** Resolves ISIZE's 2^32 wrap for dumps over 4 GiB, using the custom dump's size as the estimate. */
function unwrapIsize(isize: number, estimate: number): number {
  const k = Math.max(0, Math.round((estimate - isize) / 2 ** 32));
  return isize + k * 2 ** 32;
}

async function runOpsflow(worker: WorkerProcess, opsflow: Awaited<ReturnType<typeof client>>, system: string): Promise<Measurement & { activitySeconds: number; storedBytes: number }> {
  const sampler = sampleProcesses(worker.child.pid!);
  const started = performance.now();
  const run = await opsflow.startBackup({ system });
  const result = await run.result();
  const seconds = (performance.now() - started) / 1000;
  const { peaks: toolPeaks, cpu } = sampler.stop();
  const pgc = (result.manifest && findComponent(result.manifest, 'postgres')) as PostgresComponent | undefined;
  if (!pgc) throw new Error(`backup returned no postgres component: ${JSON.stringify(result)}`);
  return {
    method: 'opsflow',
    seconds,
    dumpBytes: pgc.rawBytes,
    outputBytes: pgc.storedBytes,
    storedBytes: pgc.storedBytes,
    toolPeaks,
    cpu,
    activitySeconds: (Date.parse(pgc.completedAt) - Date.parse(pgc.startedAt)) / 1000,
  };
}

/** The run with the median wall time; tool peaks are the maximum over all runs. */
function median<T extends { seconds: number; toolPeaks: Record<string, number> }>(xs: T[]): T {
  const sorted = [...xs].sort((a, b) => a.seconds - b.seconds);
  const toolPeaks: Record<string, number> = {};
  for (const x of xs) for (const [name, bytes] of Object.entries(x.toolPeaks)) toolPeaks[name] = Math.max(toolPeaks[name] ?? 0, bytes);
  return { ...sorted[Math.floor((sorted.length - 1) / 2)]!, toolPeaks };
}

// ---------------------------------------------------------------- one size

interface SizeResult {
  targetMiB: number;
  databaseBytes: number;
  rows: Record<string, number>;
  loadSeconds: number;
  floor: Measurement;
  gzip: Measurement;
  opsflow: Measurement & { activitySeconds: number };
  worker: { idleRssBytes: number; idleHwmBytes: number; peakRssBytes: number };
  ratios: { throughputVsGzip: number; timeVsFloor: number; outputVsGzip: number };
}

async function benchSize(bed: Bed, aws: string, s3: S3Client, bundle: string, targetMiB: number): Promise<SizeResult> {
  const db = `bench_${targetMiB}`;
  const system = `bench-${targetMiB}`;
  const url = pgUrl(db);
  log(`${targetMiB} MiB: generating ${db}`);
  const load = await createBenchDatabase(bed.env.BED_PG_SUPERUSER_URL!, db, targetMiB * MiB, log);
  log(`${targetMiB} MiB: ${db} is ${(load.databaseBytes / MiB).toFixed(0)} MiB (pg_database_size), loaded in ${load.seconds.toFixed(0)} s`);

  // A fresh worker per size, so its peak RSS belongs to this size.
  const setup = testSetup(`bench-${targetMiB}`, { [system]: db });
  const worker = await startWorker(setup, { OPSFLOW_WORKFLOW_BUNDLE: bundle });
  currentWorker = worker;
  const opsflow = await client(setup);
  try {
    const pid = worker.child.pid!;
    const idleRssBytes = (statusKiB(pid, 'VmRSS') ?? 0) * 1024;
    const idleHwmBytes = (statusKiB(pid, 'VmHWM') ?? 0) * 1024;
    log(`${targetMiB} MiB: worker pid ${pid} ready, RSS ${(idleRssBytes / MiB).toFixed(0)} MiB (peak so far ${(idleHwmBytes / MiB).toFixed(0)} MiB)`);

    const floors: Omit<Measurement, 'dumpBytes'>[] = [];
    const gzips: Measurement[] = [];
    const opsflows: Awaited<ReturnType<typeof runOpsflow>>[] = [];
    for (let r = 1; r <= RUNS; r++) {
      const tag = RUNS > 1 ? ` run ${r}/${RUNS}` : '';
      const f = await runFloor(bed.env.OPSFLOW_PG_BIN!, url);
      floors.push(f);
      log(`${targetMiB} MiB${tag}: floor   ${f.seconds.toFixed(2)} s`);
      const g = await runGzipPipeline(bed, aws, s3, url, `bench/gzip/${db}-${r}.sql.gz`);
      gzips.push(g);
      log(`${targetMiB} MiB${tag}: gzip    ${g.seconds.toFixed(2)} s, ${g.outputBytes} bytes`);
      const o = await runOpsflow(worker, opsflow, system);
      opsflows.push(o);
      log(`${targetMiB} MiB${tag}: opsflow ${o.seconds.toFixed(2)} s (dump activity ${o.activitySeconds.toFixed(2)} s), ${o.outputBytes} bytes`);
    }
    const peakRssBytes = (statusKiB(pid, 'VmHWM') ?? 0) * 1024;

    const o = median(opsflows);
    const f = median(floors);
    const g = median(gzips);
    // The floor writes the same custom-format, uncompressed archive opsflow's pg_dump does.
    const floor: Measurement = { ...f, dumpBytes: o.dumpBytes };
    const gzip: Measurement = { ...g, dumpBytes: unwrapIsize(g.dumpBytes, o.dumpBytes) };
    return {
      targetMiB,
      databaseBytes: load.databaseBytes,
      rows: load.rows,
      loadSeconds: load.seconds,
      floor,
      gzip,
      opsflow: o,
      worker: { idleRssBytes, idleHwmBytes, peakRssBytes },
      ratios: {
        throughputVsGzip: gzip.seconds / o.seconds, // same database: throughput ratio = inverse time ratio
        timeVsFloor: o.seconds / floor.seconds,
        outputVsGzip: o.outputBytes / gzip.outputBytes,
      },
    };
  } finally {
    await opsflow.close().catch(() => undefined);
    await worker.stop().catch(() => undefined);
    currentWorker = undefined;
    await dropBenchDatabase(bed.env.BED_PG_SUPERUSER_URL!, db).catch(() => undefined);
  }
}

// ---------------------------------------------------------------- report

const mib = (b: number) => (b / MiB).toFixed(b < 10 * MiB ? 1 : 0);
const pad = (s: string, n: number) => s.padEnd(n);
const lpad = (s: string, n: number) => s.padStart(n);
const peaksText = (p: Record<string, number>) =>
  Object.entries(p)
    .sort((a, b) => b[1] - a[1])
    .map(([name, b]) => `${name} ${mib(b)}`)
    .join(', ') || '-';

/** The worker is the only node process under this script besides itself. */
const processLabel = (name: string) => (name === 'node' ? 'worker' : name === 'postgres' ? 'postgres(server)' : name);

function cpuText(m: Measurement): string {
  const entries = Object.entries(m.cpu).filter(([, s]) => s >= 0.05).sort((a, b) => b[1] - a[1]);
  const total = Object.values(m.cpu).reduce((a, b) => a + b, 0);
  return `${entries.map(([n, sec]) => `${processLabel(n)} ${sec.toFixed(1)}`).join(', ')}; total ${total.toFixed(1)} s over ${m.seconds.toFixed(1)} s wall = ${(total / m.seconds).toFixed(2)} cores busy`;
}

function report(results: SizeResult[]): string {
  const out: string[] = [];
  const cols = ['method', 'wall s', 'DB MiB/s', 'dump MiB/s', 'dump bytes', 'output bytes', 'dump/out', 'peak RSS MiB'];
  const widths = [40, 8, 9, 11, 14, 14, 9, 0];
  const row = (cells: string[]) => cells.map((c, i) => (i === 0 || i === cells.length - 1 ? pad(c, widths[i]!) : lpad(c, widths[i]!))).join('  ').trimEnd();
  const names = { floor: 'floor    pg_dump -Fc -Z0 > /dev/null', gzip: 'gzip     pg_dump | gzip | aws s3 cp -', opsflow: 'opsflow  backup workflow (worker)' };

  out.push('', `PostgreSQL backup benchmark — ${new Date().toISOString()}, ${RUNS} run(s) per method${RUNS > 1 ? ' (median shown)' : ''}, MiB = 2^20 bytes`);
  for (const r of results) {
    const rows = Object.entries(r.rows).map(([t, n]) => `${t} ${n.toLocaleString('en-US')}`).join(', ');
    out.push('', `== ${r.targetMiB} MiB target: pg_database_size ${r.databaseBytes.toLocaleString('en-US')} bytes (${mib(r.databaseBytes)} MiB); rows: ${rows}`);
    out.push(row(cols));
    for (const m of [r.floor, r.gzip, r.opsflow]) {
      const rss = m.method === 'opsflow'
        ? `worker ${mib(r.worker.peakRssBytes)} (idle ${mib(r.worker.idleRssBytes)}); children: ${peaksText(m.toolPeaks)}`
        : peaksText(m.toolPeaks);
      out.push(row([
        names[m.method],
        m.seconds.toFixed(2),
        (r.databaseBytes / MiB / m.seconds).toFixed(1),
        (m.dumpBytes / MiB / m.seconds).toFixed(1),
        m.dumpBytes.toLocaleString('en-US'),
        m.outputBytes ? m.outputBytes.toLocaleString('en-US') : '-',
        m.outputBytes ? `${(m.dumpBytes / m.outputBytes).toFixed(2)}x` : '-',
        rss,
      ]));
    }
    out.push(`   CPU seconds used during each run, by process (cores busy = total / wall; the machine has ${availableParallelism()}):`);
    for (const m of [r.floor, r.gzip, r.opsflow]) out.push(`     ${pad(m.method, 8)} ${cpuText(m)}`);
    out.push(`   opsflow: dump-postgres activity ${r.opsflow.activitySeconds.toFixed(2)} s of the workflow's ${r.opsflow.seconds.toFixed(2)} s; floor dump bytes are opsflow's pg_dump -Fc -Z0 bytes (same format); gzip dump bytes are the plain dump (gzip ISIZE)`);
  }

  const header = ['ratio', ...results.map((r) => `${r.targetMiB} MiB`), 'target', 'ok'];
  const w = [34, ...results.map(() => 10), 8, 4];
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? pad(c, w[i]!) : lpad(c, w[i]!))).join('  ');
  const checks: { name: string; values: number[]; fmt: (v: number) => string; target: string; ok: (v: number) => boolean }[] = [
    { name: 'opsflow / gzip throughput', values: results.map((r) => r.ratios.throughputVsGzip), fmt: (v) => `${v.toFixed(2)}x`, target: `>= ${TARGETS.throughputVsGzip}x`, ok: (v) => v >= TARGETS.throughputVsGzip },
    { name: 'opsflow time / floor time', values: results.map((r) => r.ratios.timeVsFloor), fmt: (v) => v.toFixed(2), target: `<= ${TARGETS.timeVsFloor}`, ok: (v) => v <= TARGETS.timeVsFloor },
    { name: 'opsflow output / gzip output', values: results.map((r) => r.ratios.outputVsGzip), fmt: (v) => v.toFixed(3), target: `<= ${TARGETS.outputVsGzip}`, ok: (v) => v <= TARGETS.outputVsGzip },
    { name: 'worker peak RSS (MiB)', values: results.map((r) => r.worker.peakRssBytes / MiB), fmt: (v) => v.toFixed(0), target: `< ${TARGETS.workerRssMiB}`, ok: (v) => v < TARGETS.workerRssMiB },
  ];
  out.push('', line(header));
  for (const c of checks) out.push(line([c.name, ...c.values.map(c.fmt), c.target, c.values.every(c.ok) ? 'yes' : 'NO']));
  return out.join('\n');
}

function summary(results: SizeResult[]) {
  const m = (x: Measurement, db: number) => ({
    seconds: +x.seconds.toFixed(3),
    dbMiBps: +(db / MiB / x.seconds).toFixed(2),
    dumpMiBps: +(x.dumpBytes / MiB / x.seconds).toFixed(2),
    dumpBytes: x.dumpBytes,
    outputBytes: x.outputBytes,
    peakRssBytes: x.toolPeaks,
    cpuSeconds: Object.fromEntries(Object.entries(x.cpu).filter(([, v]) => v >= 0.01).map(([k, v]) => [processLabel(k), +v.toFixed(2)])),
  });
  const sizes = results.map((r) => ({
    targetMiB: r.targetMiB,
    databaseBytes: r.databaseBytes,
    floor: m(r.floor, r.databaseBytes),
    gzip: m(r.gzip, r.databaseBytes),
    opsflow: { ...m(r.opsflow, r.databaseBytes), activitySeconds: +r.opsflow.activitySeconds.toFixed(3), workerPeakRssBytes: r.worker.peakRssBytes, workerIdleRssBytes: r.worker.idleRssBytes },
    ratios: { throughputVsGzip: +r.ratios.throughputVsGzip.toFixed(3), timeVsFloor: +r.ratios.timeVsFloor.toFixed(3), outputVsGzip: +r.ratios.outputVsGzip.toFixed(4) },
  }));
  const pass = results.every(
    (r) =>
      r.ratios.throughputVsGzip >= TARGETS.throughputVsGzip &&
      r.ratios.timeVsFloor <= TARGETS.timeVsFloor &&
      r.ratios.outputVsGzip <= TARGETS.outputVsGzip &&
      r.worker.peakRssBytes / MiB < TARGETS.workerRssMiB,
  );
  return { bench: 'backup', runs: RUNS, targets: TARGETS, pass, sizes };
}

// ---------------------------------------------------------------- main

const aws = ensureAwsCli();
const dir = mkdtempSync(join(tmpdir(), 'opsflow-bench-'));
let bed: Bed | undefined;
let currentWorker: WorkerProcess | undefined;
/** The floor's pg_dump or the gzip pipeline's shell, each leading a process group of its own. */
let activeTool: ChildProcess | undefined;
let cleaning: Promise<void> | undefined;
const cleanup = () =>
  (cleaning ??= (async () => {
    if (activeTool?.pid && activeTool.exitCode === null && activeTool.signalCode === null) {
      try {
        process.kill(-activeTool.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await currentWorker?.stop().catch(() => undefined);
    await bed?.stop().catch(() => undefined);
    if (!flags.keep) rmSync(dir, { recursive: true, force: true });
    else log(`kept ${dir}`);
  })());
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping the bed`);
    void cleanup().then(() => process.exit(130));
  });
}

try {
  log(`starting the bed in ${dir}`);
  bed = await startBed({ dir });
  Object.assign(process.env, bed.env, { OPSFLOW_TEST_DIR: dir });
  const bundle = await writeWorkflowBundle(join(dir, 'workflow-bundle.js'));
  log(`bed and workflow bundle ready; sizes ${SIZES_MIB.join(', ')} MiB, ${RUNS} run(s) each`);
  const s3 = new S3Client({
    region: 'us-east-1',
    endpoint: bed.s3.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: bed.s3.accessKeyId, secretAccessKey: bed.s3.secretAccessKey },
  });

  const results: SizeResult[] = [];
  for (const size of SIZES_MIB) results.push(await benchSize(bed, aws, s3, bundle, size));
  s3.destroy();

  const s = summary(results);
  process.stdout.write(`${report(results)}\n\n${JSON.stringify(s)}\n`);
  await cleanup();
  process.exit(flags.check && !s.pass ? 1 : 0);
} catch (err) {
  if (!cleaning) log(`failed: ${(err as Error).stack ?? err}`); // else interrupted, and this is the killed tool's error
  await cleanup();
  process.exit(2);
}
