/**
 * Redis backup benchmark (a script, not a test): `npm run bench:redis [-- flags]`.
 *
 * Starts a local bed and, for each size, a throwaway redis-server filled
 * with about that many MiB (INFO used_memory) of mixed data; then takes the
 * same snapshot, in the same run, with:
 *   redis-cli   redis-cli -p P --rdb FILE                         (the snapshot alone: the floor)
 *   + aws       redis-cli -p P --rdb FILE && aws s3 cp FILE s3://…  (the runbooks' way, the RDB stored as it is)
 *   + check     the same with redis-check-rdb FILE between (MAOS's backup.sh and its
 *               verify-backup.sh: the checks of opsflow + check, without compression)
 *   opsflow     the `backup` workflow on a worker process, for a system whose set is
 *               { kind: redis, mode: snapshot }: the RDB streamed through zstd to S3, the
 *               manifest's key count from the RDB's RESIZEDB record
 *   opsflow + check  the same with `deepCheck: true`: redis-check-rdb also reads the RDB
 *               as it streams (CRC and every value), like the runbook's check
 * once per transfer mode of the server: diskless (the RDB streamed from the
 * fork; Redis 7's default) and disk (BGSAVE to the server's disk, then the
 * file). Prints a table, the ratios, and a one-line JSON summary (the last
 * line of stdout). See test/bench/README.md.
 *
 * Flags: --sizes 200,800 (MiB of used_memory)  --runs 1 (median of N per
 * method)  --keep (keep the bed's directory)  --check (exit 1 if a target is missed).
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fillRedis } from './fixtures.ts';
import { connectRedis, startScratchRedis } from '../../src/adapters/redis.ts';
import { findComponent, type RedisComponent } from '../../src/domain/manifest.ts';
import { testSetup } from '../support/bed.ts';
import {
  BENCH_OPTIONS, MiB, benchSettings, checkTable, cpuText, flatMemoryChecks, formatTable, inSequence, log, measuredSummary, median, mib, rssText, runBench, startBenchWorker, stepsText, timeShell, timeWorkflow,
  type BenchContext, type BenchWorker, type Measured,
} from './common.ts';

const { values: flags } = parseArgs({ options: { ...BENCH_OPTIONS, sizes: { type: 'string', default: '200,800' } } });
const { sizes: SIZES_MIB, runs: RUNS } = benchSettings(flags, import.meta.url);
const TARGETS = { timeVsPlain: 1, workerRssGrowthMiB: 32 };
const TRANSFERS = ['diskless', 'disk'] as const;
type Transfer = (typeof TRANSFERS)[number];

// ---------------------------------------------------------------- data

// ---------------------------------------------------------------- measurements

interface Measurement extends Measured {
  /** Bytes of the RDB, and bytes stored in S3 (0 for the floor, which stores nothing). */
  rdbBytes: number;
  storedBytes: number;
}

/** The floor, the runbooks' check of its file and its upload: timed steps, summed into the plain methods. */
async function runPlain(ctx: BenchContext, port: number, file: string, key: string): Promise<{ floor: Measurement; plain: Measurement; checked: Measurement }> {
  const env = { ...ctx.awsEnv, PORT: String(port), FILE: file, DEST: ctx.s3Url(key) };
  const snap = await timeShell('redis-cli -p "$PORT" --rdb "$FILE" > /dev/null', env);
  const check = await timeShell('redis-check-rdb "$FILE" > /dev/null', env);
  const upload = await timeShell('"$AWS" s3 cp "$FILE" "$DEST" --only-show-errors', env);
  const sizes = { rdbBytes: statSync(file).size, storedBytes: await ctx.objectSize(key) };
  return {
    floor: { ...snap, rdbBytes: sizes.rdbBytes, storedBytes: 0 },
    plain: { ...inSequence([snap, upload]), ...sizes },
    checked: { ...inSequence([snap, check, upload]), ...sizes },
  };
}

async function runOpsflow(w: BenchWorker, system: string, keys: number, deepCheck: boolean): Promise<Measurement> {
  const t = await timeWorkflow(w, (opsflow) => opsflow.startBackup({ system }));
  const cache = t.result.manifest && (findComponent(t.result.manifest, 'cache') as RedisComponent | undefined);
  if (!cache) throw new Error(`backup returned no redis component: ${JSON.stringify(t.result)}`);
  if (cache.keys !== keys) throw new Error(`opsflow's snapshot holds ${cache.keys} keys, the server ${keys}`);
  if (cache.deepChecked !== deepCheck) throw new Error(`${system}: deepChecked ${cache.deepChecked}, expected ${deepCheck}`);
  return { ...t, rdbBytes: cache.rawBytes, storedBytes: cache.storedBytes };
}

// ---------------------------------------------------------------- one size

const METHODS = ['redis-cli', 'redis-cli + aws', 'redis-cli + check + aws', 'opsflow', 'opsflow + check'] as const;
type Method = (typeof METHODS)[number];
const OPSFLOW = ['opsflow', 'opsflow + check'] as const;

interface SizeResult {
  targetMiB: number;
  keys: number;
  usedMemory: number;
  /** Seconds redis-check-rdb takes over the RDB: the check `deepCheck` adds to a snapshot. */
  checkSeconds: number;
  transfers: Record<Transfer, Record<Method, Measurement>>;
}

async function benchSize(ctx: BenchContext, targetMiB: number): Promise<SizeResult> {
  log(`${targetMiB} MiB: starting redis-server and filling it`);
  // No wait for other replicas before a diskless transfer: measure the transfer, not Redis's 5 s default delay.
  const server = await startScratchRedis({ args: ['--repl-diskless-sync-delay', '0'] });
  const client = await connectRedis({ url: server.url });
  const system = `redis-${targetMiB}`;
  const checkedSystem = `${system}-checked`;
  const systemWith = (deepCheck: boolean) => ({ redis: { url: { env: 'BENCH_REDIS_URL' } }, backup: { components: [{ kind: 'redis', name: 'cache', mode: 'snapshot', deepCheck }] } });
  const setup = testSetup(system, { [system]: 'postgres', [checkedSystem]: 'postgres' }, { [system]: systemWith(false), [checkedSystem]: systemWith(true) });
  let w: BenchWorker | undefined;
  try {
    const fillStart = Date.now();
    const { keys, usedMemory } = await fillRedis(client, targetMiB * MiB);
    log(`${targetMiB} MiB: ${keys.toLocaleString('en-US')} keys, used_memory ${mib(usedMemory)} MiB, filled in ${((Date.now() - fillStart) / 1000).toFixed(0)} s`);
    w = await startBenchWorker(setup, { BENCH_REDIS_URL: server.url });
    const transfers = {} as SizeResult['transfers'];
    let checkSeconds = 0;
    const rdbFile = join(ctx.dir, `cli-${targetMiB}.rdb`);
    for (const transfer of TRANSFERS) {
      await client.config('SET', 'repl-diskless-sync', transfer === 'diskless' ? 'yes' : 'no');
      const runs: Record<Method, Measurement[]> = { 'redis-cli': [], 'redis-cli + aws': [], 'redis-cli + check + aws': [], opsflow: [], 'opsflow + check': [] };
      for (let r = 1; r <= RUNS; r++) {
        const tag = `${targetMiB} MiB ${transfer}${RUNS > 1 ? ` run ${r}/${RUNS}` : ''}`;
        const { floor, plain, checked } = await runPlain(ctx, server.port, rdbFile, `bench/rdb/${system}-${transfer}-${r}.rdb`);
        runs['redis-cli'].push(floor);
        runs['redis-cli + aws'].push(plain);
        runs['redis-cli + check + aws'].push(checked);
        checkSeconds ||= checked.seconds - plain.seconds;
        log(`${tag}: redis-cli ${floor.seconds.toFixed(2)} s (${mib(floor.rdbBytes)} MiB RDB), + aws s3 cp ${plain.seconds.toFixed(2)} s`);
        for (const [method, name] of [['opsflow', system], ['opsflow + check', checkedSystem]] as const) {
          const o = await runOpsflow(w, name, keys, method === 'opsflow + check');
          runs[method].push(o);
          log(`${tag}: ${method.padEnd(15)} ${o.seconds.toFixed(2)} s, ${mib(o.storedBytes)} MiB stored, worker peak RSS ${mib(o.workerPeak!)} MiB`);
        }
      }
      transfers[transfer] = Object.fromEntries(METHODS.map((m) => [m, median(runs[m])])) as Record<Method, Measurement>;
    }
    return { targetMiB, keys, usedMemory, checkSeconds, transfers };
  } finally {
    await w?.close();
    client.disconnect();
    await server.stop();
  }
}

// ---------------------------------------------------------------- report

function report(results: SizeResult[]): { text: string; pass: boolean } {
  const out = ['', `Redis backup benchmark — ${new Date().toISOString()}, ${RUNS} run(s) per method${RUNS > 1 ? ' (median shown)' : ''}, MiB = 2^20 bytes`];
  const names: Record<Method, string> = {
    'redis-cli': 'redis-cli --rdb FILE',
    'redis-cli + aws': 'redis-cli --rdb FILE && aws s3 cp FILE',
    'redis-cli + check + aws': '... && redis-check-rdb FILE && aws s3 cp FILE',
    opsflow: 'opsflow backup workflow (worker)',
    'opsflow + check': 'the same with deepCheck (redis-check-rdb)',
  };
  for (const r of results) {
    out.push('', `== ${r.targetMiB} MiB target: used_memory ${mib(r.usedMemory)} MiB, ${r.keys.toLocaleString('en-US')} keys; redis-check-rdb reads the RDB in ${r.checkSeconds.toFixed(2)} s (deepCheck)`);
    const rows = [['transfer', 'method', 'wall s', 'RDB MiB/s', 'RDB MiB', 'stored MiB', 'peak RSS MiB']];
    for (const transfer of TRANSFERS) {
      for (const method of METHODS) {
        const m = r.transfers[transfer][method];
        rows.push([transfer, names[method], m.seconds.toFixed(2), (m.rdbBytes / MiB / m.seconds).toFixed(0), mib(m.rdbBytes), m.storedBytes ? mib(m.storedBytes) : '-', rssText(m)]);
      }
    }
    out.push(formatTable(rows, 2), '   CPU seconds by process, the redis-server included (cores busy = total / wall):');
    for (const transfer of TRANSFERS) for (const method of METHODS) out.push(`     ${transfer.padEnd(9)} ${method.padEnd(24)} ${cpuText(r.transfers[transfer][method])}`);
    for (const transfer of TRANSFERS) for (const method of OPSFLOW) out.push(`   ${method} steps, ${transfer} (s): ${stepsText(r.transfers[transfer][method])}`);
  }
  const ratio = (r: SizeResult, transfer: Transfer, method: Method, of: Method) => r.transfers[transfer][method].seconds / r.transfers[transfer][of].seconds;
  const checks = checkTable(results.map((r) => `${r.targetMiB} MiB`), [
    ...TRANSFERS.flatMap((transfer) => [
      { name: `opsflow / (redis-cli + aws) time, ${transfer}`, values: results.map((r) => ratio(r, transfer, 'opsflow', 'redis-cli + aws')), fmt: (v: number) => v.toFixed(2), target: `<= ${TARGETS.timeVsPlain}`, ok: (v: number) => v <= TARGETS.timeVsPlain },
      { name: `(opsflow + check) / (redis-cli + check + aws) time, ${transfer}`, values: results.map((r) => ratio(r, transfer, 'opsflow + check', 'redis-cli + check + aws')), fmt: (v: number) => v.toFixed(2), target: `<= ${TARGETS.timeVsPlain}`, ok: (v: number) => v <= TARGETS.timeVsPlain },
      { name: `opsflow / redis-cli alone time, ${transfer}`, values: results.map((r) => ratio(r, transfer, 'opsflow', 'redis-cli')), fmt: (v: number) => v.toFixed(2) },
    ]),
    ...flatMemoryChecks(SIZES_MIB, results.map((r) => Math.max(...TRANSFERS.flatMap((t) => OPSFLOW.map((m) => r.transfers[t][m].workerPeak!)))), TARGETS.workerRssGrowthMiB),
  ]);
  out.push('', checks.text);
  return { text: out.join('\n'), pass: checks.pass };
}

function summary(results: SizeResult[], pass: boolean) {
  const sizes = results.map((r) => ({
    targetMiB: r.targetMiB,
    keys: r.keys,
    usedMemoryBytes: r.usedMemory,
    rdbCheckSeconds: r.checkSeconds,
    transfers: Object.fromEntries(TRANSFERS.map((t) => [t, Object.fromEntries(METHODS.map((method) => {
      const m = r.transfers[t][method];
      return [method, { ...measuredSummary(m), rdbBytes: m.rdbBytes, storedBytes: m.storedBytes }];
    }))])),
  }));
  return { bench: 'redis', runs: RUNS, targets: TARGETS, pass, sizes };
}

// ---------------------------------------------------------------- main

await runBench(flags, SIZES_MIB, benchSize, (results) => {
  const { text, pass } = report(results);
  return { text, summary: summary(results, pass) };
});
