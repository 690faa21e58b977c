/**
 * Disaster recovery of a system from one backup set — replaces the runbooks'
 * disaster_recovery.sh, which nobody can safely re-run half way.
 *
 * Steps:
 *   1. find-backup, plan    the set (latest, latest-verified, a date, an ID), what
 *                           it holds, how old it is (RPO); dry run stops here
 *   2. approval             unless the input pre-approves
 *   3. stage <component>    all at once, each restored beside the live data and checked
 *                           against the manifest, while the application still runs
 *   4. scale-down           workloads to 0, their replicas remembered on them (skipped when
 *                           every component is inside a pod: those are restored while it runs)
 *   5. swap in <component>  configuration objects, files, database, Redis, SQLite
 *   6. scale-back, wait-ready
 *   7. restore in pods      components that live inside a pod, then a restart, its rollout waited out
 *   8. health               every configured check must pass
 *   9. switch-traffic       the configured webhook (DNS, load balancer), if any
 *  10. clean up            what staging left; the replaced database is kept renamed
 *
 * On failure or cancellation before the end, compensation puts the live
 * system back as it was: components swapped back, staged copies removed,
 * replicas restored. The result reports the set, RPO and measured RTO.
 * Workflow ID `recover/<system>`: one restore or recovery of a system at a time.
 */
import { ApplicationFailure, patched } from '@temporalio/workflow';
import { activities, change, quick, watch, watched } from './activityOptions.ts';
import { awaitApproval } from './approval.ts';
import { commitAll, planSetRestore, stageAll, swapInAll } from './recovery.ts';
import { inPod } from './restore.ts';
import { compensate, failRun, parseInput, RunTracker, runIdentity, type Compensation } from './run.ts';
import { disasterRecoveryInputSchema, type DisasterRecoveryInput, type SetRestoreResult } from './shared.ts';

// Each heartbeats while it runs: a worker that dies at any step is noticed within seconds.
const { recoveryWorkloads, recoveryHealth } = activities(watched(quick));
const { scaleWorkloadDown, scaleWorkloadBack, restartWorkload, switchTraffic } = activities(watched(change));
const { waitForPodsReady, waitForRollout } = activities(watched(watch));

/**
 * Runs recorded before this patch went from the restart straight to
 * wait-ready, which could pass on the old pods before the controller had
 * begun to replace them.
 */
const WAIT_FOR_RESTART = 'wait-for-restart';
/** Runs recorded before this patch scaled to 0 and back even when every component was inside a pod. */
const NO_SCALING_FOR_PODS_ONLY = 'no-scaling-for-pods-only';

export async function disasterRecovery(rawInput: DisasterRecoveryInput): Promise<SetRestoreResult> {
  const input = parseInput(disasterRecoveryInputSchema, rawInput);
  const { system } = input;
  const run = new RunTracker('disasterRecovery', system);
  const { workflowId, firstRunId, startTime } = runIdentity();
  const compensations: Compensation[] = [];
  try {
    const { manifest, components, plan } = await planSetRestore(run, input, inPod);
    const workloads = await run.step('workloads', () => recoveryWorkloads({ system }), (ws) => (ws.length ? ws.join(', ') : 'none configured: nothing to scale'));
    plan.workloads = workloads;
    if (input.dryRun) {
      run.finish();
      return { plan, dryRun: true };
    }
    const approvedBy = await awaitApproval(run, plan, input);

    const set = { system, setSystem: plan.from, manifest, tag: firstRunId };
    // Kubernetes objects last: workloads they create (new infrastructure) start with their data in place.
    const direct = [...components.filter((c) => !inPod(c) && c.kind !== 'kubernetes'), ...components.filter((c) => !inPod(c) && c.kind === 'kubernetes')];
    const throughPods = components.filter((c) => inPod(c));
    const restored = await stageAll(run, set, direct, compensations);

    // Components inside pods are restored while the pods run, then restarted: with nothing else, the app never stops (001's recovery).
    if (direct.length > 0 || !patched(NO_SCALING_FOR_PODS_ONLY)) {
      compensations.unshift({ name: 'scale back (compensation)', undo: () => scaleAllBack(workloads) });
      await run.step('scale-down', async () => {
        const absent: string[] = [];
        for (const workload of workloads) {
          if ((await scaleWorkloadDown({ system, workload, replicas: 0, owner: workflowId, absentOk: true })).absent) absent.push(workload);
        }
        return absent;
      }, (absent) => {
        const scaled = workloads.filter((w) => !absent.includes(w));
        return [scaled.length ? `${scaled.join(', ')} at 0` : '', absent.length ? `${absent.join(', ')} not there yet (new infrastructure)` : ''].filter(Boolean).join('; ');
      });

      await swapInAll(run, set, direct, compensations);
      await run.step('scale-back', () => scaleAllBack(workloads));
      await waitReady(run, workloads);
    } else {
      run.skip('scale-down', 'every component is inside a pod: restored there, then a restart');
    }

    if (throughPods.length) {
      Object.assign(restored, await stageAll(run, set, throughPods, compensations));
      await swapInAll(run, set, throughPods, compensations);
      await run.step('restart', async () => {
        for (const workload of workloads) await restartWorkload({ system, workload, at: new Date().toISOString() });
      });
      if (patched(WAIT_FOR_RESTART)) {
        await run.step('wait-rollout', async () => {
          for (const workload of workloads) await waitForRollout({ system, workload });
        }, () => `${workloads.join(', ')} rolled out`);
      }
      await waitReady(run, workloads);
    }

    const health = await run.step('health', async () => {
      const results = await recoveryHealth({ system });
      const failed = results.filter((r) => !r.ok);
      if (failed.length) throw ApplicationFailure.nonRetryable(`health checks failed after recovery: ${failed.map((f) => `${f.name}: ${f.detail}`).join('; ')}`, 'HealthCheckFailed');
      return results;
    }, (rs) => (rs.length ? rs.map((r) => `${r.name} ${r.detail}`).join(', ') : 'no checks configured'));

    const trafficSwitched = input.switchTraffic
      ? (await run.step('switch-traffic', () => switchTraffic({ system, backupId: manifest.backupId, workflowId }), (r) => (r.switched ? 'webhook called' : 'no webhook configured'))).switched
      : (run.skip('switch-traffic', 'not requested'), false);

    compensations.length = 0; // the recovered system is live and healthy: nothing to undo from here
    await commitAll(run, set, components);
    run.finish();
    const rtoSeconds = Math.round((Date.now() - startTime.getTime()) / 1000);
    return { plan, dryRun: false, approvedBy, restored, health, trafficSwitched, rtoSeconds, rpoSeconds: plan.rpoSeconds };
  } catch (err) {
    await compensate(run, compensations);
    run.finish(err);
    failRun(err);
  }

  async function scaleAllBack(workloads: string[]): Promise<void> {
    for (const workload of workloads) await scaleWorkloadBack({ system, workload, owner: workflowId, absentOk: true });
  }
}

async function waitReady(run: RunTracker, workloads: string[]): Promise<void> {
  const system = run.status.system;
  await run.step('wait-ready', async () => {
    for (const workload of workloads) await waitForPodsReady({ system, workload });
  }, () => `${workloads.join(', ')} Ready`);
}
