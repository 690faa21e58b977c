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
 * loudly when the RPO is over the system's target. With a scratch system to
 * recover into (input `into` or recovery.drillInto), the drill is a whole
 * disaster recovery there instead, the application's health included, and
 * the scratch system is emptied afterwards.
 */
import { ApplicationFailure, CancellationScope, patched, startChild } from '@temporalio/workflow';
import { workflowIds } from '../src/domain/names.ts';
import { activities, change, quick, watched } from './activityOptions.ts';
import { disasterRecovery } from './disasterRecovery.ts';
import { verifyAll } from './recovery.ts';
import { failRun, parseInput, RunTracker, runIdentity } from './run.ts';
import { drillInputSchema, verifyInputSchema, type DrillInput, type DrillResult, type VerifyInput, type VerifyResult } from './shared.ts';

const { findBackup, recordVerification, recordDrill, rpoTarget, drillPlace } = activities(quick);
const { tearDownScratch } = activities(watched(change));

/** Runs recorded before this patch had no `place` step. */
const DRILL_INTO = 'drill-into';

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
    // Runs recorded before drills could recover into a scratch system asked for no place.
    const into = patched(DRILL_INTO) ? await run.step('place', () => drillPlace({ system: input.system, into: input.into }), (p) => p ?? 'none: each component checked in a scratch place') : undefined;
    const drilled: Omit<DrillResult, 'rpoSeconds' | 'rtoSeconds'> & { completedAt: string; rtoSeconds?: number } = into
      ? await recoverInto(run, input.system, input.backup, into)
      : await verifySet(run, input.system, input.backup);
    const { completedAt, ...outcome } = drilled;
    const result: DrillResult = {
      ...outcome,
      // Into a scratch system: the recovery's own wall time; else the whole drill's.
      rtoSeconds: outcome.rtoSeconds ?? Math.round((Date.now() - startTime.getTime()) / 1000),
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

/**
 * The whole set recovered into scratch system `into` by a disaster recovery
 * (a child run: each component staged and checked against the manifest, the
 * application scaled up, its health checked), then the scratch system
 * emptied, also when the recovery failed or the drill was cancelled.
 */
async function recoverInto(run: RunTracker, system: string, backup: string, into: string): Promise<Omit<DrillResult, 'rpoSeconds'> & { completedAt: string }> {
  let tag: string | undefined;
  try {
    const recovered = await run.step(`recover into ${into}`, async () => {
      const child = await startChild(disasterRecovery, {
        workflowId: workflowIds.recovery(into),
        args: [{ system: into, from: system, backup, approved: true, switchTraffic: false }],
      });
      tag = child.firstExecutionRunId; // names what the recovery made beside each place
      return child.result();
    }, (r) => `${r.plan.backupId} recovered in ${r.rtoSeconds} s, ${r.health?.length ?? 0} health checks passed`);
    return {
      backupId: recovered.plan.backupId,
      components: recovered.restored ?? {},
      into,
      health: recovered.health,
      tornDown: await tearDown(),
      rtoSeconds: recovered.rtoSeconds!,
      completedAt: recovered.plan.backupCompletedAt,
    };
  } catch (err) {
    await CancellationScope.nonCancellable(tearDown).catch(() => undefined); // the recovery's failure is the one to report
    throw err;
  }

  /** Only after our own recovery started: a refused start may mean another run is using the scratch system. */
  async function tearDown(): Promise<Record<string, string> | undefined> {
    if (tag === undefined) return undefined;
    const at = tag;
    tag = undefined; // once, whether it succeeds or not
    return run.step('tear down', () => tearDownScratch({ system: into, setSystem: system, tag: at }), (r) => Object.values(r).join('; '));
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
