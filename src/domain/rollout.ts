/**
 * Where a workload's rollout stands, judged exactly as `kubectl rollout
 * status` judges it. Pure, so it is tested on constructed objects as well as
 * on a real cluster.
 *
 * Deployment: nothing counts until the controller has observed the latest
 * generation; a ProgressDeadlineExceeded condition is a stall; done means
 * every replica is updated, available, and no old one is left. A paused
 * Deployment will not progress until resumed, so waiting on it is pointless.
 *
 * StatefulSet: observed generation, then every replica Ready, then (rolling
 * update) the current revision has caught up with the update revision, or a
 * partitioned rollout has updated the pods above its partition. StatefulSets
 * have no progress deadline: a stall shows as pods that never become Ready.
 */
import type { V1Deployment, V1StatefulSet } from '@kubernetes/client-node';

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

export function statefulSetRolloutStatus(sts: V1StatefulSet): RolloutStatus {
  const name = sts.metadata?.name ?? '?';
  const status = sts.status ?? { replicas: 0 };
  const desired = sts.spec?.replicas ?? 1;
  const counts = {
    desired,
    updated: status.updatedReplicas ?? 0,
    available: status.availableReplicas ?? status.readyReplicas ?? 0,
    total: status.replicas ?? 0,
  };
  const at = (state: RolloutState, message: string): RolloutStatus => ({ state, message, ...counts });

  const strategy = sts.spec?.updateStrategy?.type ?? 'RollingUpdate';
  if (strategy !== 'RollingUpdate') {
    return at('paused', `statefulset "${name}" uses the ${strategy} strategy: pods change only when deleted, so there is no rollout to wait for`);
  }
  if (!status.observedGeneration || (sts.metadata?.generation ?? 0) > status.observedGeneration) {
    return at('waiting', `waiting for statefulset "${name}" spec update to be observed`);
  }
  const ready = status.readyReplicas ?? 0;
  if (ready < desired) return at('waiting', `${ready} of ${desired} pods are ready`);
  const partition = sts.spec?.updateStrategy?.rollingUpdate?.partition ?? 0;
  if (partition > 0) {
    const expected = desired - partition;
    if (counts.updated < expected) return at('waiting', `partitioned rollout: ${counts.updated} of ${expected} new pods have been updated`);
    return at('complete', `statefulset "${name}" partitioned rollout complete: ${counts.updated} new pods have been updated`);
  }
  if (status.updateRevision !== status.currentRevision) {
    return at('waiting', `waiting for statefulset "${name}" rolling update to complete ${counts.updated} pods at revision ${status.updateRevision}`);
  }
  return at('complete', `statefulset "${name}" rolling update complete ${ready} pods at revision ${status.currentRevision}`);
}
