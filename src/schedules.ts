/**
 * The config's `schedules` kept as Temporal Schedules (`opsflow schedules
 * apply`): the replacement for the runbooks' crontab.
 *
 * Each configured schedule becomes the Temporal Schedule `opsflow/<name>`,
 * which starts the workflow `<procedure>` on the config's task queue, on the
 * configured cron expressions (in `timezone`), never two runs of it at once
 * (overlap SKIP), and starting runs missed while Temporal was down if they are
 * at most `catchupWindowMinutes` late.
 *
 * Ownership: schedules opsflow creates carry the memo `{ managedBy: 'opsflow' }`.
 * `applySchedules` creates what is missing, updates what changed, deletes the
 * managed schedules of its task queue that the config no longer has, and never
 * touches a schedule without that memo (an `opsflow/<name>` schedule made by
 * hand is a conflict: nothing is changed and the error names it).
 *
 * Change detection: Temporal cannot update a schedule's own memo, so the hash
 * of what opsflow configured (`specHash`) is kept in the memo of the schedule's
 * action (its started workflows carry it too, with the schedule's name), which
 * every update rewrites. The configured `paused` flag is applied on create and
 * when it changes in the config; otherwise a pause or unpause made with
 * `opsflow schedules pause|unpause` is left as it is.
 */
import { createHash } from 'node:crypto';
import {
  ScheduleNotFoundError,
  type Client,
  type ScheduleDescription,
  type ScheduleHandle,
  type ScheduleOptions,
  type ScheduleOptionsStartWorkflowAction,
  type Workflow,
} from '@temporalio/client';
import type { Config, ScheduleConfig } from './config.ts';
import { ConflictError, NotFoundError } from './errors.ts';
import { searchAttributes } from '../workflows/shared.ts';

export const SCHEDULE_ID_PREFIX = 'opsflow/';
export const MANAGED_BY = 'opsflow';
/** Key of the action memo that records what opsflow configured. */
export const ACTION_MEMO_KEY = 'opsflowSchedule';

export interface ActionMemo {
  /** The schedule's name in the config. */
  name: string;
  /** Hash of everything configured except `paused`. */
  specHash: string;
  /** The config's `paused` when it was last applied. */
  paused: boolean;
  cron: string[];
  timezone: string;
}

export interface ApplySummary {
  created: string[];
  updated: string[];
  deleted: string[];
  unchanged: string[];
}

export function scheduleId(name: string): string {
  return name.startsWith(SCHEDULE_ID_PREFIX) ? name : `${SCHEDULE_ID_PREFIX}${name}`;
}

/**
 * Workflow ID of the runs a schedule starts (Temporal appends the scheduled
 * time). Not the procedures' usual lock IDs (`drill/<system>`,
 * `retention/<system>`): a schedule's IDs always get a time appended; overlap
 * SKIP keeps a schedule from running beside itself.
 */
export function scheduledWorkflowId(schedule: Pick<ScheduleConfig, 'procedure' | 'system' | 'name'>): string {
  return `${schedule.procedure}/${schedule.system}/scheduled/${schedule.name}`;
}

/** The workflow input a scheduled run gets. */
export function scheduledInput(schedule: Pick<ScheduleConfig, 'procedure' | 'system'>): Record<string, unknown> {
  switch (schedule.procedure) {
    case 'verify':
      return { system: schedule.system, backup: 'latest' };
    case 'backup':
    case 'drill':
    case 'retention':
      return { system: schedule.system };
  }
}

interface Desired {
  name: string;
  id: string;
  config: ScheduleConfig;
  memo: ActionMemo;
  options: ScheduleOptions<ScheduleOptionsStartWorkflowAction<Workflow>>;
}

function desiredSchedule(schedule: ScheduleConfig, taskQueue: string): Desired {
  const id = scheduleId(schedule.name);
  const input = scheduledInput(schedule);
  const workflowId = scheduledWorkflowId(schedule);
  const catchupWindowMinutes = schedule.catchupWindowMinutes;
  const specHash = createHash('sha256')
    .update(JSON.stringify({
      v: 1,
      procedure: schedule.procedure,
      system: schedule.system,
      input,
      workflowId,
      taskQueue,
      cron: schedule.cron,
      timezone: schedule.timezone,
      catchupWindowMinutes,
      overlap: 'SKIP',
    }))
    .digest('hex')
    .slice(0, 16);
  const memo: ActionMemo = { name: schedule.name, specHash, paused: schedule.paused, cron: schedule.cron, timezone: schedule.timezone };
  return {
    name: schedule.name,
    id,
    config: schedule,
    memo,
    options: {
      scheduleId: id,
      spec: { cronExpressions: schedule.cron, timezone: schedule.timezone },
      action: {
        type: 'startWorkflow',
        workflowType: schedule.procedure,
        taskQueue,
        workflowId,
        args: [input],
        memo: { [ACTION_MEMO_KEY]: memo },
        typedSearchAttributes: [
          { key: searchAttributes.system, value: schedule.system },
          { key: searchAttributes.procedure, value: schedule.procedure },
        ],
      },
      policies: { overlap: 'SKIP', catchupWindow: catchupWindowMinutes * 60_000 },
      memo: { managedBy: MANAGED_BY },
      state: { paused: schedule.paused, note: schedule.paused ? 'paused in the opsflow config' : undefined },
    },
  };
}

export function isManaged(memo: Record<string, unknown> | undefined): boolean {
  return memo?.managedBy === MANAGED_BY;
}

export function actionMemoOf(description: Pick<ScheduleDescription, 'action'>): ActionMemo | undefined {
  const memo = description.action.memo?.[ACTION_MEMO_KEY];
  return memo && typeof memo === 'object' ? (memo as ActionMemo) : undefined;
}

async function describeIfExists(handle: ScheduleHandle): Promise<ScheduleDescription | undefined> {
  try {
    return await handle.describe();
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) return undefined;
    throw err;
  }
}

/**
 * Makes the namespace's opsflow schedules match the config. Plans first and
 * changes nothing when a configured ID is taken by a schedule opsflow does not
 * manage. `dryRun` reports the plan only. Deletion only considers managed
 * schedules on `taskQueue` (the config's, or the effective one the caller
 * passes): configs on other task queues keep theirs.
 */
export async function applySchedules(
  client: Client,
  config: Config,
  options: { taskQueue?: string; dryRun?: boolean } = {},
): Promise<ApplySummary> {
  const taskQueue = options.taskQueue ?? config.temporal.taskQueue;
  const desired = config.schedules.map((s) => desiredSchedule(s, taskQueue));
  const summary: ApplySummary = { created: [], updated: [], deleted: [], unchanged: [] };

  // Plan, with descriptions (consistent), not the list (visibility, eventually consistent).
  const plan: { desired: Desired; current?: ScheduleDescription; change: 'create' | 'update' | 'none' }[] = [];
  const conflicts: string[] = [];
  for (const d of desired) {
    const current = await describeIfExists(client.schedule.getHandle(d.id));
    if (!current) {
      plan.push({ desired: d, change: 'create' });
      continue;
    }
    if (!isManaged(current.memo)) {
      conflicts.push(d.id);
      continue;
    }
    const memo = actionMemoOf(current);
    const same = memo?.specHash === d.memo.specHash && memo.paused === d.memo.paused;
    plan.push({ desired: d, current, change: same ? 'none' : 'update' });
  }
  if (conflicts.length) {
    throw new ConflictError(
      `schedule ${conflicts.join(', ')} exists but was not created by opsflow (no memo managedBy: opsflow); rename the config's schedule or delete that one first. Nothing was changed.`,
    );
  }

  const wanted = new Set(desired.map((d) => d.id));
  const obsolete: ScheduleHandle[] = [];
  for await (const summaryEntry of client.schedule.list()) {
    if (!summaryEntry.scheduleId.startsWith(SCHEDULE_ID_PREFIX) || wanted.has(summaryEntry.scheduleId)) continue;
    const handle = client.schedule.getHandle(summaryEntry.scheduleId);
    const current = await describeIfExists(handle); // the list may lag: confirm it exists and is ours
    if (!current || !isManaged(current.memo) || current.action.taskQueue !== taskQueue) continue;
    obsolete.push(handle);
  }

  for (const step of plan) {
    const { desired: d } = step;
    if (step.change === 'none') {
      summary.unchanged.push(d.name);
      continue;
    }
    if (step.change === 'create') {
      if (!options.dryRun) await client.schedule.create(d.options);
      summary.created.push(d.name);
      continue;
    }
    if (!options.dryRun) {
      const pausedInConfigChanged = actionMemoOf(step.current!)?.paused !== d.memo.paused;
      await client.schedule.getHandle(d.id).update((previous) => ({
        spec: d.options.spec,
        action: d.options.action,
        policies: d.options.policies,
        state: pausedInConfigChanged
          ? { paused: d.config.paused, note: d.config.paused ? 'paused in the opsflow config' : 'unpaused in the opsflow config', remainingActions: previous.state.remainingActions }
          : { paused: previous.state.paused, note: previous.state.note, remainingActions: previous.state.remainingActions },
      }));
    }
    summary.updated.push(d.name);
  }

  for (const handle of obsolete) {
    if (!options.dryRun) {
      try {
        await handle.delete();
      } catch (err) {
        if (!(err instanceof ScheduleNotFoundError)) throw err;
      }
    }
    summary.deleted.push(handle.scheduleId.slice(SCHEDULE_ID_PREFIX.length));
  }
  return summary;
}

export interface ScheduleListing {
  id: string;
  name: string;
  procedure: string;
  system?: string;
  cron?: string[];
  timezone?: string;
  paused: boolean;
  note?: string;
  managed: boolean;
  nextRun?: Date;
  lastRun?: { at: Date; workflowId: string };
}

/** The namespace's `opsflow/…` schedules (managed or not), by ID. */
export async function listSchedules(client: Client): Promise<ScheduleListing[]> {
  const out: ScheduleListing[] = [];
  for await (const entry of client.schedule.list()) {
    if (!entry.scheduleId.startsWith(SCHEDULE_ID_PREFIX)) continue;
    const d = await describeIfExists(client.schedule.getHandle(entry.scheduleId));
    if (!d) continue;
    const memo = actionMemoOf(d);
    const input = d.action.args?.[0] as { system?: string } | undefined;
    const last = d.info.recentActions.at(-1);
    out.push({
      id: d.scheduleId,
      name: d.scheduleId.slice(SCHEDULE_ID_PREFIX.length),
      procedure: d.action.workflowType,
      system: input?.system,
      cron: memo?.cron,
      timezone: memo?.timezone,
      paused: d.state.paused,
      note: d.state.note,
      managed: isManaged(d.memo),
      nextRun: d.info.nextActionTimes[0],
      lastRun: last ? { at: last.takenAt, workflowId: last.action.workflow.workflowId } : undefined,
    });
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : 1));
}

/** A schedule by its config name (or full ID); NotFound when it does not exist. */
export async function scheduleHandle(client: Client, name: string): Promise<ScheduleHandle> {
  const handle = client.schedule.getHandle(scheduleId(name));
  if (!(await describeIfExists(handle))) throw new NotFoundError(`no schedule ${scheduleId(name)} (see opsflow schedules list; create it with opsflow schedules apply)`);
  return handle;
}
