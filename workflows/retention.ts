/**
 * Retention of a system's sets: the configured policy (last N, within N
 * days, daily/weekly/monthly/yearly, a maximum age; pinned sets and the newest
 * verified set always kept) decides, and the sets that go are deleted; uploads
 * left incomplete by crashed runs are aborted. Dry run: the decision only.
 */
import { activities, change } from './activityOptions.ts';
import { failRun, parseInput, RunTracker } from './run.ts';
import { retentionInputSchema, type RetentionInput, type RetentionResult } from './shared.ts';

const { applyRetention } = activities(change);

export async function retention(rawInput: RetentionInput): Promise<RetentionResult> {
  const input = parseInput(retentionInputSchema, rawInput);
  const run = new RunTracker('retention', input.system);
  try {
    const r = await run.step(
      input.dryRun ? 'plan' : 'apply',
      () => applyRetention({ system: input.system, dryRun: input.dryRun, now: new Date().toISOString() }),
      (x) => `${x.decisions.filter((d) => d.keep).length} kept, ${x.decisions.filter((d) => !d.keep).length} ${input.dryRun ? 'would go' : 'deleted'}`,
    );
    run.finish();
    const pick = (keep: boolean) => r.decisions.filter((d) => d.keep === keep).map(({ backupId, reasons }) => ({ backupId, reasons }));
    return { dryRun: input.dryRun, keep: pick(true), delete: pick(false), deletedObjects: r.deletedObjects, abortedUploads: r.abortedUploads };
  } catch (err) {
    run.finish(err);
    failRun(err);
  }
}
