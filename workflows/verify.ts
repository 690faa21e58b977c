/**
 * Deep verification of a set, and the restore drill built on it.
 *
 * verify: each component restored into a scratch place (scratch database,
 * scratch redis-server, temporary directory) and compared with the manifest
 * (row counts, key count, tree digest, objects per kind); scratch places
 * removed; the result recorded beside the manifest (`latest-verified`).
 *
 * drill: the same on the newest set, timed (RTO of the data restore) and
 * dated (RPO: how old the newest set is); recorded in the catalog, and failed
 * loudly when the RPO is over the system's target.
 */
import { ApplicationFailure } from '@temporalio/workflow';
import { activities, quick } from './activityOptions.ts';
import { verifyAll } from './recovery.ts';
import { failRun, parseInput, RunTracker, runIdentity } from './run.ts';
import { drillInputSchema, verifyInputSchema, type DrillInput, type DrillResult, type VerifyInput, type VerifyResult } from './shared.ts';

const { findBackup, recordVerification, recordDrill, rpoTarget } = activities(quick);

export async function verify(rawInput: VerifyInput): Promise<VerifyResult> {
  const input = parseInput(verifyInputSchema, rawInput);
  const run = new RunTracker('verify', input.system);
  try {
    const { completedAt: _completedAt, ...result } = await verifySet(run, input.system, input.backup);
    run.finish();
    return result;
  } catch (err) {
    run.finish(err);
    failRun(err);
  }
}

export async function drill(rawInput: DrillInput): Promise<DrillResult> {
  const input = parseInput(drillInputSchema, rawInput);
  const run = new RunTracker('drill', input.system);
  const { startTime } = runIdentity();
  try {
    const { completedAt, ...verified } = await verifySet(run, input.system, input.backup);
    const result: DrillResult = {
      ...verified,
      rtoSeconds: Math.round((Date.now() - startTime.getTime()) / 1000),
      rpoSeconds: Math.round((startTime.getTime() - Date.parse(completedAt)) / 1000),
      rpoTargetSeconds: await rpoTarget({ system: input.system }),
    };
    const overTarget = result.rpoTargetSeconds !== undefined && result.rpoSeconds > result.rpoTargetSeconds;
    await run.step('record', () => recordDrill({ system: input.system, drill: { ...result, at: startTime.toISOString(), ok: !overTarget } }));
    if (overTarget) {
      throw ApplicationFailure.nonRetryable(
        `RPO ${result.rpoSeconds} s is over the target of ${result.rpoTargetSeconds} s: the newest set ${result.backupId} is too old`,
        'RpoExceeded',
      );
    }
    run.finish();
    return result;
  } catch (err) {
    run.finish(err);
    failRun(err);
  }
}

/** Verifies the set; also returns when it completed (a drill's RPO). */
async function verifySet(run: RunTracker, system: string, backup: string): Promise<VerifyResult & { completedAt: string }> {
  const { workflowId } = runIdentity();
  const manifest = await run.step('find-backup', () => findBackup({ system, backup }), (m) => `${m.backupId}, ${m.components.length} components`);
  const components = await verifyAll(run, { system, setSystem: system, manifest }, manifest.components);
  await run.step('record-verification', () =>
    recordVerification({ system, backupId: manifest.backupId, verification: { verifiedAt: new Date().toISOString(), components, workflowId } }),
  );
  return { backupId: manifest.backupId, components, completedAt: manifest.completedAt };
}
