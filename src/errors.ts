/**
 * opsflow's small vocabulary of errors. Adapters and config throw these; the
 * activity layer turns them into Temporal failures (see activities/failures.ts),
 * and the CLI and HTTP edge print them. Every message is safe to log: callers
 * pass text through `redact` before it gets here.
 */

export class OpsflowError extends Error {
  /** A stable machine-readable type, also used as the Temporal failure type. */
  readonly type: string;
  /** Whether trying again can help (a peer that is down) or not (bad input). */
  readonly retryable: boolean;

  constructor(type: string, message: string, options: { retryable: boolean; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = type;
    this.type = type;
    this.retryable = options.retryable;
  }
}

/** The config file is missing, unreadable or does not match the schema. */
export class ConfigError extends OpsflowError {
  constructor(message: string, cause?: unknown) {
    super('ConfigError', message, { retryable: false, cause });
  }
}

/** Input from the CLI, UI, SDK or a webhook is invalid; names the field. */
export class InvalidInputError extends OpsflowError {
  constructor(message: string) {
    super('InvalidInput', message, { retryable: false });
  }
}

/** A named thing (system, backup, database) does not exist. */
export class NotFoundError extends OpsflowError {
  constructor(message: string) {
    super('NotFound', message, { retryable: false });
  }
}

/** A peer could not be reached or answered with a transient error. */
export class PeerUnavailableError extends OpsflowError {
  constructor(message: string, cause?: unknown) {
    super('PeerUnavailable', message, { retryable: true, cause });
  }
}

/** A peer refused us for a reason that waiting will not fix (auth, permissions). */
export class PeerRejectedError extends OpsflowError {
  constructor(message: string, cause?: unknown) {
    super('PeerRejected', message, { retryable: false, cause });
  }
}

/** A command (in a pod) ran and exited non-zero. Not retried: running it again would most likely fail the same way. */
export class CommandFailedError extends PeerRejectedError {
  constructor(
    message: string,
    readonly exitCode: number,
    /** The last STDERR_TAIL_BYTES of stderr, redacted. */
    readonly stderrTail: string,
  ) {
    super(message);
  }
}

/** Data did not match what was recorded (checksum, size, row counts). */
export class IntegrityError extends OpsflowError {
  constructor(message: string) {
    super('IntegrityError', message, { retryable: false });
  }
}

/** The target is in a state that makes the step unsafe (e.g. `<db>_old` exists). */
export class ConflictError extends OpsflowError {
  constructor(message: string) {
    super('Conflict', message, { retryable: false });
  }
}

/**
 * Something in the cluster that will not finish on its own: a stalled or
 * paused rollout, pods not Ready within their time, a Job that failed.
 */
export class RolloutError extends OpsflowError {
  constructor(type: 'RolloutStalled' | 'RolloutPaused' | 'PodsNotReady' | 'JobFailed', message: string) {
    super(type, message, { retryable: false });
  }
}

/** Failure types that retrying cannot fix; workflows list them as non-retryable. */
export const NON_RETRYABLE_TYPES = [
  'ConfigError',
  'InvalidInput',
  'NotFound',
  'PeerRejected',
  'IntegrityError',
  'Conflict',
  'RolloutStalled',
  'RolloutPaused',
  'PodsNotReady',
  'JobFailed',
] as const;

/** The innermost message of a cause chain (WorkflowFailed → ActivityFailure → ApplicationFailure), where the reason is. */
export function innermostMessage(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  while (e && e.cause && typeof e.cause === 'object') e = e.cause as typeof e;
  return e?.message ?? String(err);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
