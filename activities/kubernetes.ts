/**
 * Kubernetes activities over a system's configured workloads. A workflow
 * names a workload by its name in the config, never by a free namespace and
 * name, so a run can only touch what the config says the system owns. Each
 * change is idempotent; each wait heartbeats what it is waiting for and stops
 * when the activity is cancelled.
 */
import { Context } from '@temporalio/activity';
import type { Systems } from '../src/systems.ts';
import type { WorkloadRef } from '../src/adapters/kubernetes/index.ts';
import { NotFoundError } from '../src/errors.ts';
import type { RolloutStatus } from '../src/domain/rollout.ts';
import type { PodsReadyStatus } from '../src/adapters/kubernetes/workloads.ts';
import { keepAlive, startHeartbeats, type WaitProgress } from './progress.ts';

export interface KubernetesDeps {
  systems: Systems;
}

export interface WorkloadInput {
  system: string;
  /** The workload's name under systems.<system>.kubernetes.workloads. */
  workload: string;
}

export interface WorkloadState {
  kind: WorkloadRef['kind'];
  name: string;
  namespace: string;
  replicas: number;
  readyReplicas: number;
  images: Record<string, string>;
}

export function kubernetesActivities({ systems }: KubernetesDeps) {
  const resolve = ({ system, workload }: WorkloadInput): WorkloadRef => {
    const refs = systems.workloads(system);
    const ref = refs.find((w) => w.name === workload);
    if (!ref) throw new NotFoundError(`system "${system}" has no workload "${workload}" (configured: ${refs.map((w) => w.name).join(', ')})`);
    return ref;
  };
  const workloadsOf = async (system: string) => (await systems.kubernetes(system)).workloads;

  /** Runs a wait with heartbeats carrying its latest message; the activity's cancellation aborts it. */
  async function waiting<T>(step: string, wait: (signal: AbortSignal, report: (message: string) => void) => Promise<T>): Promise<T> {
    const progress: WaitProgress = { step, message: 'starting' };
    const stop = startHeartbeats(progress);
    try {
      return await wait(Context.current().cancellationSignal, (message) => (progress.message = message));
    } finally {
      stop();
    }
  }

  async function ifPresent<T, A>(absentOk: boolean | undefined, fn: () => Promise<T>, absent: A): Promise<T | A> {
    try {
      return await fn();
    } catch (err) {
      if (absentOk && err instanceof NotFoundError) return absent;
      throw err;
    }
  }

  return {
    /** Each configured workload as it is now; fails at once, naming it, if one does not exist. */
    async describeWorkloads(input: { system: string }): Promise<WorkloadState[]> {
      const states: WorkloadState[] = [];
      for (const ref of systems.workloads(input.system)) {
        const w = await (await workloadsOf(input.system)).read(ref);
        states.push({
          ...ref,
          replicas: w.spec?.replicas ?? 1,
          readyReplicas: w.status?.readyReplicas ?? 0,
          images: Object.fromEntries((w.spec?.template.spec?.containers ?? []).map((c) => [c.name, c.image ?? ''])),
        });
      }
      return states;
    },

    /**
     * Scales down, recording the count to restore on the workload itself (see Workloads.scaleRemembering).
     * `absentOk`: a workload that does not exist yet (a recovery into new infrastructure) is left alone, reported absent.
     */
    async scaleWorkloadDown(input: WorkloadInput & { replicas: number; owner: string; absentOk?: boolean }): Promise<{ previous: number; absent?: boolean }> {
      const scale = async () => (await workloadsOf(input.system)).scaleRemembering(resolve(input), input.replicas, input.owner);
      return keepAlive(`scale ${input.workload}`, () => ifPresent(input.absentOk, scale, { previous: 0, absent: true }));
    },

    async scaleWorkloadBack(input: WorkloadInput & { owner: string; absentOk?: boolean }): Promise<{ replicas: number; changed: boolean }> {
      const scaleBack = async () => (await workloadsOf(input.system)).scaleBack(resolve(input), input.owner);
      return keepAlive(`scale back ${input.workload}`, () => ifPresent(input.absentOk, scaleBack, { replicas: 0, changed: false }));
    },

    async setWorkloadImages(input: WorkloadInput & { images: Record<string, string>; changeCause?: string }) {
      return (await workloadsOf(input.system)).setImage(resolve(input), input.images, { changeCause: input.changeCause });
    },

    /** `at` comes from the workflow, so a retry stamps the same value and restarts nothing twice. */
    async restartWorkload(input: WorkloadInput & { at: string }): Promise<{ changed: boolean }> {
      return keepAlive(`restart ${input.workload}`, async () => (await workloadsOf(input.system)).restart(resolve(input), input.at));
    },

    async undoRollout(input: WorkloadInput & { toRevision?: number }): Promise<{ revision: number }> {
      const ref = resolve(input);
      return (await workloadsOf(input.system)).undo(ref.namespace, ref.name, input.toRevision);
    },

    async waitForRollout(input: WorkloadInput): Promise<RolloutStatus> {
      const ref = resolve(input);
      return waiting(`rollout of ${ref.name}`, async (signal, report) =>
        (await workloadsOf(input.system)).waitForRollout(ref, { signal, onStatus: (s) => report(`${ref.name}: ${s.message}`) }),
      );
    },

    /** Waits up to the system's readyTimeoutSeconds (or `timeoutSeconds`) for every pod to be Ready. */
    async waitForPodsReady(input: WorkloadInput & { timeoutSeconds?: number }): Promise<PodsReadyStatus> {
      const ref = resolve(input);
      const timeoutSeconds = input.timeoutSeconds ?? systems.kubernetesConfig(input.system).readyTimeoutSeconds;
      return waiting(`pods of ${ref.name}`, async (signal, report) =>
        (await workloadsOf(input.system)).waitForPodsReady(ref, {
          timeoutMs: timeoutSeconds * 1000,
          signal,
          onStatus: (s) => report(`${ref.name}: ${s.ready} of ${s.expected} pods Ready`),
        }),
      );
    },
  };
}
