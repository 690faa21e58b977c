import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Deployment, V1DeploymentStrategy, V1StatefulSet } from '@kubernetes/client-node';
import { rolloutStatus, statefulSetRolloutStatus } from '../../src/domain/rollout.ts';
import { deploymentCapacity } from '../../src/domain/capacity.ts';

function deployment(over: { generation?: number; observed?: number; paused?: boolean; replicas?: number; updated?: number; available?: number; total?: number; deadline?: boolean }): V1Deployment {
  return {
    metadata: { name: 'app', generation: over.generation ?? 2 },
    spec: { replicas: over.replicas ?? 3, paused: over.paused, selector: {}, template: {} },
    status: {
      observedGeneration: over.observed ?? 2,
      updatedReplicas: over.updated ?? 3,
      availableReplicas: over.available ?? 3,
      replicas: over.total ?? 3,
      conditions: over.deadline ? [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'ReplicaSet "app-2" has timed out progressing.' }] : [],
    },
  };
}

describe('rollout status, as kubectl rollout status judges it', () => {
  it('a status read before the controller observed the new generation is not complete, even if the counts look done', () => {
    const s = rolloutStatus(deployment({ generation: 3, observed: 2 }));
    assert.equal(s.state, 'waiting');
    assert.match(s.message, /spec update to be observed/);
  });
  it('ProgressDeadlineExceeded is a stall, even with old replicas still available', () => {
    const s = rolloutStatus(deployment({ updated: 1, available: 3, total: 4, deadline: true }));
    assert.equal(s.state, 'stalled');
    assert.match(s.message, /exceeded its progress deadline: ReplicaSet "app-2" has timed out/);
  });
  it('paused is reported as paused, not as waiting forever', () => {
    assert.equal(rolloutStatus(deployment({ paused: true, updated: 1 })).state, 'paused');
  });
  it('waits for updated, then old replicas to go, then availability', () => {
    assert.match(rolloutStatus(deployment({ updated: 2, total: 4 })).message, /2 out of 3 new replicas/);
    assert.match(rolloutStatus(deployment({ updated: 3, total: 4 })).message, /1 old replicas are pending termination/);
    assert.match(rolloutStatus(deployment({ available: 2 })).message, /2 of 3 updated replicas are available/);
  });
  it('complete when all replicas are updated and available and no old ones remain', () => {
    const s = rolloutStatus(deployment({}));
    assert.equal(s.state, 'complete');
    assert.deepEqual([s.desired, s.updated, s.available, s.total], [3, 3, 3, 3]);
  });
});

function statefulSet(over: { generation?: number; observed?: number; ready?: number; updated?: number; current?: string; update?: string; partition?: number; strategy?: string }): V1StatefulSet {
  return {
    metadata: { name: 'db', generation: over.generation ?? 2 },
    spec: {
      replicas: 3,
      serviceName: 'db',
      selector: {},
      template: {},
      updateStrategy: { type: over.strategy ?? 'RollingUpdate', rollingUpdate: over.partition ? { partition: over.partition } : undefined },
    },
    status: {
      replicas: 3,
      observedGeneration: over.observed ?? 2,
      readyReplicas: over.ready ?? 3,
      updatedReplicas: over.updated ?? 3,
      currentRevision: over.current ?? 'db-2',
      updateRevision: over.update ?? 'db-2',
    },
  };
}

describe('StatefulSet rollout status, as kubectl rollout status judges it', () => {
  it('waits for the new generation to be observed, then for every pod Ready', () => {
    assert.match(statefulSetRolloutStatus(statefulSet({ generation: 3 })).message, /spec update to be observed/);
    const s = statefulSetRolloutStatus(statefulSet({ ready: 2 }));
    assert.equal(s.state, 'waiting');
    assert.equal(s.message, '2 of 3 pods are ready');
  });
  it('is not complete until the current revision caught up with the update revision', () => {
    assert.equal(statefulSetRolloutStatus(statefulSet({ current: 'db-1', update: 'db-2', updated: 1 })).state, 'waiting');
    assert.equal(statefulSetRolloutStatus(statefulSet({})).state, 'complete');
  });
  it('a partitioned rollout is complete once the pods above the partition are updated', () => {
    assert.equal(statefulSetRolloutStatus(statefulSet({ partition: 2, updated: 0, current: 'db-1' })).state, 'waiting');
    assert.equal(statefulSetRolloutStatus(statefulSet({ partition: 2, updated: 1, current: 'db-1' })).state, 'complete');
  });
  it('OnDelete has no rollout to wait for', () => {
    const s = statefulSetRolloutStatus(statefulSet({ strategy: 'OnDelete' }));
    assert.equal(s.state, 'paused');
    assert.match(s.message, /OnDelete strategy/);
  });
});

describe('capacity during a rollout (the Deployment controller\'s resolution)', () => {
  const withStrategy = (replicas: number, strategy: V1DeploymentStrategy | undefined): V1Deployment =>
    ({ metadata: { name: 'app' }, spec: { replicas, selector: {}, template: {}, strategy } });

  it('maxUnavailable 0 with a surge keeps capacity', () => {
    assert.equal(deploymentCapacity(withStrategy(3, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } })).keepsCapacity, true);
  });
  it('the defaults (25 %) drop a replica from 4 up, not below 4', () => {
    assert.equal(deploymentCapacity(withStrategy(3, undefined)).keepsCapacity, true, '25 % of 3 rounds down to 0');
    const v = deploymentCapacity(withStrategy(4, undefined));
    assert.equal(v.keepsCapacity, false);
    assert.equal(v.maxUnavailable, 1);
  });
  it('both zero means one unavailable, as the controller does', () => {
    assert.equal(deploymentCapacity(withStrategy(3, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 0 } })).maxUnavailable, 1);
  });
  it('Recreate drops everything', () => {
    assert.match(deploymentCapacity(withStrategy(3, { type: 'Recreate' })).reason, /Recreate/);
  });
});
