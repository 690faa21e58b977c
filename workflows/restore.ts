/**
 * Restore of a system's PostgreSQL database from a backup — replaces the
 * runbooks' restore_database.sh (003's recovery-database-and-rename variant).
 *
 * Steps:
 *   1. find-backup       `latest` or a backup ID → its manifest
 *   2. plan              check the names involved; report sizes and mode
 *   3. approval          wait for `approve` (swap mode only, unless pre-approved)
 *   4. restore-database  S3 → verify SHA-256 → zstd -d → pg_restore into a
 *                        recovery database named from this run
 *   5. verify-row-counts every table's count equals the manifest's
 *   6. swap-in           live → <live>_old, recovery → live (connections to the
 *                        live database ended first); or, with `into`,
 *                        recovery → <into>
 *
 * The live database is untouched until step 6. Any failure or cancellation
 * before it drops the recovery database; a failure inside it puts the live
 * database back under its own name. Workflow ID `restore/<system>/<target>`
 * makes a second restore of the same target fail at once.
 */
import { ApplicationFailure, condition, setHandler } from '@temporalio/workflow';
import { recoveryDatabaseName, retiredDatabaseName } from '../src/domain/names.ts';
import { compareRowCounts } from '../src/domain/manifest.ts';
import { activities, change, quick, transfer } from './activityOptions.ts';
import { compensate, failRun, parseInput, RunTracker, runIdentity, type Compensation } from './run.ts';
import {
  approveUpdate,
  rejectUpdate,
  restoreInputSchema,
  type ApprovalInput,
  type RestoreInput,
  type RestorePlan,
  type RestoreResult,
} from './shared.ts';

const { findBackup, databasesExist, postgresRowCounts } = activities(quick);
const { renameDatabase, allowConnections, dropDatabase } = activities(change);
const { restorePostgres } = activities(transfer);

export async function restore(rawInput: RestoreInput): Promise<RestoreResult> {
  const input = parseInput(restoreInputSchema, rawInput);
  const { system } = input;
  const run = new RunTracker('restore', system);
  const { firstRunId } = runIdentity();
  /** Steps to undo, newest first, run even when the workflow is cancelled. */
  const compensations: Compensation[] = [];

  try {
    const manifest = await run.step('find-backup', () => findBackup({ system, backup: input.backup }), (m) => `${m.backupId}, completed ${m.completedAt}`);
    const component = manifest.components.postgres;
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
        storedBytes: component.storedBytes,
        rawBytes: component.rawBytes,
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

    const approvedBy = await approval(run, plan, input);

    compensations.unshift({ name: 'drop-recovery-database', undo: () => dropDatabase({ system, database: plan.recovery }) });
    await run.step('restore-database', () => restorePostgres({ system, component, database: plan.recovery }), (r) => `${r.storedBytes} bytes verified and loaded into ${r.database}`);

    const verified = await run.step('verify-row-counts', async () => {
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
        await renameDatabase({ system, from: plan.recovery, to: plan.target });
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
      await renameDatabase({ system, from: plan.target, to: retired, closeFrom: true });
      await renameDatabase({ system, from: plan.recovery, to: plan.target });
    }, () => (plan.mode === 'into' ? `restored as ${plan.target}` : `${plan.target} replaced; previous kept as ${plan.retired}`));

    run.finish();
    return { plan, dryRun: false, rowCountsVerified: verified, approvedBy };
  } catch (err) {
    await compensate(run, compensations);
    run.finish(err);
    failRun(err);
  }
}

/** Waits for `approve` when the restore replaces the live database. */
async function approval(run: RunTracker, plan: RestorePlan, input: { approved: boolean; approvalTimeoutSeconds: number }): Promise<string | undefined> {
  if (plan.mode === 'into') {
    run.skip('approval', 'restoring into a new database changes nothing live');
    return undefined;
  }
  if (input.approved) {
    run.skip('approval', 'pre-approved in the input');
    return 'input';
  }
  let decision: { approved: boolean; by: ApprovalInput } | undefined;
  // Rejected updates never enter history, so a stray or malformed approval is harmless.
  const validate = (by: ApprovalInput) => {
    if (!run.status.awaitingApproval) throw new Error(`nothing is waiting for approval (phase: ${run.status.phase})`);
    if (typeof by?.by !== 'string' || by.by.trim() === '') throw new Error('by: required (who approves, for the audit trail)');
  };
  setHandler(approveUpdate, (by) => { decision = { approved: true, by }; return { approved: true } as const; }, { validator: validate });
  setHandler(rejectUpdate, (by) => { decision = { approved: false, by }; return { rejected: true } as const; }, { validator: validate });

  return run.step('approval', async () => {
    run.status.awaitingApproval = { plan, since: new Date().toISOString() };
    try {
      const decided = await condition(() => decision !== undefined, input.approvalTimeoutSeconds * 1000);
      if (!decided) throw ApplicationFailure.nonRetryable(`no approval within ${input.approvalTimeoutSeconds} s; nothing was changed`, 'ApprovalTimeout');
      if (!decision!.approved) {
        throw ApplicationFailure.nonRetryable(`rejected by ${decision!.by.by}${decision!.by.comment ? `: ${decision!.by.comment}` : ''}; nothing was changed`, 'Rejected');
      }
      return decision!.by.by;
    } finally {
      run.status.awaitingApproval = undefined;
    }
  }, (by) => `approved by ${by}`);
}
