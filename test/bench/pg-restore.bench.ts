/**
 * PostgreSQL restore benchmark (a script, not a test): `npm run bench:pg-restore [-- flags]`.
 *
 * Starts a local bed and, for each size, generates a database (data.ts),
 * backs it up once with the `backup` workflow (the set in S3) and once with
 * `pg_dump -Fc -f FILE` (a local file, pg_dump's default compression),
 * neither timed, then restores it into a fresh database, in the same run:
 *   pg_restore -j 2   createdb NEW && pg_restore -j 2 -d NEW FILE      (the plain tool's best case: a local file, 2 jobs)
 *   pg_restore -j 1   the same with one job (a stream allows no more: opsflow's pg_restore reads a pipe)
 *   opsflow           the `restore` workflow with `into: NEW` on a worker process:
 *                     S3 → SHA-256 → zstd -d → pg_restore, row counts checked against the manifest
 * and prints a table, the ratios, and a one-line JSON summary (the last line
 * of stdout). See test/bench/README.md.
 *
 * Flags: --sizes 256,1024 (MiB, approximate pg_database_size)  --runs 1 (median
 * of N per method)  --keep (keep the bed's directory)  --check (exit 1 if a target is missed).
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { libpqEnv } from '../../src/adapters/postgres.ts';
import { componentStoredBytes, findComponent, type PostgresComponent } from '../../src/domain/manifest.ts';
import { testSetup, pgUrl } from '../support/bed.ts';
import { createBenchDatabase, dropBenchDatabase } from './data.ts';
import {
  BENCH_OPTIONS, MiB, benchSettings, checkTable, cpuText, flatMemoryChecks, formatTable, log, measuredSummary, median, mib, rssText, runBench, startBenchWorker, stepsText, timeShell, timeWorkflow,
  type BenchContext, type Measured,
} from './common.ts';

const { values: flags } = parseArgs({ options: BENCH_OPTIONS });
const { sizes: SIZES_MIB, runs: RUNS } = benchSettings(flags, import.meta.url);
const TARGETS = { timeVsParallel: 1, workerRssGrowthMiB: 32 };
const METHODS = ['pg_restore -j 2', 'pg_restore -j 1', 'opsflow'] as const;
type Method = (typeof METHODS)[number];
const JOBS: Partial<Record<Method, number>> = { 'pg_restore -j 2': 2, 'pg_restore -j 1': 1 };

interface SizeResult {
  targetMiB: number;
  databaseBytes: number;
  /** The local file (pg_dump -Fc) and opsflow's stored object (pg_dump -Fc -Z0 | zstd -3). */
  dumpFileBytes: number;
  storedBytes: number;
  results: Record<Method, Measured>;
}

async function benchSize(ctx: BenchContext, targetMiB: number): Promise<SizeResult> {
  const admin = ctx.bed.env.BED_PG_SUPERUSER_URL!;
  const db = `bench_${targetMiB}`;
  const restored = `${db}_restored`;
  const system = `pg-${targetMiB}`;
  log(`${targetMiB} MiB: generating ${db}`);
  const load = await createBenchDatabase(admin, db, targetMiB * MiB, log);
  log(`${targetMiB} MiB: ${db} is ${mib(load.databaseBytes)} MiB (pg_database_size), loaded in ${load.seconds.toFixed(0)} s`);

  const w = await startBenchWorker(testSetup(system, { [system]: db }));
  try {
    const dumpFile = join(ctx.dir, `${db}.dump`);
    const env = { ...libpqEnv(pgUrl(db)), PG_BIN: ctx.bed.env.OPSFLOW_PG_BIN!, FILE: dumpFile, NEW: restored };
    const dumped = await timeShell('"$PG_BIN/pg_dump" -Fc --no-password -f "$FILE"', env);
    const dumpFileBytes = statSync(dumpFile).size;
    const backup = await (await w.opsflow.startBackup({ system })).result();
    const pgc = findComponent(backup.manifest!, 'postgres') as PostgresComponent;
    log(`${targetMiB} MiB: pg_dump -Fc file ${mib(dumpFileBytes)} MiB in ${dumped.seconds.toFixed(1)} s; opsflow set ${backup.backupId}, ${mib(componentStoredBytes(pgc))} MiB stored${pgc.dataParts ? ` (schema and ${pgc.dataParts.length} data parts)` : ""}`);

    const drop = () => dropBenchDatabase(admin, restored);
    const runs: Record<Method, Measured[]> = { 'pg_restore -j 2': [], 'pg_restore -j 1': [], opsflow: [] };
    for (let r = 1; r <= RUNS; r++) {
      for (const method of METHODS) {
        await drop();
        const m = method === 'opsflow'
          ? await timeWorkflow(w, (opsflow) => opsflow.startRestore({ system, backup: backup.backupId, into: restored }))
          : await timeShell(`"$PG_BIN/createdb" --no-password -T template0 "$NEW" && "$PG_BIN/pg_restore" -j ${JOBS[method]} --exit-on-error --no-password -d "$NEW" "$FILE"`, env);
        runs[method].push(m);
        log(`${targetMiB} MiB${RUNS > 1 ? ` run ${r}/${RUNS}` : ''}: ${method.padEnd(15)} ${m.seconds.toFixed(2)} s`);
      }
    }
    await drop();
    const results = Object.fromEntries(METHODS.map((method) => [method, median(runs[method])])) as Record<Method, Measured>;
    return { targetMiB, databaseBytes: load.databaseBytes, dumpFileBytes, storedBytes: componentStoredBytes(pgc), results };
  } finally {
    await w.close();
    await dropBenchDatabase(admin, db).catch(() => undefined);
  }
}

// ---------------------------------------------------------------- report

function report(results: SizeResult[]): { text: string; pass: boolean } {
  const out = ['', `PostgreSQL restore benchmark — ${new Date().toISOString()}, ${RUNS} run(s) per method${RUNS > 1 ? ' (median shown)' : ''}, MiB = 2^20 bytes`];
  const names: Record<Method, string> = {
    'pg_restore -j 2': 'pg_restore -j 2 -d NEW FILE (local)',
    'pg_restore -j 1': 'pg_restore -d NEW FILE (local, 1 job)',
    opsflow: 'opsflow restore --into NEW (worker)',
  };
  for (const r of results) {
    out.push('', `== ${r.targetMiB} MiB target: pg_database_size ${mib(r.databaseBytes)} MiB; pg_dump -Fc file ${mib(r.dumpFileBytes)} MiB; opsflow objects ${mib(r.storedBytes)} MiB`);
    const rows = [['method', 'wall s', 'DB MiB/s', 'peak RSS MiB']];
    for (const method of METHODS) {
      const m = r.results[method];
      rows.push([names[method], m.seconds.toFixed(2), (r.databaseBytes / MiB / m.seconds).toFixed(1), rssText(m)]);
    }
    out.push(formatTable(rows), '   CPU seconds by process, the server included (cores busy = total / wall):');
    for (const method of METHODS) out.push(`     ${method.padEnd(16)} ${cpuText(r.results[method])}`);
    out.push(`   opsflow steps (s): ${stepsText(r.results.opsflow)}`);
  }
  const ratio = (r: SizeResult, a: Method, b: Method) => r.results[a].seconds / r.results[b].seconds;
  const checks = checkTable(results.map((r) => `${r.targetMiB} MiB`), [
    { name: 'opsflow / pg_restore -j 2 time', values: results.map((r) => ratio(r, 'opsflow', 'pg_restore -j 2')), fmt: (v) => v.toFixed(2), target: `<= ${TARGETS.timeVsParallel}`, ok: (v) => v <= TARGETS.timeVsParallel },
    { name: 'opsflow / pg_restore -j 1 time', values: results.map((r) => ratio(r, 'opsflow', 'pg_restore -j 1')), fmt: (v) => v.toFixed(2) },
    ...flatMemoryChecks(SIZES_MIB, results.map((r) => r.results.opsflow.workerPeak!), TARGETS.workerRssGrowthMiB),
  ]);
  out.push('', checks.text);
  return { text: out.join('\n'), pass: checks.pass };
}

function summary(results: SizeResult[], pass: boolean) {
  const sizes = results.map(({ results: methods, ...r }) => ({
    ...r,
    methods: Object.fromEntries(Object.entries(methods).map(([method, m]) => [method, { ...measuredSummary(m), dbMiBps: +(r.databaseBytes / MiB / m.seconds).toFixed(2) }])),
  }));
  return { bench: 'pg-restore', runs: RUNS, targets: TARGETS, pass, sizes };
}

await runBench(flags, SIZES_MIB, benchSize, (results) => {
  const { text, pass } = report(results);
  return { text, summary: summary(results, pass) };
});
