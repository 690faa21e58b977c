/**
 * Files benchmark (a script, not a test): `npm run bench:files [-- flags]`.
 *
 * Starts a local bed and, for each size, writes a directory tree of about
 * that many MiB: thousands of files, small config-like text files, logs
 * (compress about 3-4x), incompressible uploads and a few large binary
 * checkpoints. Then times, on the same tree in the same run:
 *   backup   tar+gzip  tar czf - -C DIR . | aws s3 cp - s3://…    (the runbooks' pipeline)
 *            opsflow   the `backup` workflow on a worker process, for a system whose set is
 *                      { kind: files, path: DIR }: GNU tar → tree digest → zstd -T0 → SHA-256 → S3
 *   restore  tar+gzip  aws s3 cp s3://… - | tar xzf - -C NEW       (into a new, empty directory)
 *            opsflow   the `restore` workflow of that set, approved: extracted beside DIR,
 *                      checked against the manifest's tree digest, swapped in, the old tree removed
 * and prints a table, the ratios, and a one-line JSON summary (the last line
 * of stdout). See test/bench/README.md.
 *
 * Flags: --sizes 256,1024 (MiB of file contents)  --runs 1 (median of N per
 * method)  --keep (keep the bed's directory)  --check (exit 1 if a target is missed).
 */
import { rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { testSetup } from '../support/bed.ts';
import { findComponent, type FilesComponent } from '../../src/domain/manifest.ts';
import { writeTree, type Tree } from './fixtures.ts';
import {
  BENCH_OPTIONS, MiB, benchSettings, checkTable, cpuText, flatMemoryChecks, formatTable, log, measuredSummary, median, mib, rssText, runBench, startBenchWorker, stepsText, timeShell, timeWorkflow,
  type BenchContext, type BenchWorker, type Measured,
} from './common.ts';

const { values: flags } = parseArgs({ options: BENCH_OPTIONS });
const { sizes: SIZES_MIB, runs: RUNS } = benchSettings(flags, import.meta.url);
const TARGETS = { timeVsTar: 1, workerRssGrowthMiB: 32 };

// ---------------------------------------------------------------- the tree

/** Each kind's share of the bytes, file sizes (min-max), and whether it compresses. */
// ---------------------------------------------------------------- measurements

interface Measurement extends Measured {
  storedBytes: number;
}

/** Untimed, after each method: its output removed and dirty pages written back, so no method pays for another's writes. */
function settle(...paths: string[]): void {
  for (const path of paths) rmSync(path, { recursive: true, force: true });
  execFileSync('sync');
}

async function tarBackup(ctx: BenchContext, dir: string, key: string): Promise<Measurement> {
  const t = await timeShell('tar czf - -C "$DIR" . | "$AWS" s3 cp - "$DEST" --only-show-errors', { ...ctx.awsEnv, DIR: dir, DEST: ctx.s3Url(key) });
  return { ...t, storedBytes: await ctx.objectSize(key) };
}

async function tarRestore(ctx: BenchContext, key: string, into: string): Promise<Measurement> {
  const t = await timeShell('mkdir -p "$INTO" && "$AWS" s3 cp "$SRC" - --only-show-errors | tar xzf - -C "$INTO"', { ...ctx.awsEnv, INTO: into, SRC: ctx.s3Url(key) });
  settle(into);
  return { ...t, storedBytes: await ctx.objectSize(key) };
}

async function opsflowBackup(w: BenchWorker, system: string): Promise<Measurement & { backupId: string }> {
  const t = await timeWorkflow(w, (opsflow) => opsflow.startBackup({ system }));
  const files = t.result.manifest && (findComponent(t.result.manifest, 'tree') as FilesComponent | undefined);
  if (!files) throw new Error(`backup returned no files component: ${JSON.stringify(t.result)}`);
  settle();
  return { ...t, storedBytes: files.storedBytes, backupId: t.result.backupId };
}

async function opsflowRestore(w: BenchWorker, system: string, backupId: string, storedBytes: number): Promise<Measurement> {
  const t = await timeWorkflow(w, (opsflow) => opsflow.startRestore({ system, backup: backupId, approved: true }));
  settle();
  return { ...t, storedBytes };
}

// ---------------------------------------------------------------- one size

interface SizeResult {
  targetMiB: number;
  tree: Tree;
  backup: { tar: Measurement; opsflow: Measurement };
  restore: { tar: Measurement; opsflow: Measurement };
}

async function benchSize(ctx: BenchContext, targetMiB: number): Promise<SizeResult> {
  const dir = join(ctx.dir, `tree-${targetMiB}`, 'data');
  log(`${targetMiB} MiB: writing the tree in ${dir}`);
  const started = Date.now();
  const tree = writeTree(dir, targetMiB * MiB);
  log(`${targetMiB} MiB: ${tree.files.toLocaleString('en-US')} files, ${mib(tree.bytes)} MiB (${((100 * tree.textBytes) / tree.bytes).toFixed(0)}% text), written in ${((Date.now() - started) / 1000).toFixed(0)} s`);

  const system = `files-${targetMiB}`;
  const w = await startBenchWorker(testSetup(system, { [system]: 'postgres' }, { [system]: { backup: { components: [{ kind: 'files', name: 'tree', path: dir }] } } }));
  const runs = { tarBackup: [] as Measurement[], opsflowBackup: [] as Measurement[], tarRestore: [] as Measurement[], opsflowRestore: [] as Measurement[] };
  try {
    for (let r = 1; r <= RUNS; r++) {
      const tag = `${targetMiB} MiB${RUNS > 1 ? ` run ${r}/${RUNS}` : ''}`;
      const key = `bench/tar/${system}-${r}.tar.gz`;
      const tb = await tarBackup(ctx, dir, key);
      runs.tarBackup.push(tb);
      log(`${tag}: backup  tar+gzip ${tb.seconds.toFixed(2)} s, ${tb.storedBytes} bytes`);
      const ob = await opsflowBackup(w, system);
      runs.opsflowBackup.push(ob);
      log(`${tag}: backup  opsflow  ${ob.seconds.toFixed(2)} s, ${ob.storedBytes} bytes`);
      const tr = await tarRestore(ctx, key, join(ctx.dir, `tree-${targetMiB}`, 'restored'));
      runs.tarRestore.push(tr);
      log(`${tag}: restore tar+gzip ${tr.seconds.toFixed(2)} s`);
      const or = await opsflowRestore(w, system, ob.backupId, ob.storedBytes);
      runs.opsflowRestore.push(or);
      log(`${tag}: restore opsflow  ${or.seconds.toFixed(2)} s`);
    }
  } finally {
    await w.close();
    rmSync(join(ctx.dir, `tree-${targetMiB}`), { recursive: true, force: true });
  }
  return {
    targetMiB,
    tree,
    backup: { tar: median(runs.tarBackup), opsflow: median(runs.opsflowBackup) },
    restore: { tar: median(runs.tarRestore), opsflow: median(runs.opsflowRestore) },
  };
}

// ---------------------------------------------------------------- report

function report(results: SizeResult[]): { text: string; pass: boolean } {
  const out = ['', `Files benchmark — ${new Date().toISOString()}, ${RUNS} run(s) per method${RUNS > 1 ? ' (median shown)' : ''}, MiB = 2^20 bytes`];
  for (const r of results) {
    out.push('', `== ${r.targetMiB} MiB target: ${r.tree.files.toLocaleString('en-US')} files, ${r.tree.bytes.toLocaleString('en-US')} bytes (${((100 * r.tree.textBytes) / r.tree.bytes).toFixed(0)}% compressible text)`);
    const rows = [['method', 'wall s', 'MiB/s', 'stored bytes', 'raw/stored', 'peak RSS MiB']];
    const methods: [string, Measurement][] = [
      ['backup   tar czf - | aws s3 cp -', r.backup.tar],
      ['backup   opsflow backup workflow', r.backup.opsflow],
      ['restore  aws s3 cp - | tar xzf -', r.restore.tar],
      ['restore  opsflow restore workflow', r.restore.opsflow],
    ];
    for (const [name, m] of methods) rows.push([name, m.seconds.toFixed(2), (r.tree.bytes / MiB / m.seconds).toFixed(1), m.storedBytes.toLocaleString('en-US'), `${(r.tree.bytes / m.storedBytes).toFixed(2)}x`, rssText(m)]);
    out.push(formatTable(rows), '   CPU seconds by process (cores busy = total / wall):');
    for (const [name, m] of methods) out.push(`     ${name.padEnd(34)} ${cpuText(m)}`);
    out.push(`   opsflow steps (s): backup: ${stepsText(r.backup.opsflow)}; restore: ${stepsText(r.restore.opsflow)}`);
  }
  const columns = results.map((r) => `${r.targetMiB} MiB`);
  const checks = checkTable(columns, [
    { name: 'opsflow / tar+gzip backup time', values: results.map((r) => r.backup.opsflow.seconds / r.backup.tar.seconds), fmt: (v) => v.toFixed(2), target: `<= ${TARGETS.timeVsTar}`, ok: (v) => v <= TARGETS.timeVsTar },
    { name: 'opsflow / tar+gzip restore time', values: results.map((r) => r.restore.opsflow.seconds / r.restore.tar.seconds), fmt: (v) => v.toFixed(2), target: `<= ${TARGETS.timeVsTar}`, ok: (v) => v <= TARGETS.timeVsTar },
    { name: 'opsflow / tar+gzip stored bytes', values: results.map((r) => r.backup.opsflow.storedBytes / r.backup.tar.storedBytes), fmt: (v) => v.toFixed(3) },
    ...flatMemoryChecks(SIZES_MIB, results.map((r) => Math.max(r.backup.opsflow.workerPeak!, r.restore.opsflow.workerPeak!)), TARGETS.workerRssGrowthMiB),
  ]);
  out.push('', checks.text);
  return { text: out.join('\n'), pass: checks.pass };
}

function summary(results: SizeResult[], pass: boolean) {
  const m = (x: Measurement, bytes: number) => ({ ...measuredSummary(x), MiBps: +(bytes / MiB / x.seconds).toFixed(2), storedBytes: x.storedBytes });
  const sizes = results.map((r) => ({
    targetMiB: r.targetMiB,
    ...r.tree,
    backup: { tar: m(r.backup.tar, r.tree.bytes), opsflow: m(r.backup.opsflow, r.tree.bytes) },
    restore: { tar: m(r.restore.tar, r.tree.bytes), opsflow: m(r.restore.opsflow, r.tree.bytes) },
  }));
  return { bench: 'files', runs: RUNS, targets: TARGETS, pass, sizes };
}

// ---------------------------------------------------------------- main

await runBench(flags, SIZES_MIB, benchSize, (results) => {
  const { text, pass } = report(results);
  return { text, summary: summary(results, pass) };
});
