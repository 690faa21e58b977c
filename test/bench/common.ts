/**
 * What the benchmark scripts share: their common flags, a bed of their own
 * and its clean-up, the AWS CLI, timing a shell pipeline or a workflow run
 * with /proc sampling (peak RSS and CPU seconds by process), medians, and
 * the tables they print.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { S3Client, HeadObjectCommand } from '@aws-sdk/client-s3';
import { startBed, type Bed } from '../../deploy/bed/bed.ts';
import { build } from '../../workers/build.ts';
import type { OpsflowClient, StartedRun } from '../../src/client.ts';
import { client, startWorker, type TestSetup, type WorkerProcess } from '../support/bed.ts';

export const MiB = 2 ** 20;
const BENCH_START = Date.now();

export function log(line: string): void {
  process.stderr.write(`[bench ${((Date.now() - BENCH_START) / 1000).toFixed(0).padStart(4)}s] ${line}\n`);
}

// ---------------------------------------------------------------- flags

/** The flags every bed benchmark takes; spread into parseArgs's options (override `sizes` for its default). */
export const BENCH_OPTIONS = {
  sizes: { type: 'string', default: '256,1024' },
  runs: { type: 'string', default: '1' },
  keep: { type: 'boolean', default: false },
  check: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/** Prints the script's doc comment for --help; checks --sizes (MiB, >= `minMiB`) and --runs. */
export function benchSettings(flags: { help?: boolean; sizes: string; runs: string }, scriptUrl: string, minMiB = 8): { sizes: number[]; runs: number } {
  if (flags.help) {
    process.stdout.write(readFileSync(new URL(scriptUrl)).toString().split('*/')[0]!.replace(/^\/\*\*\n/, '').replace(/^ \* ?/gm, '') + '\n');
    process.exit(0);
  }
  const sizes = flags.sizes.split(',').map((s) => Number(s.trim()));
  if (!sizes.length || sizes.some((n) => !Number.isFinite(n) || n < minMiB)) throw new Error(`--sizes: MiB values >= ${minMiB}, comma-separated (got ${flags.sizes})`);
  const runs = Number(flags.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs: a positive integer (got ${flags.runs})`);
  return { sizes, runs };
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

// ---------------------------------------------------------------- /proc: peak RSS and CPU of process trees

export function statusKiB(pid: number, field: 'VmHWM' | 'VmRSS'): number | undefined {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined; // gone
  }
}

/** Resets a process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0), so the next peak is a run's own. */
export function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

export interface Sampled {
  /** Peak RSS (VmHWM) by process name, of `root` and the processes under it. */
  peaks: Record<string, number>;
  /** CPU seconds (user + system) used during the window by every process this script started (the bed's daemons, the worker, the tools), by name. */
  cpu: Record<string, number>;
}

/**
 * Samples /proc every `intervalMs` while a method runs: the peak RSS
 * (VmHWM, which only grows) of `root` and each process under it, and the
 * CPU time of every process under this script (so the bed's PostgreSQL
 * backend and MinIO count too, not only the tools).
 *
 * A process that exits is seen last up to `intervalMs` before its end. The
 * CPU it used after that is not lost: its reaper's children-time (cutime +
 * cstime) grows by the exited process's whole lifetime, so for each living
 * process the growth of its children-time, less what was sampled of the
 * exited processes below it, is the unsampled tail, shared among them in
 * proportion to what was sampled. A peak RSS reached in a tool's last moments
 * can still be missed; for tools that stream for seconds it is not reached then.
 */
export function sampleProcesses(root: number, intervalMs = 100) {
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
    const under = (pid: number, top: number): boolean => {
      for (let p = stats.get(pid)?.ppid, depth = 0; p && depth < 32; p = stats.get(p)?.ppid, depth++) if (p === top) return true;
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
      if (pid === root || under(pid, root)) {
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

// ---------------------------------------------------------------- timing a method

export interface Timed extends Sampled {
  seconds: number;
}

/** Timed steps run one after the other, as one: times and CPU added, peaks the highest. */
export function inSequence(steps: Timed[]): Timed {
  const peaks: Record<string, number> = {};
  const cpu: Record<string, number> = {};
  for (const step of steps) {
    for (const [name, bytes] of Object.entries(step.peaks)) peaks[name] = Math.max(peaks[name] ?? 0, bytes);
    for (const [name, s] of Object.entries(step.cpu)) cpu[name] = (cpu[name] ?? 0) + s;
  }
  return { seconds: steps.reduce((t, step) => t + step.seconds, 0), peaks, cpu };
}

/** Process groups of running shell methods, ended by the clean-up if the bench is interrupted. */
const activeTools = new Set<ChildProcess>();

/**
 * Runs `bash -o pipefail -c script` in a process group of its own and times
 * it, sampling its processes (bash itself, before its subshells exec, is
 * left out of the peaks). Rejects with its output if it fails.
 */
export async function timeShell(script: string, env: Record<string, string> = {}): Promise<Timed> {
  let output = '';
  const started = performance.now();
  const child = spawn('bash', ['-o', 'pipefail', '-c', script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  activeTools.add(child);
  const sampler = sampleProcesses(child.pid!);
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) => (code === 0 ? resolve() : reject(new Error(`${script} failed (${code ?? signal}): ${output.slice(-2000)}`))));
    });
  } finally {
    activeTools.delete(child);
  }
  const seconds = (performance.now() - started) / 1000;
  const { peaks, cpu } = sampler.stop();
  delete peaks.bash;
  return { seconds, peaks, cpu };
}

export interface BenchWorker {
  worker: WorkerProcess;
  opsflow: OpsflowClient;
  close(): Promise<void>;
}

const activeWorkers = new Set<WorkerProcess>();

/** A worker process (the build's `dist/workers/main.js` and workflow bundle) for `setup`, and a client on its task queue. */
export async function startBenchWorker(setup: TestSetup, env: Record<string, string> = {}): Promise<BenchWorker> {
  const worker = await startWorker(setup, env);
  activeWorkers.add(worker);
  const opsflow = await client(setup);
  log(`worker pid ${worker.child.pid} ready, RSS ${mib((statusKiB(worker.child.pid!, 'VmRSS') ?? 0) * 1024)} MiB`);
  return {
    worker,
    opsflow,
    async close() {
      await opsflow.close().catch(() => undefined);
      await worker.stop().catch(() => undefined);
      activeWorkers.delete(worker);
    },
  };
}

/** A method's numbers; an opsflow run's add the worker's. */
export interface Measured extends Timed {
  /** The worker's peak RSS during the run (its peak is reset at the start). */
  workerPeak?: number;
  /** Seconds per workflow step (from the run's status query). */
  steps?: Record<string, number>;
}

export interface TimedRun<R> extends Measured {
  result: R;
  workerPeak: number;
  steps: Record<string, number>;
}

/**
 * Times a workflow run from the client's start to its result, so Temporal's
 * scheduling counts: the worker's own peak RSS during the run (reset at the
 * start), its children's peaks (`peaks`, without the worker) and CPU.
 */
export async function timeWorkflow<R>(w: BenchWorker, start: (opsflow: OpsflowClient) => Promise<StartedRun<R>>): Promise<TimedRun<R>> {
  const pid = w.worker.child.pid!;
  resetPeak(pid);
  const sampler = sampleProcesses(pid);
  const started = performance.now();
  const run = await start(w.opsflow);
  const result = await run.result();
  const seconds = (performance.now() - started) / 1000;
  const { peaks, cpu } = sampler.stop();
  const workerPeak = (statusKiB(pid, 'VmHWM') ?? 0) * 1024;
  delete peaks.node;
  const status = await w.opsflow.status(run.workflowId);
  const steps = Object.fromEntries(status.steps.filter((s) => s.endedAt).map((s) => [s.name, (Date.parse(s.endedAt!) - Date.parse(s.startedAt)) / 1000]));
  return { seconds, peaks, cpu, result, workerPeak, steps };
}

/** The run with the median wall time; peaks (and `workerPeak`) are the maximum over all runs. */
export function median<T extends { seconds: number; peaks: Record<string, number>; workerPeak?: number }>(xs: T[]): T {
  const sorted = [...xs].sort((a, b) => a.seconds - b.seconds);
  const peaks: Record<string, number> = {};
  for (const x of xs) for (const [name, bytes] of Object.entries(x.peaks)) peaks[name] = Math.max(peaks[name] ?? 0, bytes);
  const m = { ...sorted[Math.floor((sorted.length - 1) / 2)]!, peaks };
  if (m.workerPeak !== undefined) m.workerPeak = Math.max(...xs.map((x) => x.workerPeak ?? 0));
  return m;
}

// ---------------------------------------------------------------- the bed

export interface BenchContext {
  bed: Bed;
  dir: string;
  s3: S3Client;
  aws: string;
  /** Environment for the AWS CLI against the bed's MinIO, without any profile of this machine. */
  awsEnv: Record<string, string>;
  /** s3://bucket/key of the bed's bucket. */
  s3Url(key: string): string;
  objectSize(key: string): Promise<number>;
}

/**
 * Runs a benchmark on a bed of its own (Temporal, PostgreSQL, Redis, MinIO in
 * a temporary directory, and the worker built as deployed): `benchSize` for
 * each size, then prints the report and, as the last line of stdout, the
 * JSON summary. Whatever happens, and on SIGINT/SIGTERM, running tools and
 * workers are ended and the bed is stopped. Exit code: 0, or 1 with --check
 * when `pass` is false, 2 on failure.
 */
export async function runBench<R>(
  flags: { keep: boolean; check: boolean },
  sizes: number[],
  benchSize: (ctx: BenchContext, sizeMiB: number) => Promise<R>,
  report: (results: R[]) => { text: string; summary: { pass: boolean } },
): Promise<never> {
  const aws = ensureAwsCli();
  const dir = mkdtempSync(join(tmpdir(), 'opsflow-bench-'));
  let bed: Bed | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      for (const tool of activeTools) {
        try {
          process.kill(-tool.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await Promise.all([...activeWorkers].map((w) => w.stop().catch(() => undefined)));
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
    const building = build();
    building.catch(() => undefined); // awaited once `bed` is set, so a failed build stops it too
    bed = await startBed({ dir });
    await building;
    Object.assign(process.env, bed.env, { OPSFLOW_TEST_DIR: dir });
    const { endpoint, bucket, accessKeyId, secretAccessKey } = bed.s3;
    const s3 = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } });
    const awsEnv = {
      AWS: aws,
      AWS_ENDPOINT_URL: endpoint,
      AWS_ACCESS_KEY_ID: accessKeyId,
      AWS_SECRET_ACCESS_KEY: secretAccessKey,
      AWS_DEFAULT_REGION: 'us-east-1',
      AWS_REGION: 'us-east-1',
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    };
    const objectSize = async (key: string) => Number((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).ContentLength);
    const ctx: BenchContext = { bed, dir, s3, aws, awsEnv, s3Url: (key) => `s3://${bucket}/${key}`, objectSize };
    log(`bed and workflow bundle ready; sizes ${sizes.join(', ')} MiB`);
    const results: R[] = [];
    for (const size of sizes) results.push(await benchSize(ctx, size));
    const { text, summary } = report(results);
    s3.destroy();
    process.stdout.write(`${text}\n\n${JSON.stringify(summary)}\n`);
    await cleanup();
    process.exit(flags.check && !summary.pass ? 1 : 0);
  } catch (err) {
    if (!cleaning) log(`failed: ${(err as Error).stack ?? err}`); // else interrupted, and this is the killed tool's error
    await cleanup();
    process.exit(2);
  }
}

// ---------------------------------------------------------------- report

export const mib = (b: number) => (b / MiB).toFixed(b < 10 * MiB ? 1 : 0);

/** Aligned columns: the first `left` and the last left-aligned (names, notes), the others right-aligned (numbers). */
export function formatTable(rows: string[][], left = 1): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const last = widths.length - 1;
  return rows.map((r) => r.map((cell, c) => (c === last ? cell : c < left ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ').trimEnd()).join('\n');
}

export const peaksText = (p: Record<string, number>) =>
  Object.entries(p)
    .sort((a, b) => b[1] - a[1])
    .map(([name, b]) => `${name} ${mib(b)}`)
    .join(', ') || '-';

/** Peak RSS of a method's processes; for opsflow the worker's, then its children's. */
export const rssText = (m: Measured) => (m.workerPeak === undefined ? peaksText(m.peaks) : `worker ${mib(m.workerPeak)}; children: ${peaksText(m.peaks)}`);

export const stepsText = (m: Measured) => Object.entries(m.steps ?? {}).map(([name, s]) => `${name} ${s.toFixed(2)}`).join(', ');

/** The worker is the only node process under this script besides itself. */
export const processLabel = (name: string) => (name === 'node' ? 'worker' : name === 'postgres' ? 'postgres(server)' : name);

/** CPU seconds by process, and how many cores were busy on average (total CPU / wall). */
export function cpuText(m: Timed): string {
  const entries = Object.entries(m.cpu).filter(([, s]) => s >= 0.05).sort((a, b) => b[1] - a[1]);
  const total = Object.values(m.cpu).reduce((a, b) => a + b, 0);
  return `${entries.map(([n, sec]) => `${processLabel(n)} ${sec.toFixed(1)}`).join(', ')}; total ${total.toFixed(1)} s over ${m.seconds.toFixed(1)} s wall = ${(total / m.seconds).toFixed(2)} cores busy`;
}

export const cpuSummary = (m: Timed) => Object.fromEntries(Object.entries(m.cpu).filter(([, v]) => v >= 0.01).map(([k, v]) => [processLabel(k), +v.toFixed(2)]));

/** A method's numbers for the JSON summary. */
export const measuredSummary = (m: Measured) => ({
  seconds: +m.seconds.toFixed(3),
  peakRssBytes: m.peaks,
  ...(m.workerPeak === undefined ? {} : { workerPeakRssBytes: m.workerPeak, steps: m.steps }),
  cpuSeconds: cpuSummary(m),
});

export interface Check {
  name: string;
  /** One value per column (size); undefined leaves a cell empty. */
  values: (number | undefined)[];
  fmt: (v: number) => string;
  /** Without a target the row is information only. */
  target?: string;
  ok?: (v: number) => boolean;
}

/** The ratios against their targets, one column per size; `pass` when every value meets its target. */
export function checkTable(columns: string[], checks: Check[]): { text: string; pass: boolean } {
  const oks = checks.map((c) => c.values.every((v) => v === undefined || !c.ok || c.ok(v)));
  const rows = [
    ['ratio', ...columns, 'target', 'ok'],
    ...checks.map((c, i) => [c.name, ...c.values.map((v) => (v === undefined ? '' : c.fmt(v))), c.target ?? '-', c.ok ? (oks[i] ? 'yes' : 'NO') : '']),
  ];
  return { text: formatTable(rows), pass: oks.every(Boolean) };
}

/** "Memory flat as data grows": the worker's peak RSS per size, and its growth from the smallest size to the largest. */
export function flatMemoryChecks(sizesMiB: number[], workerPeaks: number[], maxGrowthMiB: number): Check[] {
  const byMiB = workerPeaks.map((b) => b / MiB);
  const small = sizesMiB.indexOf(Math.min(...sizesMiB));
  const large = sizesMiB.indexOf(Math.max(...sizesMiB));
  return [
    { name: 'worker peak RSS (MiB)', values: byMiB, fmt: (v) => v.toFixed(0) },
    {
      name: 'worker peak RSS, largest size - smallest (MiB)',
      values: sizesMiB.map((_, i) => (i === large && large !== small ? byMiB[large]! - byMiB[small]! : undefined)),
      fmt: (v) => v.toFixed(0),
      target: `< ${maxGrowthMiB}`,
      ok: (v) => v < maxGrowthMiB,
    },
  ];
}
