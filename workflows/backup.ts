/**
 * Backup of a system as one set — replaces the runbooks' backup.sh (pg_dump |
 * gzip, redis-cli --rdb, tar of data and config, sqlite3 .backup, aws s3 cp).
 *
 * Steps:
 *   1. plan               every configured component checked (it answers, it exists)
 *   2. create-key         a data key for the set, kept only wrapped (when the system encrypts)
 *   3. backup <name>      one per component: source → zstd → [encrypt] → SHA-256 → S3,
 *                         streamed, with what a restore checks against (row counts,
 *                         key count, tree digest, objects per kind)
 *   4. write-manifest     manifest.json last: from then on the set is complete and listed
 *
 * The backup ID (and so every object key) derives from the workflow's start
 * time and ID: a retried or resumed step writes the same objects, never a
 * second copy. Dry run: step 1 only, and the plan is returned.
 */
import { patched } from '@temporalio/workflow';
import { backupIdFor, backupPrefix, POSTGRES_DUMP_FILE } from '../src/domain/names.ts';
import type { Component, Manifest } from '../src/domain/manifest.ts';
import { activities, quick, transfer } from './activityOptions.ts';
import { failRun, parseInput, RunTracker, runIdentity } from './run.ts';
import { backupInputSchema, type BackupInput, type BackupResult } from './shared.ts';

const { checkPostgres, writeManifest, planBackup, createSetKey } = activities(quick);
const { backupPostgres, backupComponent } = activities(transfer);

export async function backup(rawInput: BackupInput): Promise<BackupResult> {
  const input = parseInput(backupInputSchema, rawInput);
  // Runs started before component sets replay the format-1 steps.
  if (!patched('component-sets')) return postgresOnlyBackup(input);

  const run = new RunTracker('backup', input.system);
  const { workflowId, startTime } = runIdentity();
  const backupId = backupIdFor(startTime, workflowId);
  try {
    const plan = await run.step('plan', () => planBackup({ system: input.system }), (p) =>
      p.components.map((c) => `${c.name}: ${c.detail}`).join('; '),
    );
    if (input.dryRun) {
      run.finish();
      return { backupId, dryRun: true, components: plan.components, encryptedWith: plan.encryptedWith };
    }

    const encryption = plan.encryptedWith
      ? await run.step('create-key', () => createSetKey({ system: input.system }), (e) => `data key wrapped by master key ${e?.wrappedKey.keyId}`)
      : undefined;

    const components: Component[] = [];
    for (const { name } of plan.components) {
      components.push(
        await run.step(`backup ${name}`, () => backupComponent({ system: input.system, backupId, name, encryption }), (c) => `${c.rawBytes} bytes read, ${c.storedBytes} stored`),
      );
    }

    const manifest: Manifest = {
      formatVersion: 2,
      backupId,
      system: input.system,
      workflowId,
      startedAt: startTime.toISOString(),
      completedAt: new Date().toISOString(),
      encryption,
      components,
    };
    await run.step('write-manifest', () => writeManifest({ manifest }), (r) => r.key);
    run.finish();
    return { backupId, dryRun: false, manifest };
  } catch (err) {
    run.finish(err);
    failRun(err);
  }
}

/** The format-1 backup (a PostgreSQL dump only), kept so histories of runs started before component sets replay. */
async function postgresOnlyBackup(input: { system: string; dryRun: boolean }): Promise<BackupResult> {
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
    const manifest = {
      formatVersion: 1 as const,
      backupId,
      system: input.system,
      workflowId,
      startedAt: startTime.toISOString(),
      completedAt: new Date().toISOString(),
      components: { postgres },
    };
    await run.step('write-manifest', () => writeManifest({ manifest }), (r) => r.key);
    run.finish();
    return { backupId, dryRun: false };
  } catch (err) {
    run.finish(err);
    failRun(err);
  }
}
