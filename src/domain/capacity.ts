/**
 * Whether a rollout can drop available replicas below the desired count,
 * computed from the workload's strategy the way the Deployment controller
 * resolves it (percentages against replicas: maxUnavailable rounds down,
 * maxSurge up; both zero means maxUnavailable 1). Pure.
 */
import type { V1Deployment, V1StatefulSet } from '@kubernetes/client-node';

export interface CapacityVerdict {
  /** True when every old pod keeps serving until its replacement is available. */
  keepsCapacity: boolean;
  /** Pods that may be unavailable at once during the rollout. */
  maxUnavailable: number;
  maxSurge: number;
  reason: string;
}

function resolve(value: number | string | undefined, fallback: string, replicas: number, roundUp: boolean): number {
  const v = value ?? fallback;
  if (typeof v === 'number') return v;
  const percent = /^(\d+)%$/.exec(v);
  if (!percent) return Number(v);
  const exact = (Number(percent[1]) * replicas) / 100;
  return roundUp ? Math.ceil(exact) : Math.floor(exact);
}

export function deploymentCapacity(d: V1Deployment): CapacityVerdict {
  const replicas = d.spec?.replicas ?? 1;
  const strategy = d.spec?.strategy;
  if (strategy?.type === 'Recreate') {
    return { keepsCapacity: false, maxUnavailable: replicas, maxSurge: 0, reason: 'strategy Recreate stops every old pod before starting new ones' };
  }
  let maxSurge = resolve(strategy?.rollingUpdate?.maxSurge as number | string | undefined, '25%', replicas, true);
  let maxUnavailable = resolve(strategy?.rollingUpdate?.maxUnavailable as number | string | undefined, '25%', replicas, false);
  if (maxSurge === 0 && maxUnavailable === 0) maxUnavailable = 1;
  maxSurge = Math.max(0, maxSurge);
  if (maxUnavailable > 0) {
    return { keepsCapacity: false, maxUnavailable, maxSurge, reason: `rollingUpdate.maxUnavailable resolves to ${maxUnavailable} of ${replicas} replicas; set it to 0 (with maxSurge ≥ 1) to keep every replica serving` };
  }
  return { keepsCapacity: true, maxUnavailable, maxSurge, reason: `maxUnavailable 0, maxSurge ${maxSurge}: old pods serve until new ones are available` };
}

export function statefulSetCapacity(s: V1StatefulSet): CapacityVerdict {
  const replicas = s.spec?.replicas ?? 1;
  const maxUnavailable = resolve(s.spec?.updateStrategy?.rollingUpdate?.maxUnavailable as number | string | undefined, '1', replicas, false) || 1;
  return { keepsCapacity: false, maxUnavailable, maxSurge: 0, reason: `a StatefulSet replaces pods in place, ${maxUnavailable} at a time: it cannot surge` };
}
