/**
 * A maintenance window for a system (003's maintenance windows, and the
 * "scale the app down before and up after" around manual work):
 *
 *   1. check-workloads  every configured workload exists; their replica counts
 *   2. scale-down       (with `scaleTo`) each workload to `scaleTo`, the count
 *                       it had recorded on the workload and in the status
 *   3. window           open until `durationSeconds` pass or `end` is called
 *   4. scale-back       each workload to the count it had
 *   5. wait-ready       every pod Ready within the system's readyTimeoutSeconds
 *
 * A failure or cancel after step 2 began still scales every workload back.
 * The workflow ID `maintenance/<system>` allows one window per system.
 */
import { condition, setHandler } from '@temporalio/workflow';
import { activities, change, quick, watch } from './activityOptions.ts';
import { compensate, failRun, parseInput, RunTracker, runIdentity, type Compensation } from './run.ts';
import {
  endMaintenanceUpdate,
  maintenanceInputSchema,
  type ApprovalInput,
  type MaintenanceInput,
  type MaintenanceResult,
  type MaintenanceWindow,
} from './shared.ts';

const { describeWorkloads } = activities(quick);
const { scaleWorkloadDown, scaleWorkloadBack } = activities(change);
const { waitForPodsReady } = activities(watch);

export async function maintenance(rawInput: MaintenanceInput): Promise<MaintenanceResult> {
  const input = parseInput(maintenanceInputSchema, rawInput);
  const { system } = input;
  const run = new RunTracker('maintenance', system);
  const { workflowId } = runIdentity();
  const compensations: Compensation[] = [];

  let endedBy: string | undefined;
  setHandler(endMaintenanceUpdate, (by) => { endedBy = by.by; return { ended: true } as const; }, {
    validator: (by: ApprovalInput) => {
      if (run.status.phase !== 'window') throw new Error(`the window is not open (phase: ${run.status.phase})`);
      if (typeof by?.by !== 'string' || by.by.trim() === '') throw new Error('by: required (who ends the window, for the audit trail)');
    },
  });

  try {
    const workloads = await run.step('check-workloads', () => describeWorkloads({ system }),
      (ws) => ws.map((w) => `${w.kind}/${w.name} ${w.replicas} replicas`).join(', '));

    const scaledDown: Record<string, number> = {};
    if (input.scaleTo === undefined) {
      run.skip('scale-down', 'no scaleTo in the input: the application keeps running');
    } else {
      const scaleTo = input.scaleTo;
      // Registered first: a scale that happened but whose result was lost is
      // still put back (scaleWorkloadBack reads the count from the workload).
      compensations.unshift({ name: 'scale-back', undo: () => scaleBackAll(system, workloads.map((w) => w.name), workflowId) });
      await run.step('scale-down', async () => {
        for (const w of workloads) scaledDown[w.name] = (await scaleWorkloadDown({ system, workload: w.name, replicas: scaleTo, owner: workflowId })).previous;
      }, () => Object.entries(scaledDown).map(([name, n]) => `${name} ${n} → ${scaleTo}`).join(', '));
    }

    const opensAt = new Date();
    const window: MaintenanceWindow = {
      reason: input.reason,
      opensAt: opensAt.toISOString(),
      endsAt: new Date(opensAt.getTime() + input.durationSeconds * 1000).toISOString(),
      scaledDown,
    };
    run.status.window = window;
    await run.step('window', async () => {
      const ended = await condition(() => endedBy !== undefined, input.durationSeconds * 1000);
      return ended ? endedBy! : 'timer';
    }, (by) => (by === 'timer' ? `closed after ${input.durationSeconds} s` : `ended early by ${by}`));

    const readyAfter: Record<string, number> = {};
    if (input.scaleTo !== undefined) {
      compensations.length = 0; // from here the forward path is the scale-back
      await run.step('scale-back', () => scaleBackAll(system, workloads.map((w) => w.name), workflowId));
      await run.step('wait-ready', async () => {
        for (const w of workloads) readyAfter[w.name] = (await waitForPodsReady({ system, workload: w.name })).ready;
      }, () => Object.entries(readyAfter).map(([name, n]) => `${name} ${n} Ready`).join(', '));
    }

    run.status.window = undefined;
    run.finish();
    return { window, endedBy: endedBy ?? 'timer', readyAfter };
  } catch (err) {
    await compensate(run, compensations);
    run.finish(err);
    failRun(err);
  }
}

async function scaleBackAll(system: string, names: string[], owner: string): Promise<void> {
  for (const workload of names) await scaleWorkloadBack({ system, workload, owner });
}

