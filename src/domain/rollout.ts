/**
 * Where a Deployment's rollout stands, judged exactly as `kubectl rollout
 * status` judges it: nothing counts until the controller has observed the
 * latest generation; a ProgressDeadlineExceeded condition is a stall; done
 * means every replica is updated, available, and no old one is left. A paused
 * Deployment will not progress until resumed, so waiting on it is pointless.
 * Pure, so it is tested on constructed objects as well as on a real cluster.
 */
import type { V1Deployment } from '@kubernetes/client-node';

export type RolloutState = 'waiting' | 'complete' | 'stalled' | 'paused';

export interface RolloutStatus {
  state: RolloutState;
  message: string;
  desired: number;
  updated: number;
  available: number;
  total: number;
}

export function rolloutStatus(deployment: V1Deployment): RolloutStatus {
  const name = deployment.metadata?.name ?? '?';
  const status = deployment.status ?? {};
  const desired = deployment.spec?.replicas ?? 1;
  const counts = {
    desired,
    updated: status.updatedReplicas ?? 0,
    available: status.availableReplicas ?? 0,
    total: status.replicas ?? 0,
  };
  const at = (state: RolloutState, message: string): RolloutStatus => ({ state, message, ...counts });

  if ((deployment.metadata?.generation ?? 0) > (status.observedGeneration ?? 0)) {
    return at('waiting', `waiting for deployment "${name}" spec update to be observed`);
  }
  if (deployment.spec?.paused) return at('paused', `deployment "${name}" is paused; resume it to continue the rollout`);
  const progressing = status.conditions?.find((c) => c.type === 'Progressing');
  if (progressing?.reason === 'ProgressDeadlineExceeded') {
    return at('stalled', `deployment "${name}" exceeded its progress deadline: ${progressing.message ?? ''}`.trim());
  }
  if (counts.updated < desired) return at('waiting', `${counts.updated} out of ${desired} new replicas have been updated`);
  if (counts.total > counts.updated) return at('waiting', `${counts.total - counts.updated} old replicas are pending termination`);
  if (counts.available < counts.updated) return at('waiting', `${counts.available} of ${counts.updated} updated replicas are available`);
  return at('complete', `deployment "${name}" successfully rolled out`);
}
