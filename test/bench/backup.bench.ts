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
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { libpqEnv } from '../../src/adapters/postgres.ts';
import { testSetup, pgUrl } from '../support/bed.ts';
import { createBenchDatabase, dropBenchDatabase } from './data.ts';
import { componentRawBytes, componentStoredBytes, findComponent, type PostgresComponent } from '../../src/domain/manifest.ts';
import {
  BENCH_OPTIONS, MiB, benchSettings, checkTable, cpuSummary, cpuText, formatTable, log, median, mib, peaksText, runBench, startBenchWorker, statusKiB, timeShell, timeWorkflow,
  type BenchContext, type BenchWorker, type Timed,
} from './common.ts';

const { values: flags } = parseArgs({ options: { ...BENCH_OPTIONS, sizes: { type: 'string', default: '1024,256' } } });
const { sizes: SIZES_MIB, runs: RUNS } = benchSettings(flags, import.meta.url);

const TARGETS = { throughputVsGzip: 2, timeVsFloor: 1.3, outputVsGzip: 1, workerRssMiB: 300 };

// ---------------------------------------------------------------- measurements

interface Measurement extends Timed {
  method: 'floor' | 'gzip' | 'opsflow';
  /** Bytes pg_dump wrote (its own format: custom for floor/opsflow, plain for gzip). */
  dumpBytes: number;
  /** Bytes stored (S3 object), 0 for the floor. */
  outputBytes: number;
}

function pgEnv(ctx: BenchContext, url: string): Record<string, string> {
  return { ...libpqEnv(url), PG_BIN: ctx.bed.env.OPSFLOW_PG_BIN! };
}

async function runFloor(ctx: BenchContext, url: string): Promise<Omit<Measurement, 'dumpBytes'>> {
  const t = await timeShell('"$PG_BIN/pg_dump" --format=custom --compress=0 --no-password > /dev/null', pgEnv(ctx, url));
  return { ...t, method: 'floor', outputBytes: 0 };
}

async function runGzipPipeline(ctx: BenchContext, url: string, key: string): Promise<Measurement> {
  // Exactly the runbooks' shape; pipefail so a failed pg_dump fails the run.
  const t = await timeShell('"$PG_BIN/pg_dump" --no-password | gzip | "$AWS" s3 cp - "$DEST" --only-show-errors', { ...pgEnv(ctx, url), ...ctx.awsEnv, DEST: ctx.s3Url(key) });
  const outputBytes = await ctx.objectSize(key);
  // gzip's trailer holds the uncompressed size mod 2^32 (ISIZE): the plain dump's size, without counting in the pipe.
  const tail = await ctx.s3.send(new GetObjectCommand({ Bucket: ctx.bed.s3.bucket, Key: key, Range: 'bytes=-4' }));
  const isize = Buffer.from(await tail.Body!.transformToByteArray()).readUInt32LE(0);
  return { ...t, method: 'gzip', dumpBytes: isize, outputBytes };
}

/** Resolves ISIZE's 2^32 wrap for dumps over 4 GiB, using the custom dump's size as the estimate. */
function unwrapIsize(isize: number, estimate: number): number {
  const k = Math.max(0, Math.round((estimate - isize) / 2 ** 32));
  return isize + k * 2 ** 32;
}

async function runOpsflow(w: BenchWorker, system: string): Promise<Measurement & { activitySeconds: number; workerPeak: number }> {
  const t = await timeWorkflow(w, (opsflow) => opsflow.startBackup({ system }));
  const pgc = (t.result.manifest && findComponent(t.result.manifest, 'postgres')) as PostgresComponent | undefined;
  if (!pgc) throw new Error(`backup returned no postgres component: ${JSON.stringify(t.result)}`);
  return {
    ...t,
    method: 'opsflow',
    dumpBytes: componentRawBytes(pgc),
    outputBytes: componentStoredBytes(pgc),
    activitySeconds: (Date.parse(pgc.completedAt) - Date.parse(pgc.startedAt)) / 1000,
  };
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
  worker: { idleRssBytes: number; peakRssBytes: number };
  ratios: { throughputVsGzip: number; timeVsFloor: number; outputVsGzip: number };
}

async function benchSize(ctx: BenchContext, targetMiB: number): Promise<SizeResult> {
  const db = `bench_${targetMiB}`;
  const system = `bench-${targetMiB}`;
  const url = pgUrl(db);
  log(`${targetMiB} MiB: generating ${db}`);
  const load = await createBenchDatabase(ctx.bed.env.BED_PG_SUPERUSER_URL!, db, targetMiB * MiB, log);
  log(`${targetMiB} MiB: ${db} is ${(load.databaseBytes / MiB).toFixed(0)} MiB (pg_database_size), loaded in ${load.seconds.toFixed(0)} s`);

  // A fresh worker per size.
  const w = await startBenchWorker(testSetup(`bench-${targetMiB}`, { [system]: db }));
  try {
    const idleRssBytes = (statusKiB(w.worker.child.pid!, 'VmRSS') ?? 0) * 1024;
    const floors: Omit<Measurement, 'dumpBytes'>[] = [];
    const gzips: Measurement[] = [];
    const opsflows: Awaited<ReturnType<typeof runOpsflow>>[] = [];
    for (let r = 1; r <= RUNS; r++) {
      const tag = RUNS > 1 ? ` run ${r}/${RUNS}` : '';
      const f = await runFloor(ctx, url);
      floors.push(f);
      log(`${targetMiB} MiB${tag}: floor   ${f.seconds.toFixed(2)} s`);
      const g = await runGzipPipeline(ctx, url, `bench/gzip/${db}-${r}.sql.gz`);
      gzips.push(g);
      log(`${targetMiB} MiB${tag}: gzip    ${g.seconds.toFixed(2)} s, ${g.outputBytes} bytes`);
      const o = await runOpsflow(w, system);
      opsflows.push(o);
      log(`${targetMiB} MiB${tag}: opsflow ${o.seconds.toFixed(2)} s (dump activity ${o.activitySeconds.toFixed(2)} s), ${o.outputBytes} bytes, worker peak RSS ${(o.workerPeak / MiB).toFixed(0)} MiB`);
    }

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
      worker: { idleRssBytes, peakRssBytes: o.workerPeak },
      ratios: {
        throughputVsGzip: gzip.seconds / o.seconds, // same database: throughput ratio = inverse time ratio
        timeVsFloor: o.seconds / floor.seconds,
        outputVsGzip: o.outputBytes / gzip.outputBytes,
      },
    };
  } finally {
    await w.close();
    await dropBenchDatabase(ctx.bed.env.BED_PG_SUPERUSER_URL!, db).catch(() => undefined);
  }
}

// ---------------------------------------------------------------- report

function report(results: SizeResult[]): { text: string; pass: boolean } {
  const out: string[] = [];
  const cols = ['method', 'wall s', 'DB MiB/s', 'dump MiB/s', 'dump bytes', 'output bytes', 'dump/out', 'peak RSS MiB'];
  const names = { floor: 'floor    pg_dump -Fc -Z0 > /dev/null', gzip: 'gzip     pg_dump | gzip | aws s3 cp -', opsflow: 'opsflow  backup workflow (worker)' };

  out.push('', `PostgreSQL backup benchmark — ${new Date().toISOString()}, ${RUNS} run(s) per method${RUNS > 1 ? ' (median shown)' : ''}, MiB = 2^20 bytes`);
  for (const r of results) {
    const rows = Object.entries(r.rows).map(([t, n]) => `${t} ${n.toLocaleString('en-US')}`).join(', ');
    out.push('', `== ${r.targetMiB} MiB target: pg_database_size ${r.databaseBytes.toLocaleString('en-US')} bytes (${mib(r.databaseBytes)} MiB); rows: ${rows}`);
    out.push(formatTable([cols, ...[r.floor, r.gzip, r.opsflow].map((m) => [
      names[m.method],
      m.seconds.toFixed(2),
      (r.databaseBytes / MiB / m.seconds).toFixed(1),
      (m.dumpBytes / MiB / m.seconds).toFixed(1),
      m.dumpBytes.toLocaleString('en-US'),
      m.outputBytes ? m.outputBytes.toLocaleString('en-US') : '-',
      m.outputBytes ? `${(m.dumpBytes / m.outputBytes).toFixed(2)}x` : '-',
      m.method === 'opsflow' ? `worker ${mib(r.worker.peakRssBytes)} (idle ${mib(r.worker.idleRssBytes)}); children: ${peaksText(m.peaks)}` : peaksText(m.peaks),
    ])]));
    out.push(`   CPU seconds used during each run, by process (cores busy = total / wall; the machine has ${availableParallelism()}):`);
    for (const m of [r.floor, r.gzip, r.opsflow]) out.push(`     ${m.method.padEnd(8)} ${cpuText(m)}`);
    out.push(`   opsflow: dump-postgres activity ${r.opsflow.activitySeconds.toFixed(2)} s of the workflow's ${r.opsflow.seconds.toFixed(2)} s; floor dump bytes are opsflow's pg_dump -Fc -Z0 bytes (same format); gzip dump bytes are the plain dump (gzip ISIZE)`);
  }

  const checks = checkTable(results.map((r) => `${r.targetMiB} MiB`), [
    { name: 'opsflow / gzip throughput', values: results.map((r) => r.ratios.throughputVsGzip), fmt: (v) => `${v.toFixed(2)}x`, target: `>= ${TARGETS.throughputVsGzip}x`, ok: (v) => v >= TARGETS.throughputVsGzip },
    { name: 'opsflow time / floor time', values: results.map((r) => r.ratios.timeVsFloor), fmt: (v) => v.toFixed(2), target: `<= ${TARGETS.timeVsFloor}`, ok: (v) => v <= TARGETS.timeVsFloor },
    { name: 'opsflow output / gzip output', values: results.map((r) => r.ratios.outputVsGzip), fmt: (v) => v.toFixed(3), target: `<= ${TARGETS.outputVsGzip}`, ok: (v) => v <= TARGETS.outputVsGzip },
    { name: 'worker peak RSS (MiB)', values: results.map((r) => r.worker.peakRssBytes / MiB), fmt: (v) => v.toFixed(0), target: `< ${TARGETS.workerRssMiB}`, ok: (v) => v < TARGETS.workerRssMiB },
  ]);
  out.push('', checks.text);
  return { text: out.join('\n'), pass: checks.pass };
}

function summary(results: SizeResult[], pass: boolean) {
  const m = (x: Measurement, db: number) => ({
    seconds: +x.seconds.toFixed(3),
    dbMiBps: +(db / MiB / x.seconds).toFixed(2),
    dumpMiBps: +(x.dumpBytes / MiB / x.seconds).toFixed(2),
    dumpBytes: x.dumpBytes,
    outputBytes: x.outputBytes,
    peakRssBytes: x.peaks,
    cpuSeconds: cpuSummary(x),
  });
  const sizes = results.map((r) => ({
    targetMiB: r.targetMiB,
    databaseBytes: r.databaseBytes,
    floor: m(r.floor, r.databaseBytes),
    gzip: m(r.gzip, r.databaseBytes),
    opsflow: { ...m(r.opsflow, r.databaseBytes), activitySeconds: +r.opsflow.activitySeconds.toFixed(3), workerPeakRssBytes: r.worker.peakRssBytes, workerIdleRssBytes: r.worker.idleRssBytes },
    ratios: { throughputVsGzip: +r.ratios.throughputVsGzip.toFixed(3), timeVsFloor: +r.ratios.timeVsFloor.toFixed(3), outputVsGzip: +r.ratios.outputVsGzip.toFixed(4) },
  }));
  return { bench: 'backup', runs: RUNS, targets: TARGETS, pass, sizes };
}

// ---------------------------------------------------------------- main

await runBench(flags, SIZES_MIB, benchSize, (results) => {
  const { text, pass } = report(results);
  return { text, summary: summary(results, pass) };
});
