/**
 * Zero-downtime deploy of a system's workload with automatic rollback — the
 * runbooks' `kubectl set image` + `rollout status` + curl /health, and 003's
 * "roll back if the error rate passes 10 %", as one procedure:
 *
 *   1. plan       images and containers valid, strategy keeps capacity
 *                 (refused, or a warning, as the config says)
 *   2. checks     database reachable, a recent backup, health endpoints
 *   3. migrate    a Job running the new image; a failure stops here, before
 *                 any pod changed, with the Job's logs in the error
 *   4. rollout    set image (with a change cause), watch the rollout and
 *                 measure every analysis interval meanwhile
 *   5. bake       keep measuring for the bake window (`promote` ends it)
 *
 * From step 4 on, any of these rolls back at once: failed measurements
 * `failureLimit` times in a row, new pods that fail to start (crash loop,
 * image pull), a stalled rollout (progress deadline), `abort`. Rollback puts
 * the previous template back, waits for it, and checks it is healthy.
 * Inconclusive measurements (no data, Prometheus down) pause the deploy for
 * a human: `resume` or `abort`. Migrations are never reversed automatically.
 * Workflow ID `deploy/<system>`: one deploy per system at a time.
 */
import { ApplicationFailure, CancellationScope, condition, isCancellation, setHandler, sleep } from '@temporalio/workflow';
import { shortHash } from '../src/domain/names.ts';
import { innermostMessage } from '../src/errors.ts';
import { activities, change, quick, watch } from './activityOptions.ts';
import { failRun, parseInput, RunTracker, runIdentity } from './run.ts';
import {
  abortDeployUpdate,
  deployInputSchema,
  pauseDeployUpdate,
  promoteDeployUpdate,
  resumeDeployUpdate,
  type ApprovalInput,
  type DeployInput,
  type DeployMeasurement,
  type DeployResult,
  type DeployStatus,
} from './shared.ts';
import type { DeployPlan, Measurement } from '../activities/deploy.ts';

const { planDeploy, preDeployChecks, analyze, notify } = activities(quick);
const { setWorkloadImages, setRolloutPaused, rollbackWorkload } = activities(change);
const { waitForRollout, runMigration } = activities(watch);

/** Measurements the rolled-back version gets to show it is healthy. */
const ROLLBACK_HEALTH_ATTEMPTS = 6;

type Decision = { rollback: false } | { rollback: true; reason: string; firstFailureAt?: string };

export async function deploy(rawInput: DeployInput): Promise<DeployResult> {
  const input = parseInput(deployInputSchema, rawInput);
  const { system, images } = input;
  const run = new RunTracker('deploy', system);
  const { workflowId, firstRunId } = runIdentity();
  const controls: { abort?: string; promote?: string; pause?: string; resume?: string } = {};
  let rolledOut = false;
  let plan: DeployPlan | undefined;

  const status: DeployStatus = { images, previousImages: {}, measurements: [] };
  run.status.deploy = status;

  const inPhase = (...phases: string[]) => (who: ApprovalInput) => {
    if (!phases.includes(run.status.phase)) throw new Error(`not possible in phase ${run.status.phase} (only in ${phases.join(', ')})`);
    if (typeof who?.by !== 'string' || who.by.trim() === '') throw new Error('by: required (who, for the audit trail)');
  };
  setHandler(abortDeployUpdate, (who) => { controls.abort = who.by; return { aborted: true } as const; }, { validator: inPhase('rollout', 'bake', 'paused') });
  setHandler(promoteDeployUpdate, (who) => { controls.promote = who.by; return { promoted: true } as const; }, { validator: inPhase('bake') });
  setHandler(pauseDeployUpdate, (who) => { controls.pause ??= who.by; return { paused: true } as const; }, { validator: inPhase('rollout', 'bake') });
  setHandler(resumeDeployUpdate, (who) => { controls.resume = who.by; return { resumed: true } as const; }, { validator: inPhase('paused') });
  /** True from the moment opsflow pauses the Deployment until it has resumed it. */
  let held = false;

  /** Puts the previous version back, reports it, and ends the run as RolledBack. */
  const rollBack = async (decision: Extract<Decision, { rollback: true }>): Promise<never> => {
    status.rollback = { reason: decision.reason, firstFailureAt: decision.firstFailureAt, startedAt: new Date().toISOString() };
    await CancellationScope.nonCancellable(() => restorePrevious(run, system, plan!));
    status.rollback.completedAt = new Date().toISOString();
    const migrated = plan!.migrationImage ? ' The migration was not reversed: the database stays migrated.' : '';
    await notify({ system, event: 'rolled-back', text: `${system}: deploy of ${describeImages(images)} rolled back: ${decision.reason}.${migrated}`, details: { images, workflowId } }).catch(() => undefined);
    throw ApplicationFailure.nonRetryable(`rolled back to ${describeImages(plan!.previousImages)}: ${decision.reason}.${migrated}`, 'RolledBack');
  };

  try {
    plan = await run.step('plan', () => planDeploy({ system, images }), (p) =>
      `${p.workload.kind}/${p.workload.name} ${p.replicas} replicas, ${Object.entries(images).map(([c, i]) => `${c}: ${p.previousImages[c]} → ${i}`).join(', ')}; ${p.capacity.reason}`);
    const planned = plan;
    status.previousImages = plan.previousImages;
    let capacityWarning: string | undefined;
    if (!plan.capacity.keepsCapacity) {
      if (plan.capacityPolicy === 'refuse') {
        throw ApplicationFailure.nonRetryable(`the rollout could drop available replicas: ${plan.capacity.reason} (or set deploy.capacity: warn)`, 'CapacityRisk');
      }
      capacityWarning = plan.capacity.reason;
    }

    if (input.skipChecks) run.skip('checks', 'skipChecks in the input');
    else {
      await run.step('checks', async () => {
        const results = await preDeployChecks({ system });
        const failed = results.filter((r) => !r.ok);
        if (failed.length) throw ApplicationFailure.nonRetryable(`pre-deploy checks failed: ${failed.map((r) => `${r.name}: ${r.detail}`).join('; ')}`, 'PreDeployCheckFailed');
        return results;
      }, (rs) => rs.map((r) => `${r.name} ok`).join(', ') || 'none configured');
    }

    if (plan.migrationImage) {
      const image = plan.migrationImage;
      await run.step('migrate', () => runMigration({ system, image, jobName: `opsflow-migrate-${shortHash(firstRunId)}` }),
        (r) => `job ${r.name} succeeded in ${Math.round(r.durationMs / 1000)} s`);
    } else run.skip('migrate', 'no deploy.migration configured');

    // From here on, every failure rolls back.
    rolledOut = true;
    const analysis = { ...plan.analysis, bakeSeconds: input.bakeSeconds ?? plan.analysis.bakeSeconds };
    const changeCause = `opsflow ${workflowId}${input.changeCause ? `: ${input.changeCause}` : ''}`;
    let measurements = 0;

    /** Measures every interval until `done()`; returns a rollback decision or none. */
    const measureUntil = async (done: () => boolean, deadline?: number): Promise<Decision> => {
      let failuresInARow = 0;
      let inconclusiveInARow = 0;
      let firstFailureAt: string | undefined;
      for (;;) {
        if (controls.abort) return { rollback: true, reason: `aborted by ${controls.abort}` };
        if (controls.pause) {
          const decision = await holdForHuman(`paused by ${controls.pause}`);
          if (decision) return decision;
          failuresInARow = inconclusiveInARow = 0;
        }
        const m = await analyze({ system, images });
        measurements++;
        record(status, m);
        if (m.failingPods.length > 0) {
          const pods = m.failingPods.map((p) => `${p.pod}: ${p.reason}`).join(', ');
          return { rollback: true, reason: `new pods fail to start (${pods})`, firstFailureAt: m.at };
        }
        if (m.verdict === 'fail') {
          firstFailureAt ??= m.at;
          if (++failuresInARow >= analysis.failureLimit) {
            return { rollback: true, reason: `analysis failed ${failuresInARow} times in a row: ${summarize(m)}`, firstFailureAt };
          }
        } else {
          failuresInARow = 0;
          firstFailureAt = undefined;
        }
        if (m.verdict === 'inconclusive' && ++inconclusiveInARow >= analysis.inconclusiveLimit) {
          controls.pause = 'analysis (inconclusive)';
          const decision = await holdForHuman(`${inconclusiveInARow} inconclusive measurements: ${summarize(m)}`);
          if (decision) return decision;
          inconclusiveInARow = 0;
        } else if (m.verdict !== 'inconclusive') inconclusiveInARow = 0;
        if (done() || (deadline !== undefined && Date.now() >= deadline)) return { rollback: false };
        const remaining = deadline === undefined ? analysis.intervalSeconds * 1000 : Math.min(analysis.intervalSeconds * 1000, deadline - Date.now());
        await condition(() => done() || Boolean(controls.abort) || Boolean(controls.pause), Math.max(remaining, 1));
      }
    };

    /** Pauses the Deployment and waits for `resume` (undefined) or `abort` (a rollback decision). */
    const holdForHuman = async (why: string): Promise<Decision | undefined> => {
      const previousPhase = run.status.phase;
      held = true;
      await setRolloutPaused({ system, paused: true });
      run.setPhase('paused');
      status.paused = { by: why, since: new Date().toISOString() };
      await condition(() => Boolean(controls.abort) || Boolean(controls.resume));
      status.paused = undefined;
      if (controls.abort) return { rollback: true, reason: `aborted by ${controls.abort} while paused (${why})` };
      await setRolloutPaused({ system, paused: false });
      held = false;
      controls.pause = controls.resume = undefined;
      run.setPhase(previousPhase);
      return undefined;
    };

    const rollout = await run.step('rollout', async () => {
      await setWorkloadImages({ system, workload: planned.workload.name, images, changeCause });
      // The watch runs beside the measurements; either can end the phase.
      let outcome: 'complete' | { stalled: string } | undefined;
      const watchScope = new CancellationScope();
      const watching = watchScope.run(async () => {
        for (;;) {
          try {
            await waitForRollout({ system, workload: planned.workload.name });
            outcome = 'complete';
            return;
          } catch (err) {
            if (isCancellation(err)) return;
            // Paused by us: wait for the resume and watch again.
            if (failureType(err) === 'RolloutPaused' && held) {
              await condition(() => !held || Boolean(controls.abort));
              if (controls.abort) return;
              continue;
            }
            outcome = { stalled: innermostMessage(err) };
            return;
          }
        }
      });
      const decision = await measureUntil(() => outcome !== undefined);
      watchScope.cancel();
      await watching;
      if (decision.rollback) return decision;
      if (outcome !== 'complete' && outcome !== undefined) {
        return { rollback: true, reason: `rollout stalled: ${outcome.stalled}`, firstFailureAt: new Date().toISOString() } as Decision;
      }
      return decision;
    }, (d) => (d.rollback ? `rolling back: ${d.reason}` : `rolled out after ${measurements} measurements`));
    if (rollout.rollback) await rollBack(rollout);

    let promotedBy: string | undefined;
    if (analysis.bakeSeconds > 0) {
      const bake = await run.step('bake', async () => {
        const deadline = Date.now() + analysis.bakeSeconds * 1000;
        return measureUntil(() => Boolean(controls.promote), deadline);
      }, (d) => (d.rollback ? `rolling back: ${d.reason}` : controls.promote ? `promoted by ${controls.promote}` : `healthy for ${analysis.bakeSeconds} s`));
      if (bake.rollback) await rollBack(bake);
      promotedBy = controls.promote;
    } else run.skip('bake', 'bakeSeconds is 0');

    await notify({ system, event: 'deployed', text: `${system}: deployed ${describeImages(images)} (${workflowId})`, details: { images, workflowId } }).catch(() => undefined);
    run.finish();
    return { images, previousImages: planned.previousImages, measurements, promotedBy, capacityWarning };
  } catch (err) {
    if (rolledOut && plan && !status.rollback) {
      // A cancelled or broken deploy does not leave a half-rolled-out workload behind.
      status.rollback = { reason: isCancellation(err) ? 'the deploy was cancelled' : innermostMessage(err), startedAt: new Date().toISOString() };
      await CancellationScope.nonCancellable(() => restorePrevious(run, system, plan!)).then(
        () => { status.rollback!.completedAt = new Date().toISOString(); },
        () => undefined, // recorded as a failed rollback step; the run reports its original error
      );
    }
    run.finish(err);
    if (failureType(err) !== 'RolledBack') {
      await CancellationScope.nonCancellable(() =>
        notify({ system, event: isCancellation(err) ? 'cancelled' : 'failed', text: `${system}: deploy of ${describeImages(images)} ${isCancellation(err) ? 'cancelled and rolled back' : `failed: ${run.status.error}`}`, details: { workflowId } }),
      ).catch(() => undefined);
    }
    failRun(err);
  }
}

/**
 * Rollback: the previous template back (idempotent), rolled out, and healthy.
 * Metrics lag (a rate over a window still holds the bad version's errors), so
 * the previous version gets a few intervals to measure healthy once.
 */
async function restorePrevious(run: RunTracker, system: string, plan: DeployPlan): Promise<void> {
  const status = run.status.deploy!;
  await run.step('rollback', async () => {
    await rollbackWorkload({ system, workload: plan.workload.name, toRevision: plan.previousRevision, previousImages: plan.previousImages });
    await waitForRollout({ system, workload: plan.workload.name });
    for (let attempt = 1; ; attempt++) {
      const m = await analyze({ system, images: plan.previousImages });
      record(status, m);
      // Inconclusive is no reason to distrust the version that ran before; a failure is.
      if (m.verdict !== 'fail') return m;
      if (attempt >= ROLLBACK_HEALTH_ATTEMPTS) {
        throw ApplicationFailure.nonRetryable(`rolled back, but the previous version is not healthy either: ${summarize(m)}`, 'RollbackUnhealthy');
      }
      await sleep(plan.analysis.intervalSeconds * 1000);
    }
  }, (m) => `back on ${describeImages(plan.previousImages)}, ${m.verdict === 'pass' ? 'healthy' : `nothing failing (${summarize(m)})`}`);
}

function record(status: DeployStatus, m: Measurement): void {
  const entry: DeployMeasurement = { at: m.at, verdict: m.verdict, summary: summarize(m), rollout: m.rollout.message };
  status.measurements.push(entry);
  if (status.measurements.length > 5) status.measurements.shift();
}

function summarize(m: Measurement): string {
  const parts = m.checks.map((c) => `${c.name} ${c.verdict}${c.detail ? ` (${c.detail})` : ''}`);
  if (m.failingPods.length) parts.push(`failing pods: ${m.failingPods.map((p) => `${p.pod} ${p.reason}`).join(', ')}`);
  return parts.join('; ') || 'no checks configured';
}

function describeImages(images: Record<string, string>): string {
  return Object.entries(images).map(([c, i]) => `${c}=${i}`).join(', ');
}

/** The failure type nearest the top of a cause chain (ActivityFailure → ApplicationFailure). */
function failureType(err: unknown): string | undefined {
  let e = err as { type?: string; cause?: unknown } | undefined;
  while (e) {
    if (e.type) return e.type;
    e = e.cause as typeof e;
  }
  return undefined;
}
