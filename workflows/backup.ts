/**
 * Backup of a system to S3 — replaces the runbooks' `pg_dump | gzip > file;
 * aws s3 cp` scripts.
 *
 * Steps:
 *   1. check-database  the system is configured and its database answers
 *   2. dump-postgres   pg_dump -Fc → zstd → SHA-256 → S3 multipart, streamed;
 *                      per-table row counts from the dump's own snapshot
 *   3. write-manifest  manifest.json beside the dump; from now on the set is
 *                      complete and listed (a set without one never is)
 *
 * The backup ID (and so every object key) derives from the workflow's start
 * time and ID: a retried or resumed step writes the same objects, never a
 * second copy. Dry run: step 1 only, and the plan is returned.
 */
import { backupIdFor, backupPrefix, POSTGRES_DUMP_FILE } from '../src/domain/names.ts';
import type { Manifest } from '../src/domain/manifest.ts';
import { activities, quick, transfer } from './activityOptions.ts';
import { failRun, parseInput, RunTracker, runIdentity } from './run.ts';
import { backupInputSchema, type BackupInput, type BackupResult } from './shared.ts';

const { checkPostgres, writeManifest } = activities(quick);
const { backupPostgres } = activities(transfer);

export async function backup(rawInput: BackupInput): Promise<BackupResult> {
  const input = parseInput(backupInputSchema, rawInput);
  const run = new RunTracker('backup', input.system);
  const { workflowId, startTime } = runIdentity();
  const backupId = backupIdFor(startTime, workflowId);
  try {
    const info = await run.step('check-database', () => checkPostgres({ system: input.system }), (i) => `${i.database}, PostgreSQL ${i.serverVersion}, ${i.sizeBytes} bytes`);

    if (input.dryRun) {
      run.skip('dump-postgres', 'dry run');
      run.skip('write-manifest', 'dry run');
      run.finish();
      const key = `${backupPrefix('<prefix>', input.system, backupId)}${POSTGRES_DUMP_FILE}`;
      return { backupId, dryRun: true, plan: { database: info.database, serverVersion: info.serverVersion, databaseBytes: info.sizeBytes, key } };
    }

    const postgres = await run.step('dump-postgres', () => backupPostgres({ system: input.system, backupId }), (c) => `${c.rawBytes} bytes dumped, ${c.storedBytes} stored, ${Object.keys(c.rowCounts).length} tables`);

    const manifest: Manifest = {
      formatVersion: 1,
      backupId,
      system: input.system,
      workflowId,
      startedAt: startTime.toISOString(),
      completedAt: new Date().toISOString(),
      components: { postgres },
    };
    await run.step('write-manifest', () => writeManifest({ manifest }), (r) => r.key);
    run.finish();
    return { backupId, dryRun: false, manifest };
  } catch (err) {
    run.finish(err);
    failRun(err);
  }
}
