/**
 * Turns opsflow errors into Temporal failures at the activity boundary: the
 * error's type becomes the failure type, its `retryable` flag decides whether
 * Temporal retries, and every message is redacted before it enters history.
 */
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import { OpsflowError } from '../src/errors.ts';
import { redact } from '../src/secrets.ts';

export function toFailure(err: unknown): unknown {
  if (err instanceof ApplicationFailure || err instanceof CancelledFailure) return err;
  // Whatever broke while we were being cancelled (a killed pg_dump, an
  // aborted upload) is the cancellation: report it as one.
  const signal = Context.current().cancellationSignal;
  if (signal.aborted) return signal.reason instanceof CancelledFailure ? signal.reason : new CancelledFailure('activity cancelled');
  if (err instanceof OpsflowError) {
    return ApplicationFailure.create({ type: err.type, message: redact(err.message), nonRetryable: !err.retryable });
  }
  const e = err as Error;
  return ApplicationFailure.create({ type: e?.name ?? 'Error', message: redact(e?.message ?? String(err)), nonRetryable: false });
}

/** Wraps every function of an activity object with `toFailure`. */
export function withFailureMapping<T extends Record<string, (...args: never[]) => Promise<unknown>>>(activities: T): T {
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(activities)) {
    wrapped[name] = async (...args: never[]) => {
      try {
        return await fn(...args);
      } catch (err) {
        throw toFailure(err);
      }
    };
  }
  return wrapped as T;
}
