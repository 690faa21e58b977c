/**
 * Disaster recovery benchmark (a script, not a test): `npm run bench:dr [-- flags]`.
 *
 * Starts a local bed and, for each size, a sample system of three components:
 * PostgreSQL (data.ts), Redis (mixed keys, a snapshot) and a files directory
 * (the files benchmark's tree). Then measures the recovery time (RTO), in the
 * same run, two ways:
 *   opsflow  the set backed up with the `backup` workflow on a worker process (untimed),
 *            the live data changed a little, then startDisasterRecovery({ system,
 *            backup, approved: true }) timed from its start to its result (no
 *            Kubernetes section: nothing is scaled); the result's rtoSeconds beside it
 *   by hand  as the runbooks' disaster_recovery.sh: plain backups made and uploaded
 *            untimed (pg_dump -Fc FILE, redis-cli --rdb FILE, tar czf FILE; aws s3 cp
 *            each), the live data changed a little, then timed, step by step:
 *            aws s3 cp down (each file); dropdb + createdb + pg_restore -j 2 into the
 *            live database's name; Redis FLUSHDB, SHUTDOWN NOSAVE, dump.rdb replaced,
 *            redis-server started and waited for (a redis-server of its own, so the
 *            bed's shared one is not restarted); rm -rf + tar xzf of the directory
 * and prints the step times, totals and the ratio, and a one-line JSON summary
 * (the last line of stdout). See test/bench/README.md.
 *
 * Flags: --sizes 256 (MiB, comma-separated; each size S is PostgreSQL S MiB,
 * files S MiB, Redis S/4 MiB of used_memory)  --pg N --redis N --files N
 * (MiB, override one component; with a single size)  --runs 1 (median of N
 * per method)  --keep (keep the bed's directory)  --check (exit 1 if a target
 * is missed).
 */
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { Redis } from 'ioredis';
import { libpqEnv } from '../../src/adapters/postgres.ts';
import { storedBytesOf } from '../../src/domain/manifest.ts';
import type { SetRestoreResult } from '../../workflows/shared.ts';
import { testSetup, pgUrl } from '../support/bed.ts';
import { createBenchDatabase, dropBenchDatabase } from './data.ts';
import { fillRedis, writeTree } from './fixtures.ts';
import {
  BENCH_OPTIONS, MiB, benchSettings, checkTable, cpuText, formatTable, inSequence, log, measuredSummary, median, mib, rssText, runBench, startBenchWorker, stepsText, timeShell, timeWorkflow,
  type BenchContext, type Measured, type Timed,
} from './common.ts';

const { values: flags } = parseArgs({
  options: { ...BENCH_OPTIONS, sizes: { type: 'string', default: '256' }, pg: { type: 'string' }, redis: { type: 'string' }, files: { type: 'string' } },
});
const { sizes: SIZES_MIB, runs: RUNS } = benchSettings(flags, import.meta.url);
if ((flags.pg || flags.redis || flags.files) && SIZES_MIB.length > 1) throw new Error('--pg/--redis/--files: with a single --sizes value');
const override = (v: string | undefined, name: string) => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 4) throw new Error(`--${name}: MiB >= 4 (got ${v})`);
  return n;
};
const OVERRIDES = { pg: override(flags.pg, 'pg'), redis: override(flags.redis, 'redis'), files: override(flags.files, 'files') };
const TARGETS = { rtoVsManual: 1 };
const LIVE_DB = 1;
const STAGING_DB = 2;

interface Sizes { pg: number; redis: number; files: number }
const sizesFor = (s: number): Sizes => ({ pg: OVERRIDES.pg ?? s, redis: OVERRIDES.redis ?? Math.max(4, Math.round(s / 4)), files: OVERRIDES.files ?? s });

// ---------------------------------------------------------------- data: Redis (as redis.bench.ts) and the tree (as files.bench.ts)

const countFiles = (dir: string): number => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length;

// ---------------------------------------------------------------- the live system: a fingerprint, and a small change

interface State { customers: number; orders: number; events: number; redisKeys: number; files: number }

async function query<T>(url: string, sql: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql)).rows as T[];
  } finally {
    await c.end();
  }
}

async function stateOf(db: string, redisUrl: string, dir: string): Promise<State> {
  const [rows] = await query<{ customers: string; orders: string; events: string }>(pgUrl(db), 'SELECT (SELECT count(*) FROM customers) customers, (SELECT count(*) FROM orders) orders, (SELECT count(*) FROM events) events');
  const r = new Redis(redisUrl);
  const redisKeys = await r.dbsize();
  r.disconnect();
  return { customers: Number(rows!.customers), orders: Number(rows!.orders), events: Number(rows!.events), redisKeys, files: countFiles(dir) };
}

/** "A little": some rows deleted and added, a few keys deleted and added, a file overwritten, one removed, one added. */
async function changeALittle(db: string, redisUrl: string, dir: string): Promise<void> {
  await query(pgUrl(db), `DELETE FROM events WHERE id % 100 = 0; DELETE FROM orders WHERE id % 100 = 0; INSERT INTO customers SELECT id + 100000000, email, full_name, country, city, plan, api_key, marketing_opt_in, now() FROM customers WHERE id <= 50`);
  const r = new Redis(redisUrl);
  const victims = (await r.scan('0', 'COUNT', 500))[1];
  if (victims.length) await r.del(...victims);
  await r.set('after-backup', 'x');
  r.disconnect();
  const logs = join(dir, 'logs', 'd000');
  writeFileSync(join(logs, 'logs-0.log'), 'overwritten');
  rmSync(join(logs, 'logs-1.log'));
  writeFileSync(join(dir, 'added.txt'), 'new');
}

function sameState(what: string, actual: State, expected: State): void {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) throw new Error(`${what}: the recovered system differs from the backup: ${JSON.stringify(actual)} vs ${JSON.stringify(expected)}`);
}

// ---------------------------------------------------------------- the manual path's own redis-server

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A redis-server the manual path may stop and start (daemonized, with a pid file): not the bed's shared one. */
class ManualRedis {
  readonly port: number;
  readonly dir: string;
  constructor(dir: string, port: number) {
    this.dir = dir;
    this.port = port;
    mkdirSync(dir, { recursive: true });
    process.once('exit', () => this.kill());
  }
  get url() {
    return `redis://127.0.0.1:${this.port}/${LIVE_DB}`;
  }
  /** The command line the runbook starts it with, and waits for (PING answers PONG once the RDB is loaded). */
  get startScript() {
    return `redis-server --port ${this.port} --bind 127.0.0.1 --dir "${this.dir}" --dbfilename dump.rdb --save "" --appendonly no --daemonize yes --pidfile "${this.dir}/redis.pid" --logfile "${this.dir}/redis.log" && until [ "$(redis-cli -p ${this.port} ping 2>/dev/null)" = PONG ]; do sleep 0.05; done`;
  }
  kill(): void {
    try {
      process.kill(Number(readFileSync(join(this.dir, 'redis.pid'), 'utf8').trim()), 'SIGKILL');
    } catch {
      // not running
    }
  }
  async stop(): Promise<void> {
    try {
      execFileSync('redis-cli', ['-p', String(this.port), 'shutdown', 'nosave'], { stdio: 'ignore' });
    } catch {
      // gone already (redis-cli reports the closed connection as an error)
    }
    this.kill();
  }
}

// ---------------------------------------------------------------- one size

const MANUAL_STEPS = ['download (aws s3 cp x3)', 'postgres: dropdb, createdb, pg_restore -j 2', 'redis: FLUSHDB, stop, dump.rdb, start', 'files: rm -rf, tar xzf'] as const;
type ManualStep = (typeof MANUAL_STEPS)[number];

interface SizeResult {
  label: string;
  sizes: Sizes;
  databaseBytes: number;
  redisKeys: number;
  redisUsedMemory: number;
  tree: { files: number; bytes: number };
  /** Bytes of the plain backups (pg_dump -Fc, RDB, tar.gz) and of opsflow's set (sum of storedBytes). */
  plainBytes: { pg: number; rdb: number; tar: number };
  opsflowStoredBytes: number;
  opsflowBackupSeconds: number;
  opsflow: Measured & { rtoSeconds: number };
  manual: Measured & { stepSeconds: Record<ManualStep, number> };
}

async function benchSize(ctx: BenchContext, size: number): Promise<SizeResult> {
  const sizes = sizesFor(size);
  const label = `pg ${sizes.pg} + redis ${sizes.redis} + files ${sizes.files} MiB`;
  const admin = ctx.bed.env.BED_PG_SUPERUSER_URL!;
  const db = `dr_${size}`;
  const system = `dr-${size}`;
  const work = join(ctx.dir, `dr-${size}`);
  const dir = join(work, 'files', 'data');
  const bedRedisUrl = `redis://127.0.0.1:${ctx.bed.env.BED_REDIS_PORT}/${LIVE_DB}`;
  const manualRedis = new ManualRedis(join(work, 'manual-redis'), await freePort());

  log(`${label}: generating PostgreSQL ${db}`);
  const load = await createBenchDatabase(admin, db, sizes.pg * MiB, log);
  log(`${label}: ${db} is ${mib(load.databaseBytes)} MiB, loaded in ${load.seconds.toFixed(0)} s; filling Redis db ${LIVE_DB}`);
  const bedRedis = new Redis(bedRedisUrl);
  await bedRedis.flushdb();
  const { keys: redisKeys } = await fillRedis(bedRedis, sizes.redis * MiB);
  const redisUsedMemory = Number(/^used_memory:(\d+)/m.exec(await bedRedis.info('memory'))![1]);
  bedRedis.disconnect();
  log(`${label}: ${redisKeys.toLocaleString('en-US')} keys, used_memory ${mib(redisUsedMemory)} MiB; writing the tree`);
  const tree = writeTree(dir, sizes.files * MiB);
  execFileSync('sync');
  log(`${label}: ${tree.files.toLocaleString('en-US')} files, ${mib(tree.bytes)} MiB`);

  const setup = testSetup(system, { [system]: db }, {
    [system]: {
      redis: { url: { env: 'BENCH_REDIS_URL' } },
      backup: { components: [{ kind: 'postgres' }, { kind: 'redis', name: 'cache', mode: 'snapshot', stagingDb: STAGING_DB }, { kind: 'files', name: 'files', path: dir }] },
    },
  });
  const w = await startBenchWorker(setup, { BENCH_REDIS_URL: bedRedisUrl });
  try {
    // The manual path's redis-server starts on the same data (the bed's RDB: db 1 holds the keys).
    const seed = join(manualRedis.dir, 'dump.rdb');
    execFileSync('redis-cli', ['-p', ctx.bed.env.BED_REDIS_PORT!, '--rdb', seed], { stdio: 'ignore' });
    execFileSync('bash', ['-c', manualRedis.startScript]);
    const original = await stateOf(db, bedRedisUrl, dir);
    sameState('the manual redis-server', { ...original, redisKeys: (await stateOf(db, manualRedis.url, dir)).redisKeys }, original);

    // Backups, untimed: opsflow's set, and the runbooks' plain files, uploaded.
    const backupStarted = performance.now();
    const backup = await (await w.opsflow.startBackup({ system })).result();
    const opsflowBackupSeconds = (performance.now() - backupStarted) / 1000;
    const opsflowStoredBytes = storedBytesOf(backup.manifest!);
    log(`${label}: opsflow set ${backup.backupId} in ${opsflowBackupSeconds.toFixed(1)} s, ${mib(opsflowStoredBytes)} MiB stored`);
    const plainDir = join(work, 'plain');
    const restoreDir = join(work, 'restore-download');
    mkdirSync(plainDir, { recursive: true });
    const env = {
      ...ctx.awsEnv, ...libpqEnv(pgUrl('postgres')), PG_BIN: ctx.bed.env.OPSFLOW_PG_BIN!, DB: db, PORT: String(manualRedis.port), RDIR: manualRedis.dir,
      DIR: dir, PLAIN: plainDir, DL: restoreDir, S3: ctx.s3Url(`bench/dr/${system}`),
    };
    await timeShell(
      `"$PG_BIN/pg_dump" -Fc --no-password -d "$DB" -f "$PLAIN/db.dump" && redis-cli -p "$PORT" --rdb "$PLAIN/dump.rdb" > /dev/null && tar czf "$PLAIN/files.tar.gz" -C "$DIR" . && ` +
        `for f in db.dump dump.rdb files.tar.gz; do "$AWS" s3 cp "$PLAIN/$f" "$S3/$f" --only-show-errors || exit 1; done`,
      env,
    );
    const sizeOf = (f: string) => Number(execFileSync('stat', ['-c', '%s', join(plainDir, f)]).toString());
    const plainBytes = { pg: sizeOf('db.dump'), rdb: sizeOf('dump.rdb'), tar: sizeOf('files.tar.gz') };
    rmSync(plainDir, { recursive: true, force: true });
    log(`${label}: plain backups uploaded: pg_dump -Fc ${mib(plainBytes.pg)} MiB, RDB ${mib(plainBytes.rdb)} MiB, tar.gz ${mib(plainBytes.tar)} MiB`);

    const runs = { opsflow: [] as SizeResult['opsflow'][], manual: [] as SizeResult['manual'][] };
    for (let r = 1; r <= RUNS; r++) {
      const tag = `${label}${RUNS > 1 ? ` run ${r}/${RUNS}` : ''}`;
      // opsflow
      await changeALittle(db, bedRedisUrl, dir);
      execFileSync('sync');
      const t = await timeWorkflow<SetRestoreResult>(w, (opsflow) => opsflow.startDisasterRecovery({ system, backup: backup.backupId, approved: true }));
      sameState('opsflow', await stateOf(db, bedRedisUrl, dir), original);
      // the replaced database is kept renamed: not part of the next run
      for (const { datname } of await query<{ datname: string }>(admin, `SELECT datname FROM pg_database WHERE datname LIKE '${db}\\_%'`)) await dropBenchDatabase(admin, datname);
      runs.opsflow.push({ ...t, rtoSeconds: t.result.rtoSeconds ?? NaN });
      log(`${tag}: opsflow disaster recovery ${t.seconds.toFixed(2)} s (rtoSeconds ${t.result.rtoSeconds}); steps ${stepsText(t)}`);

      // by hand
      await changeALittle(db, manualRedis.url, dir);
      execFileSync('sync');
      const steps: Record<ManualStep, Timed> = {
        'download (aws s3 cp x3)': await timeShell('mkdir -p "$DL" && for f in db.dump dump.rdb files.tar.gz; do "$AWS" s3 cp "$S3/$f" "$DL/$f" --only-show-errors || exit 1; done', env),
        'postgres: dropdb, createdb, pg_restore -j 2': await timeShell('"$PG_BIN/dropdb" --no-password "$DB" && "$PG_BIN/createdb" --no-password -T template0 "$DB" && "$PG_BIN/pg_restore" -j 2 --exit-on-error --no-password -d "$DB" "$DL/db.dump"', env),
        'redis: FLUSHDB, stop, dump.rdb, start': await timeShell(
          `redis-cli -p "$PORT" -n ${LIVE_DB} flushdb > /dev/null && { redis-cli -p "$PORT" shutdown nosave 2>/dev/null; while [ -e "$RDIR/redis.pid" ] && kill -0 "$(cat "$RDIR/redis.pid")" 2>/dev/null; do sleep 0.05; done; } && ` +
            `cp "$DL/dump.rdb" "$RDIR/dump.rdb" && ${manualRedis.startScript}`,
          env,
        ),
        'files: rm -rf, tar xzf': await timeShell('rm -rf "$DIR" && mkdir -p "$DIR" && tar xzf "$DL/files.tar.gz" -C "$DIR"', env),
      };
      rmSync(restoreDir, { recursive: true, force: true });
      const manual = { ...inSequence(Object.values(steps)), stepSeconds: Object.fromEntries(MANUAL_STEPS.map((s) => [s, steps[s].seconds])) as Record<ManualStep, number> };
      sameState('by hand', { ...(await stateOf(db, bedRedisUrl, dir)), redisKeys: (await stateOf(db, manualRedis.url, dir)).redisKeys }, original);
      runs.manual.push(manual);
      log(`${tag}: by hand ${manual.seconds.toFixed(2)} s (${MANUAL_STEPS.map((s) => manual.stepSeconds[s].toFixed(2)).join(' + ')})`);
    }
    return {
      label, sizes, databaseBytes: load.databaseBytes, redisKeys, redisUsedMemory, tree, plainBytes, opsflowStoredBytes, opsflowBackupSeconds,
      opsflow: median(runs.opsflow), manual: median(runs.manual),
    };
  } finally {
    await w.close();
    await manualRedis.stop();
    await dropBenchDatabase(admin, db).catch(() => undefined);
    const r = new Redis(bedRedisUrl);
    await r.flushall().catch(() => undefined);
    r.disconnect();
    rmSync(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- report

function report(results: SizeResult[]): { text: string; pass: boolean } {
  const out = ['', `Disaster recovery benchmark — ${new Date().toISOString()}, ${RUNS} run(s) per method${RUNS > 1 ? ' (median shown)' : ''}, MiB = 2^20 bytes`];
  for (const r of results) {
    out.push(
      '',
      `== ${r.label}: pg_database_size ${mib(r.databaseBytes)} MiB; Redis ${r.redisKeys.toLocaleString('en-US')} keys, used_memory ${mib(r.redisUsedMemory)} MiB; ${r.tree.files.toLocaleString('en-US')} files, ${mib(r.tree.bytes)} MiB`,
      `   stored: opsflow set ${mib(r.opsflowStoredBytes)} MiB (backup ${r.opsflowBackupSeconds.toFixed(1)} s, untimed); plain pg_dump -Fc ${mib(r.plainBytes.pg)} + RDB ${mib(r.plainBytes.rdb)} + tar.gz ${mib(r.plainBytes.tar)} MiB`,
    );
    const rows = [['method', 'step', 'wall s']];
    for (const [name, s] of Object.entries(r.opsflow.steps ?? {})) rows.push(['opsflow disasterRecovery', name, s.toFixed(2)]);
    rows.push(['opsflow disasterRecovery', 'TOTAL (client: start to result)', r.opsflow.seconds.toFixed(2)]);
    rows.push(['opsflow disasterRecovery', 'result rtoSeconds (rounded)', String(r.opsflow.rtoSeconds)]);
    for (const s of MANUAL_STEPS) rows.push(['by hand (runbook)', s, r.manual.stepSeconds[s].toFixed(2)]);
    rows.push(['by hand (runbook)', 'TOTAL', r.manual.seconds.toFixed(2)]);
    out.push(formatTable(rows, 2));
    out.push(`   peak RSS MiB: opsflow ${rssText(r.opsflow)}; by hand ${rssText(r.manual)}`);
    out.push('   CPU seconds by process, the bed\'s servers included (cores busy = total / wall):');
    out.push(`     opsflow  ${cpuText(r.opsflow)}`, `     by hand  ${cpuText(r.manual)}`);
  }
  const checks = checkTable(results.map((r) => `${r.sizes.pg}/${r.sizes.redis}/${r.sizes.files} MiB`), [
    { name: 'opsflow / by hand RTO', values: results.map((r) => r.opsflow.seconds / r.manual.seconds), fmt: (v) => v.toFixed(2), target: `<= ${TARGETS.rtoVsManual}`, ok: (v) => v <= TARGETS.rtoVsManual },
    { name: 'opsflow RTO (s)', values: results.map((r) => r.opsflow.seconds), fmt: (v) => v.toFixed(2) },
    { name: 'by hand RTO (s)', values: results.map((r) => r.manual.seconds), fmt: (v) => v.toFixed(2) },
  ]);
  out.push('', checks.text);
  return { text: out.join('\n'), pass: checks.pass };
}

function summary(results: SizeResult[], pass: boolean) {
  const sizes = results.map((r) => ({
    sizesMiB: r.sizes,
    databaseBytes: r.databaseBytes,
    redisKeys: r.redisKeys,
    redisUsedMemoryBytes: r.redisUsedMemory,
    ...r.tree,
    plainBytes: r.plainBytes,
    opsflowStoredBytes: r.opsflowStoredBytes,
    opsflow: { ...measuredSummary(r.opsflow), rtoSeconds: r.opsflow.rtoSeconds },
    manual: { ...measuredSummary(r.manual), steps: Object.fromEntries(Object.entries(r.manual.stepSeconds).map(([k, v]) => [k, +v.toFixed(3)])) },
    ratio: +(r.opsflow.seconds / r.manual.seconds).toFixed(3),
  }));
  return { bench: 'dr', runs: RUNS, targets: TARGETS, pass, sizes };
}

await runBench(flags, SIZES_MIB, benchSize, (results) => {
  const { text, pass } = report(results);
  return { text, summary: summary(results, pass) };
});
