/**
 * `opsflow dev`: the embedded default. Starts the local bed (Temporal dev
 * server with its Web UI, PostgreSQL, Redis, MinIO) in .opsflow/dev, a demo
 * database, and a worker in this process; runs a first backup of `demo` so
 * there is something to see; then serves until Ctrl-C. Data is kept across
 * restarts. `--once` also restores that backup into a scratch database,
 * checks it, and exits: the quick proof that everything works.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BED_CONFIG, DEV_DIR, startBed } from '../deploy/bed/bed.ts';
import { ensureDemoDatabase } from '../deploy/bed/demo.ts';
import { createWorker } from '../workers/worker.ts';
import { loadConfig } from './config.ts';
import { OpsflowClient } from './client.ts';
import { temporalTarget } from './temporal.ts';
import { followRun, formatBytes } from './progress.ts';
import { PostgresAdapter, withDatabase } from './adapters/postgres.ts';
import { componentStoredBytes, storedBytesOf } from './domain/manifest.ts';

export async function runDev(options: { once: boolean }): Promise<number> {
  mkdirSync(DEV_DIR, { recursive: true });
  process.stderr.write('starting the local bed (Temporal, PostgreSQL, Redis, MinIO)…\n');
  const bed = await startBed({ dir: DEV_DIR, ui: true, preferPorts: { temporal: 7233, ui: 8233 } });
  Object.assign(process.env, bed.env);
  writeFileSync(join(DEV_DIR, 'env'), `${Object.entries(bed.env).map(([k, v]) => `${k}=${v}`).join('\n')}\n`, { mode: 0o600 });
  const created = await ensureDemoDatabase(bed.pg.superuserUrl);

  const config = loadConfig(BED_CONFIG);
  const { worker, connection } = await createWorker({ config });
  const running = worker.run();
  const opsflow = await OpsflowClient.connect(temporalTarget({ taskQueue: config.temporal.taskQueue }));

  process.stderr.write(
    `\nopsflow dev is up.\n` +
      `  Temporal UI       ${bed.uiUrl}\n` +
      `  Temporal address  ${bed.temporalAddress}\n` +
      `  config            ${BED_CONFIG} (system "demo"${created ? ', database just created' : ''})\n` +
      `  bed data          ${DEV_DIR}\n\n` +
      `In another terminal:\n` +
      `  bin/opsflow backup demo\n` +
      `  bin/opsflow backups list demo\n` +
      `  bin/opsflow restore demo --into demo_copy\n` +
      `  bin/opsflow restore demo            (swaps in place, asks for approval)\n\n`,
  );

  let code = 0;
  try {
    const backup = await opsflow.startBackup({ system: 'demo' });
    process.stderr.write(`first backup: ${backup.workflowId}\n`);
    await followRun(backup.handle);
    const { backupId, manifest } = await backup.result();
    const parts = manifest ? manifest.components.map((c) => `${c.name} ${formatBytes(componentStoredBytes(c))}`).join(', ') : '';
    process.stderr.write(`backup ${backupId} done: ${formatBytes(manifest ? storedBytesOf(manifest) : 0)} stored (${parts})\n`);

    if (options.once) {
      const pg = new PostgresAdapter({ binDir: bed.env.OPSFLOW_PG_BIN });
      const scratch = 'demo_dev_check';
      await pg.dropDatabase(bed.pg.superuserUrl, scratch);
      const restore = await opsflow.startRestore({ system: 'demo', backup: backupId, into: scratch });
      await followRun(restore.handle);
      const result = await restore.result();
      const counts = await pg.rowCountsOf(withDatabase(bed.pg.superuserUrl, scratch));
      process.stderr.write(`restored into ${scratch}: ${result.rowCountsVerified} tables verified, shop.orders has ${counts['shop.orders']} rows\n`);
      await pg.dropDatabase(bed.pg.superuserUrl, scratch);
    } else {
      process.stderr.write('serving; Ctrl-C stops the worker and the bed (data is kept)\n');
      await running;
    }
  } catch (err) {
    process.stderr.write(`opsflow dev: ${(err as Error).message}\n`);
    code = 1;
  } finally {
    await opsflow.close();
    if (worker.getState() === 'RUNNING') worker.shutdown();
    await running.catch(() => undefined);
    await connection.close();
    await bed.stop();
    rmSync(join(DEV_DIR, 'env'), { force: true }); // nothing to connect to any more
  }
  return code;
}
