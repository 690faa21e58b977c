/**
 * What every procedure does the same way: validate the input into a
 * non-retryable failure that names the field, keep a `status` the `status`
 * query returns, mirror the phase into search attributes, and run named steps.
 */
import { ApplicationFailure, CancellationScope, isCancellation, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { z } from 'zod';
import { formatIssues, readableErrors } from '../src/domain/validation.ts';
import { innermostMessage as failureMessage } from '../src/errors.ts';
import { searchAttributes, statusQuery, type RunStatus, type StepStatus } from './shared.ts';

/** Parses workflow input; a bad input fails the run at once, naming the field. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input ?? {}, readableErrors);
  if (!result.success) {
    const message = formatIssues(result.error, 'input');
    throw ApplicationFailure.nonRetryable(`invalid input: ${message}`, 'InvalidInput');
  }
  return result.data;
}

function now(): string {
  // Workflow time: deterministic on replay.
  return new Date().toISOString();
}

export class RunTracker {
  readonly status: RunStatus;

  constructor(procedure: RunStatus['procedure'], system: string) {
    this.status = { procedure, system, phase: 'starting', steps: [] };
    setHandler(statusQuery, () => this.status);
    upsertSearchAttributes([
      { key: searchAttributes.system, value: system },
      { key: searchAttributes.procedure, value: procedure },
      { key: searchAttributes.phase, value: 'starting' },
    ]);
  }

  setPhase(phase: string): void {
    this.status.phase = phase;
    upsertSearchAttributes([{ key: searchAttributes.phase, value: phase }]);
  }

  /** Runs one named step, recording its start, end and outcome. */
  async step<T>(name: string, fn: () => Promise<T>, describe?: (result: T) => string): Promise<T> {
    this.setPhase(name);
    const step: StepStatus = { name, state: 'running', startedAt: now() };
    this.status.steps.push(step);
    try {
      const result = await fn();
      step.state = 'done';
      step.endedAt = now();
      if (describe) step.detail = describe(result);
      return result;
    } catch (err) {
      step.state = 'failed';
      step.endedAt = now();
      step.detail = isCancellation(err) ? 'cancelled' : failureMessage(err);
      throw err;
    }
  }

  /** Records a step that was deliberately not run. */
  skip(name: string, why: string): void {
    this.status.steps.push({ name, state: 'skipped', startedAt: now(), endedAt: now(), detail: why });
  }

  /** Marks the end: phase `done`, `failed` or `cancelled`. */
  finish(err?: unknown): void {
    if (err === undefined) return this.setPhase('done');
    this.status.error = failureMessage(err);
    this.setPhase(isCancellation(err) ? 'cancelled' : 'failed');
  }
}

/** The workflow's own ID, used to derive names of things it creates. */
export function runIdentity(): { workflowId: string; firstRunId: string; startTime: Date } {
  const info = workflowInfo();
  return { workflowId: info.workflowId, firstRunId: info.firstExecutionRunId, startTime: info.startTime };
}

/** Wraps an error as a non-retryable workflow failure, keeping its message and type. */
export function failRun(err: unknown): never {
  if (isCancellation(err)) throw err;
  const type = (err as { cause?: { type?: string } }).cause?.type ?? (err as { type?: string }).type ?? 'ProcedureFailed';
  throw ApplicationFailure.create({ message: failureMessage(err), type, nonRetryable: true, cause: err as Error });
}

/** A step that undoes an earlier one when the run fails or is cancelled. */
export interface Compensation {
  name: string;
  undo: () => Promise<unknown>;
}

/**
 * Runs the compensations in the order given (callers keep the newest first),
 * shielded from cancellation, each recorded as a step. One that fails is
 * recorded and the rest still run; the run reports its original error.
 */
export async function compensate(run: RunTracker, compensations: Compensation[]): Promise<void> {
  await CancellationScope.nonCancellable(async () => {
    for (const c of compensations) {
      await run.step(c.name, c.undo).then(
        () => { run.status.steps.at(-1)!.state = 'compensated'; },
        () => undefined,
      );
    }
  });
}
