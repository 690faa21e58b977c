/**
 * One-off Jobs (a migration, a backfill) run to the end and judged by the
 * Job controller's own verdict: condition Complete or Failed. `run` is
 * idempotent by name: a retry after a worker crash finds the Job the first
 * attempt created and waits on it, so the command never runs twice. A failure
 * says why, with the tail of the failed pod's log, because "Job failed"
 * alone sends someone to kubectl.
 */
import {
  BatchV1Api,
  CoreV1Api,
  type KubeConfig,
  type V1EnvVar,
  type V1Job,
  type V1JobCondition,
  type V1Pod,
  type V1Toleration,
} from '@kubernetes/client-node';
import { ConflictError, InvalidInputError, NotFoundError, PeerUnavailableError, RolloutError } from '../../errors.ts';
import { imageReferenceProblem } from '../../domain/image.ts';
import { redact } from '../../secrets.ts';
import { toKubernetesError, watchUntil } from './client.ts';

export interface JobSpec {
  namespace: string;
  /** Also the retry key: the same name finds the same Job. A DNS label (it becomes a pod label value). */
  name: string;
  image: string;
  command: string[];
  /** Name of the Job's one container; default "job". */
  container?: string;
  /** Literal values or references (`valueFrom.secretKeyRef`): put secrets in a Secret, never here. */
  env?: V1EnvVar[];
  serviceAccountName?: string;
  /** Failed pods tolerated before the Job fails; default 0: a failed migration is not re-run blindly. */
  backoffLimit?: number;
  /** The Job fails (DeadlineExceeded) after this long, however many retries are left. */
  activeDeadlineSeconds?: number;
  nodeSelector?: Record<string, string>;
  tolerations?: V1Toleration[];
  /** Extra labels on the Job and its pods. */
  labels?: Record<string, string>;
}

export interface JobProgress {
  active: number;
  succeeded: number;
  failed: number;
}

export interface JobResult {
  namespace: string;
  name: string;
  succeeded: number;
  /** From the Job's own start and completion times, so a retry reports the same figure. */
  durationMs: number;
}

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
const DEFAULT_CONTAINER = 'job';
const LOG_TAIL_LINES = 50;
const LOG_TAIL_BYTES = 4 * 1024;
/** Upper bound on what one log read brings back; only the last LOG_TAIL_BYTES of it are kept. */
const LOG_READ_LIMIT_BYTES = 256 * 1024;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

const describe = (namespace: string, name: string) => `job ${namespace}/${name}`;

export class Jobs {
  private readonly batch: BatchV1Api;
  private readonly core: CoreV1Api;

  constructor(private readonly kc: KubeConfig) {
    this.batch = kc.makeApiClient(BatchV1Api);
    this.core = kc.makeApiClient(CoreV1Api);
  }

  /**
   * Creates the Job unless one of that name exists, then waits for the Job
   * controller's verdict. An existing Job with the same image and command is
   * this run's own (an earlier attempt's): it is waited on, not duplicated,
   * and if it already finished its result comes back at once. One with a
   * different image or command is someone else's: Conflict.
   *
   * Resolves on Complete; rejects with RolloutError('JobFailed') on Failed.
   * `signal` stops the wait only: the Job keeps running (`delete` stops it).
   */
  async run(spec: JobSpec, options: { signal?: AbortSignal; onStatus?: (p: JobProgress) => void } = {}): Promise<JobResult> {
    checkSpec(spec);
    options.signal?.throwIfAborted();
    const { namespace, name } = spec;
    const what = describe(namespace, name);
    const job = await this.createOrAdopt(spec);
    const uid = job.metadata?.uid;

    const verdict = await watchUntil<V1Job, { job: V1Job; failed?: V1JobCondition }>(this.kc, {
      what,
      path: `/apis/batch/v1/namespaces/${namespace}/jobs`,
      fieldSelector: `metadata.name=${name}`,
      list: async () => {
        try {
          const list = await this.batch.listNamespacedJob({ namespace, fieldSelector: `metadata.name=${name}` });
          return { items: list.items, resourceVersion: list.metadata?.resourceVersion };
        } catch (err) {
          throw toKubernetesError(err, `cannot read ${what}`);
        }
      },
      judge: ([current]) => {
        if (!current) throw new NotFoundError(`${what} was deleted while opsflow waited for it`);
        if (current.metadata?.uid !== uid) throw new ConflictError(`${what} was replaced by another Job of the same name while opsflow waited for it`);
        const s = current.status;
        options.onStatus?.({ active: s?.active ?? 0, succeeded: s?.succeeded ?? 0, failed: s?.failed ?? 0 });
        if (conditionTrue(current, 'Complete')) return { job: current };
        const failed = conditionTrue(current, 'Failed');
        if (failed) return { job: current, failed };
        return undefined;
      },
      signal: options.signal,
    });

    if (verdict.failed) throw await this.failure(verdict.job, verdict.failed, spec.container ?? DEFAULT_CONTAINER);
    const status = verdict.job.status;
    const start = timeOf(status?.startTime);
    const end = timeOf(status?.completionTime);
    return { namespace, name, succeeded: status?.succeeded ?? 0, durationMs: start !== undefined && end !== undefined ? end - start : 0 };
  }

  /** Deletes the Job and, in the background, its pods. Deleting a Job that is gone is not an error. */
  async delete(namespace: string, name: string): Promise<{ deleted: boolean }> {
    try {
      await this.batch.deleteNamespacedJob({ namespace, name, propagationPolicy: 'Background' });
      return { deleted: true };
    } catch (err) {
      const e = toKubernetesError(err, `cannot delete ${describe(namespace, name)}`);
      if (e instanceof NotFoundError) return { deleted: false };
      throw e;
    }
  }

  /** Create first (one call when all is well); on AlreadyExists, decide whether the Job found is ours. */
  private async createOrAdopt(spec: JobSpec): Promise<V1Job> {
    const { namespace, name } = spec;
    const what = describe(namespace, name);
    try {
      return await this.batch.createNamespacedJob({ namespace, body: manifest(spec) });
    } catch (err) {
      if ((err as { code?: number }).code !== 409) throw toKubernetesError(err, `cannot create ${what}`);
    }
    let existing: V1Job;
    try {
      existing = await this.batch.readNamespacedJob({ namespace, name });
    } catch (err) {
      // Deleted between our create and this read: a retry will create it.
      throw toKubernetesError(err, `cannot read existing ${what}`);
    }
    if (existing.metadata?.deletionTimestamp) {
      throw new PeerUnavailableError(`${what} exists but is being deleted; try again once it is gone`);
    }
    const container = existing.spec?.template.spec?.containers.find((c) => c.name === (spec.container ?? DEFAULT_CONTAINER));
    if (!container) {
      const has = (existing.spec?.template.spec?.containers ?? []).map((c) => c.name).join(', ');
      throw new ConflictError(`${what} already exists with other containers (${has}), not the one this run would create; delete it or choose another name`);
    }
    if (container.image !== spec.image) {
      throw new ConflictError(`${what} already exists with image "${container.image}", not "${spec.image}"; delete it or choose another name`);
    }
    // The command may carry arguments worth keeping out of messages: say only that it differs.
    if (JSON.stringify(container.command ?? []) !== JSON.stringify(spec.command) || (container.args?.length ?? 0) > 0) {
      throw new ConflictError(`${what} already exists with a different command; delete it or choose another name`);
    }
    return existing;
  }

  /** JobFailed with the controller's reason and what the failed pod said last. */
  private async failure(job: V1Job, failed: V1JobCondition, container: string): Promise<RolloutError> {
    const namespace = job.metadata?.namespace ?? '';
    const name = job.metadata?.name ?? '';
    const why = [failed.reason, failed.message].filter(Boolean).join(': ') || 'no reason given';
    let message = `${describe(namespace, name)} failed (${why})`;
    const pod = await this.lastFailedPod(job).catch(() => undefined);
    if (!pod) {
      message += '; no pod of it is left to read logs from';
    } else {
      const podName = pod.metadata?.name ?? '';
      const terminated = pod.status?.containerStatuses?.find((c) => c.name === container)?.state?.terminated;
      if (terminated) {
        const detail = [terminated.reason, terminated.message?.trim().slice(0, 500)].filter(Boolean).join(': ');
        message += `; pod ${podName} container "${container}" exited with code ${terminated.exitCode}${detail ? ` (${detail})` : ''}`;
      } else {
        message += `; pod ${podName} (${pod.status?.phase ?? 'unknown phase'})`;
      }
      message += await this.logTail(namespace, podName, container).then(
        (tail) => (tail ? `; last log lines:\n${tail}` : '; its log is empty'),
        (err: Error) => `; its log could not be read (${err.message})`,
      );
    }
    return new RolloutError('JobFailed', redact(message));
  }

  /** The Job's pods are labelled with its uid, so an older Job of the same name cannot be mistaken for it. */
  private async lastFailedPod(job: V1Job): Promise<V1Pod | undefined> {
    const list = await this.core.listNamespacedPod({
      namespace: job.metadata?.namespace ?? '',
      labelSelector: `batch.kubernetes.io/controller-uid=${job.metadata?.uid}`,
    });
    const newestFirst = list.items.sort((a, b) => (timeOf(b.metadata?.creationTimestamp) ?? 0) - (timeOf(a.metadata?.creationTimestamp) ?? 0));
    return newestFirst.find((p) => p.status?.phase === 'Failed') ?? newestFirst[0];
  }

  /** The last lines of a container's log, at most LOG_TAIL_BYTES, cut at a line start where possible. */
  private async logTail(namespace: string, pod: string, container: string): Promise<string> {
    let log: string;
    try {
      log = await this.core.readNamespacedPodLog({ namespace, name: pod, container, tailLines: LOG_TAIL_LINES, limitBytes: LOG_READ_LIMIT_BYTES });
    } catch (err) {
      throw toKubernetesError(err, `log of pod ${namespace}/${pod}`);
    }
    const bytes = Buffer.from(log.trimEnd(), 'utf8');
    if (bytes.length <= LOG_TAIL_BYTES) return bytes.toString('utf8');
    const tail = bytes.subarray(bytes.length - LOG_TAIL_BYTES).toString('utf8');
    const newline = tail.indexOf('\n');
    return `…${newline >= 0 && newline < tail.length - 1 ? tail.slice(newline + 1) : tail}`;
  }
}

function checkSpec(spec: JobSpec): void {
  const what = describe(spec.namespace, spec.name);
  if (!DNS_LABEL.test(spec.name)) throw new InvalidInputError(`job name "${spec.name}" must be a DNS label (lower-case letters, digits and -, at most 63)`);
  if (!DNS_LABEL.test(spec.namespace)) throw new InvalidInputError(`namespace "${spec.namespace}" of ${what} is not a valid namespace name`);
  const problem = imageReferenceProblem(spec.image);
  if (problem) throw new InvalidInputError(`image "${spec.image}" for ${what} ${problem}`);
  if (spec.command.length === 0) throw new InvalidInputError(`${what} needs a command`);
  if (spec.container !== undefined && !DNS_LABEL.test(spec.container)) throw new InvalidInputError(`container name "${spec.container}" of ${what} must be a DNS label`);
  if (spec.backoffLimit !== undefined && !(Number.isInteger(spec.backoffLimit) && spec.backoffLimit >= 0)) {
    throw new InvalidInputError(`backoffLimit of ${what} must be a whole number ≥ 0, not ${spec.backoffLimit}`);
  }
  if (spec.activeDeadlineSeconds !== undefined && !(Number.isInteger(spec.activeDeadlineSeconds) && spec.activeDeadlineSeconds > 0)) {
    throw new InvalidInputError(`activeDeadlineSeconds of ${what} must be a whole number > 0, not ${spec.activeDeadlineSeconds}`);
  }
}

/**
 * restartPolicy Never: a failed container becomes a failed pod the Job
 * controller counts, and its log stays readable. No ttlSecondsAfterFinished:
 * a Job cleaned up behind our back would be created again by a retry.
 */
function manifest(spec: JobSpec): V1Job {
  const labels = { ...spec.labels, [MANAGED_BY_LABEL]: 'opsflow' };
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: spec.name, namespace: spec.namespace, labels },
    spec: {
      backoffLimit: spec.backoffLimit ?? 0,
      activeDeadlineSeconds: spec.activeDeadlineSeconds,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          serviceAccountName: spec.serviceAccountName,
          nodeSelector: spec.nodeSelector,
          tolerations: spec.tolerations,
          containers: [{ name: spec.container ?? DEFAULT_CONTAINER, image: spec.image, command: spec.command, env: spec.env }],
        },
      },
    },
  };
}

/** Objects from a watch event are plain JSON (times are strings); those from a read are typed (Dates). */
function timeOf(t: Date | string | undefined): number | undefined {
  if (t === undefined) return undefined;
  const ms = new Date(t).getTime();
  return Number.isNaN(ms) ? undefined : ms;
}

function conditionTrue(job: V1Job, type: string): V1JobCondition | undefined {
  return job.status?.conditions?.find((c) => c.type === type && c.status === 'True');
}
