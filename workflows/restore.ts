/**
 * Restore of a system's PostgreSQL database from a backup — replaces the
 * runbooks' restore_database.sh (003's recovery-database-and-rename variant).
 *
 * Steps:
 *   1. find-backup       `latest` or a backup ID → its manifest
 *   2. plan              check the names involved; report sizes and mode
 *   3. approval          wait for `approve` (swap mode only, unless pre-approved)
 *   4. restore-database  S3 → verify SHA-256 → zstd -d → pg_restore into a
 *                        recovery database named from this run; every
 *                        table's count must equal the manifest's
 *   5. swap-in           live → <live>_old, recovery → live (connections to the
 *                        live database ended first); or, with `into`,
 *                        recovery → <into>
 *
 * The live database is untouched until step 5. Any failure or cancellation
 * before it drops the recovery database; a failure inside it puts the live
 * database back under its own name. Workflow ID `restore/<system>/<target>`
 * makes a second restore of the same target fail at once.
 */
import { ApplicationFailure, patched } from '@temporalio/workflow';
import type { z } from 'zod';
import { recoveryDatabaseName, retiredDatabaseName } from '../src/domain/names.ts';
import { compareRowCounts, componentRawBytes, componentStoredBytes, findComponent, manifestSchema, type PostgresComponent } from '../src/domain/manifest.ts';
import { activities, change, localActivities, quick, transfer } from './activityOptions.ts';
import { compensate, failRun, parseInput, RunTracker, runIdentity, type Compensation } from './run.ts';
import { awaitApproval } from './approval.ts';
import { commitAll, planSetRestore, stageAll, swapInAll } from './recovery.ts';
import { restoreInputSchema, type RestoreInput, type RestorePlan, type RestoreResult, type SetRestoreResult } from './shared.ts';

const { postgresRowCounts } = activities(quick);
const { renameDatabase, allowConnections, dropDatabase } = activities(change);
const { restorePostgres } = activities(transfer);

/**
 * Restores a set, or some of its components, into the system's live places:
 * each component staged and checked against the manifest, approval, then all
 * swapped in; any failure puts every swapped component back. `into` restores
 * the database alone into a new database (format-1 behaviour, kept as is).
 */
export async function restore(rawInput: RestoreInput): Promise<RestoreResult | SetRestoreResult> {
  const input = parseInput(restoreInputSchema, rawInput);
  // Runs started before component sets replay the database-only steps.
  if (!patched('component-sets') || input.into) return postgresRestore(input);

  const run = new RunTracker('restore', input.system);
  const { firstRunId } = runIdentity();
  const compensations: Compensation[] = [];
  try {
    const { manifest, components, plan } = await planSetRestore(run, input, inPod);
    if (input.dryRun) {
      run.finish();
      return { plan, dryRun: true };
    }
    const approvedBy = await awaitApproval(run, plan, input);
    const set = { system: input.system, setSystem: plan.from, manifest, tag: firstRunId };
    const restored = await stageAll(run, set, components, compensations);
    await swapInAll(run, set, components, compensations);
    compensations.length = 0;
    await commitAll(run, set, components);
    run.finish();
    return { plan, dryRun: false, approvedBy, restored };
  } catch (err) {
    await compensate(run, compensations);
    run.finish(err);
    failRun(err);
  }
}

/** Components that live inside a pod are written through it (the pod must be running). */
export function inPod(c: { kind: string } & Partial<{ source: string }>): boolean {
  return typeof c.source === 'string' && c.source.startsWith('pod:');
}


/** The database-only restore (format 1), with `into` or swapping the live database. */
async function postgresRestore(input: z.output<typeof restoreInputSchema>): Promise<RestoreResult> {
  const { system } = input;
  const run = new RunTracker('restore', system);
  const { firstRunId } = runIdentity();
  /** Steps to undo, newest first, run even when the workflow is cancelled. */
  const compensations: Compensation[] = [];
  // The quick steps around the restore run as local activities; runs started before that keep scheduled ones.
  const local = patched('local-quick-steps');
  const { findBackup, databasesExist } = local ? localActivities(quick) : activities(quick);
  const swap = local ? localActivities(change) : activities(change);

  try {
    // Parsed again: histories of runs before component sets hold format-1 manifests, which the schema converts.
    const manifest = manifestSchema.parse(await run.step('find-backup', () => findBackup({ system, backup: input.backup }), (m) => `${m.backupId}, completed ${m.completedAt}`));
    const component = findComponent(manifest, 'postgres') as PostgresComponent | undefined;
    if (!component) throw ApplicationFailure.nonRetryable(`backup ${manifest.backupId} has no postgres component`, 'NotFound');

    const plan = await run.step('plan', async () => {
      const live = component.database;
      const target = input.into ?? live;
      const recovery = recoveryDatabaseName(target, firstRunId);
      const retired = input.into ? undefined : retiredDatabaseName(live);
      const exists = await databasesExist({ system, names: [target, ...(retired ? [retired] : [])] });
      if (input.into && exists[target]) {
        throw ApplicationFailure.nonRetryable(`database "${target}" already exists; choose another --into name or drop it`, 'Conflict');
      }
      if (retired && exists[retired]) {
        throw ApplicationFailure.nonRetryable(`database "${retired}" (kept from an earlier restore) exists; drop or rename it first`, 'Conflict');
      }
      const counts = Object.values(component.rowCounts);
      const p: RestorePlan = {
        backupId: manifest.backupId,
        backupCompletedAt: manifest.completedAt,
        storedBytes: componentStoredBytes(component),
        rawBytes: componentRawBytes(component),
        tables: counts.length,
        rows: counts.reduce((a, b) => a + b, 0),
        mode: input.into ? 'into' : 'swap',
        target,
        recovery,
        retired,
      };
      return p;
    }, (p) => `${p.mode} ${p.target} from ${p.backupId} (${p.tables} tables, ${p.rows} rows)`);

    if (input.dryRun) {
      run.finish();
      return { plan, dryRun: true };
    }

    const approvedBy = plan.mode === 'into' ? skipApproval(run) : await awaitApproval(run, plan, input);

    compensations.unshift({ name: 'drop-recovery-database', undo: () => dropDatabase({ system, database: plan.recovery }) });
    const loaded = await run.step(
      'restore-database',
      () => restorePostgres({ system, component, database: plan.recovery, encryption: 'encryption' in manifest ? manifest.encryption : undefined }),
      (r) => `${r.storedBytes} bytes verified and loaded into ${r.database}${r.tables === undefined ? '' : `; ${r.tables} tables match the manifest`}`,
    );

    // The restore step checks every table's count against the manifest; runs from before it did count again here.
    const verified = patched('row-counts-in-restore') ? loaded.tables : await run.step('verify-row-counts', async () => {
      const actual = await postgresRowCounts({ system, database: plan.recovery });
      const mismatches = compareRowCounts(component.rowCounts, actual);
      if (mismatches.length > 0) {
        const list = mismatches.slice(0, 5).map((m) => `${m.table}: expected ${m.expected ?? 'absent'}, got ${m.actual ?? 'absent'}`).join('; ');
        throw ApplicationFailure.nonRetryable(`row counts differ from the manifest in ${mismatches.length} table(s): ${list}`, 'IntegrityError');
      }
      return Object.keys(actual).length;
    }, (n) => `${n} tables match the manifest`);

    await run.step('swap-in', async () => {
      if (plan.mode === 'into') {
        await swap.renameDatabase({ system, from: plan.recovery, to: plan.target });
        return;
      }
      const retired = plan.retired!;
      // From here a failure must put the live database back under its name.
      compensations.unshift({
        name: 'put-live-database-back',
        undo: async () => {
          await renameDatabase({ system, from: retired, to: plan.target });
          await allowConnections({ system, database: plan.target, allow: true });
        },
      });
      await swap.renameDatabase({ system, from: plan.target, to: retired, closeFrom: true });
      await swap.renameDatabase({ system, from: plan.recovery, to: plan.target });
    }, () => (plan.mode === 'into' ? `restored as ${plan.target}` : `${plan.target} replaced; previous kept as ${plan.retired}`));

    run.finish();
    return { plan, dryRun: false, rowCountsVerified: verified, approvedBy };
  } catch (err) {
    await compensate(run, compensations);
    run.finish(err);
    failRun(err);
  }
}

function skipApproval(run: RunTracker): undefined {
  run.skip('approval', 'restoring into a new database changes nothing live');
  return undefined;
}
