import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Deployment } from '@kubernetes/client-node';
import { rolloutStatus } from '../../src/domain/rollout.ts';

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
