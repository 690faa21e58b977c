/** The pod a component inside the cluster is read from or written to: a Ready pod of a configured workload. */
import type { PodExec } from '../../src/adapters/kubernetes/exec.ts';
import { NotFoundError } from '../../src/errors.ts';
import type { DriverContext } from './driver.ts';

export interface PodPlace {
  namespace: string;
  pod: string;
  container: string;
  /** The file or directory inside the container. */
  path: string;
}

export async function podTarget(ctx: DriverContext, source: { workload: string; container?: string }, path: string): Promise<PodPlace & { dir: string }> {
  const k8s = await ctx.systems.kubernetes(ctx.system);
  const ref = ctx.systems.workloads(ctx.system).find((w) => w.name === source.workload);
  if (!ref) throw new NotFoundError(`workload "${source.workload}" is not configured for system "${ctx.system}"`);
  const workload = await k8s.workloads.read(ref);
  const pod = await k8s.exec.pickPod(ref.namespace, k8s.workloads.podSelector(ref, workload));
  const container = source.container ?? workload.spec?.template.spec?.containers[0]?.name ?? '';
  return { namespace: ref.namespace, pod, container, path, dir: path };
}

/**
 * Empties a component's place inside a pod (a scratch system after a drill)
 * with `remove`. A workload with no Ready pod left took what was inside with
 * it (or its namespace will): nothing to do, and the sentence says so.
 */
export async function tearDownInPod(
  ctx: DriverContext,
  source: { workload: string; container?: string },
  path: string,
  remove: (exec: PodExec, at: PodPlace & { dir: string }) => Promise<void>,
): Promise<string> {
  let at: PodPlace & { dir: string };
  try {
    at = await podTarget(ctx, source, path);
  } catch (err) {
    if (err instanceof NotFoundError) return `no pod of ${source.workload} to remove ${path} from`;
    throw err;
  }
  await remove((await ctx.systems.kubernetes(ctx.system)).exec, at);
  return `${path} removed in pod ${at.namespace}/${at.pod}`;
}
