/**
 * Activity option presets. Peers that are down get retries with exponential
 * backoff, then a clear failure; errors that retrying cannot fix (bad input,
 * auth, integrity) are not retried at all.
 */
import { ActivityCancellationType, proxyActivities, proxyLocalActivities, type ActivityOptions } from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';
import { NON_RETRYABLE_TYPES } from '../src/errors.ts';

const nonRetryableErrorTypes = [...NON_RETRYABLE_TYPES];

/** Quick checks and catalog reads: a few tries over ~15 s, so a dead peer fails fast. */
export const quick: ActivityOptions = {
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '8s', maximumAttempts: 4, nonRetryableErrorTypes },
};

/** Small changes to a peer (rename, create, drop): idempotent, retried a little longer. */
export const change: ActivityOptions = {
  startToCloseTimeout: '2m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 6, nonRetryableErrorTypes },
};

/**
 * Streaming transfers: hours allowed, but a silent worker is noticed within
 * 15 s. On cancellation the workflow waits for the activity's own cleanup
 * (abort the upload, kill pg_dump), so "cancelled" means nothing is left.
 */
export const transfer: ActivityOptions = {
  startToCloseTimeout: '12h',
  heartbeatTimeout: '15s',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 5, nonRetryableErrorTypes },
};

/**
 * Waits on the cluster (rollouts, pods Ready, Jobs): as long as the wait's own
 * deadline allows, heartbeating so a dead worker is noticed within 20 s, and
 * cancelled cleanly (the watch is closed before the workflow moves on).
 */
export const watch: ActivityOptions = {
  startToCloseTimeout: '2h',
  heartbeatTimeout: '20s',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10, nonRetryableErrorTypes },
};

/**
 * For activities that heartbeat while they run (activities/progress.ts):
 * a worker that dies mid-call is noticed within 10 s instead of at the
 * start-to-close timeout. Recovery runs its steps this way, so a crash at
 * any step costs seconds.
 */
export function watched(options: ActivityOptions): ActivityOptions {
  return { ...options, heartbeatTimeout: '10s' };
}

export function activities(options: ActivityOptions) {
  return proxyActivities<Activities>(options);
}

/**
 * The same activities run as local activities: on the worker that runs the
 * workflow, with no task scheduled through the server. For steps of a few
 * milliseconds (a catalog read, an existence check, a rename), where that
 * round trip (about 20 ms each) is most of the step's time. A crash re-runs
 * one from the start, so it must be idempotent, as these are.
 */
export function localActivities(options: ActivityOptions) {
  const { startToCloseTimeout, retry } = options;
  return proxyLocalActivities<Activities>({ startToCloseTimeout, retry });
}
