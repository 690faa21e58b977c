/**
 * The restore workflow's decisions, with stubbed activities under time
 * skipping: approval gate and timeout, row-count mismatch, a failed swap put
 * back, and cancellation mid-restore. The stubs record every call, so each
 * test can assert what was (and was not) done to the databases.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { Context } from '@temporalio/activity';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { randomUUID } from 'node:crypto';
import type { Activities } from '../../activities/index.ts';
import type { Manifest } from '../../src/domain/manifest.ts';
import { innermostMessage } from '../../src/errors.ts';
import { approveUpdate, SEARCH_ATTRIBUTE_NAMES, statusQuery, type DisasterRecoveryInput, type RestoreInput } from '../../workflows/shared.ts';
import proto from '@temporalio/proto';
import { bedEnv } from '../support/bed.ts';
import { WORKFLOW_BUNDLE } from '../../workers/build.ts';

let env: TestWorkflowEnvironment;

before(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') }); // the workflows' expected failures are not news here
  env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: bedEnv('OPSFLOW_TEMPORAL_TEST_SERVER_BIN') } },
  });
  // The workflows keep their phase in search attributes; register them as `opsflow init` would.
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: Object.fromEntries(SEARCH_ATTRIBUTE_NAMES.map((n) => [n, proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD])),
  });
});
after(async () => {
  await env?.teardown();
});

const postgresComponent = {
  kind: 'postgres' as const, name: 'postgres', key: 'k', database: 'shop', serverVersion: '15', format: 'pg_dump-custom' as const, compression: 'zstd' as const,
  encrypted: false, rawBytes: 100, storedBytes: 50, sha256: 'a'.repeat(64), rowCounts: { 'app.users': 3, 'app.orders': 7 },
  startedAt: '2026-11-23T02:00:00Z', completedAt: '2026-11-23T02:01:00Z',
};
const redisComponent = {
  kind: 'redis' as const, name: 'cache', key: 'r', mode: 'snapshot' as const, db: 0, keys: 12, compression: 'zstd' as const,
  encrypted: false, rawBytes: 10, storedBytes: 5, sha256: 'b'.repeat(64), startedAt: '2026-11-23T02:01:00Z', completedAt: '2026-11-23T02:01:00Z',
};
const manifest: Manifest = {
  formatVersion: 2,
  backupId: '20261123T020000Z-abc123',
  system: 'shop',
  workflowId: 'backup/shop/x',
  startedAt: '2026-11-23T02:00:00Z',
  completedAt: '2026-11-23T02:01:00Z',
  components: [postgresComponent, redisComponent],
};

type Calls = string[];

/** Stub activities that record calls; `overrides` inject failures. */
function stubs(calls: Calls, overrides: Partial<Record<keyof Activities, (...args: never[]) => Promise<unknown>>> = {}): Partial<Activities> {
  const record = (name: string, result: unknown = undefined) => async (input: unknown) => {
    calls.push(`${name} ${JSON.stringify(input)}`);
    return result;
  };
  const base = {
    findBackup: record('findBackup', manifest),
    databasesExist: async (input: { names: string[] }) => Object.fromEntries(input.names.map((n) => [n, false])),
    restorePostgres: record('restorePostgres', { database: 'x', storedBytes: 50, tables: 2 }),
    postgresRowCounts: record('postgresRowCounts', { 'app.users': 3, 'app.orders': 7 }),
    renameDatabase: record('renameDatabase'),
    allowConnections: record('allowConnections'),
    dropDatabase: record('dropDatabase', true),
    stageComponent: async (input: { component: { name: string } }) => {
      calls.push(`stage ${input.component.name}`);
      return 'staged';
    },
    swapInComponent: async (input: { component: { name: string } }) => void calls.push(`swapIn ${input.component.name}`),
    swapBackComponent: async (input: { component: { name: string } }) => void calls.push(`swapBack ${input.component.name}`),
    discardComponent: async (input: { component: { name: string } }) => void calls.push(`discard ${input.component.name}`),
    recoveryWorkloads: async () => ['api'],
    scaleWorkloadDown: async (input: { replicas: number }) => (calls.push(`scaleDown ${input.replicas}`), { previous: 3 }),
    scaleWorkloadBack: async () => (calls.push('scaleBack'), { replicas: 3, changed: true }),
    waitForPodsReady: async () => (calls.push('waitReady'), {}),
    restartWorkload: async () => (calls.push('restart'), { changed: true }),
    recoveryHealth: async () => (calls.push('health'), [{ name: 'health', ok: true, detail: '200 in 3 ms' }]),
    switchTraffic: async () => (calls.push('switchTraffic'), { switched: true }),
  };
  const out: Record<string, unknown> = { ...base };
  for (const [name, fn] of Object.entries(overrides)) {
    out[name] = async (input: unknown) => {
      calls.push(`${name} ${JSON.stringify(input)}`);
      return (fn as (i: unknown) => Promise<unknown>)(input);
    };
  }
  return out as Partial<Activities>;
}

async function withWorker<T>(activities: Partial<Activities>, fn: (taskQueue: string) => Promise<T>): Promise<T> {
  const taskQueue = `unit-${randomUUID()}`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: { codePath: WORKFLOW_BUNDLE },
    activities,
    maxHeartbeatThrottleInterval: '100ms',
    defaultHeartbeatThrottleInterval: '100ms',
  });
  return worker.runUntil(fn(taskQueue));
}

function start(taskQueue: string, input: RestoreInput | DisasterRecoveryInput, workflow = 'restore') {
  return env.client.workflow.start(workflow, { taskQueue, workflowId: `${workflow}-${randomUUID()}`, args: [input] });
}

/**
 * Calls that change something (the set-restore steps, scaling), in order.
 * Components stage, and are cleaned up after success, at once, so a run of
 * stage or discard calls is sorted: their start order is the worker's.
 */
function changes(calls: Calls): string[] {
  const changing = calls.filter((c) => /^(stage|swapIn|swapBack|discard|scaleDown|scaleBack|restart|switchTraffic) ?/.test(c));
  const verb = (c: string) => c.split(' ')[0]!;
  const out: string[] = [];
  for (let i = 0; i < changing.length; ) {
    let j = i;
    while (j < changing.length && verb(changing[j]!) === verb(changing[i]!)) j++;
    const run = changing.slice(i, j);
    out.push(...(['stage', 'discard'].includes(verb(changing[i]!)) ? run.sort() : run));
    i = j;
  }
  return out;
}

async function failureMessage(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof WorkflowFailedError);
    return innermostMessage(err);
  }
  assert.fail('expected the workflow to fail');
}

describe('restore workflow (stubbed activities, time skipping)', () => {
  it('waits for approval, then stages every component before swapping any, then cleans up', async () => {
    const calls: Calls = [];
    await withWorker(stubs(calls), async (tq) => {
      const handle = await start(tq, { system: 'shop' });
      for (let i = 0; i < 100 && !(await handle.query(statusQuery)).awaitingApproval; i++) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(changes(calls), [], 'nothing done before approval');
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'alice' }] });
      const result = await handle.result();
      assert.equal(result.approvedBy, 'alice');
    });
    assert.deepEqual(changes(calls), ['stage cache', 'stage postgres', 'swapIn postgres', 'swapIn cache', 'discard cache', 'discard postgres']);
  });

  it('stages the components at the same time, and cleans up at the same time', async () => {
    const calls: Calls = [];
    let running = 0;
    const mostAtOnce: Record<string, number> = { stage: 0, discard: 0 };
    /** Stays running until another call of its kind has started too (or 2 s pass): a run that waits for each in turn shows 1. */
    const overlapping = (kind: string) => async () => {
      running++;
      mostAtOnce[kind] = Math.max(mostAtOnce[kind]!, running);
      for (let i = 0; i < 40 && running < 2; i++) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 50));
      running--;
      return 'staged';
    };
    await withWorker(stubs(calls, { stageComponent: overlapping('stage'), discardComponent: overlapping('discard') }), async (tq) => (await start(tq, { system: 'shop', approved: true })).result());
    assert.deepEqual(mostAtOnce, { stage: 2, discard: 2 });
  });

  it('only the components asked for', async () => {
    const calls: Calls = [];
    await withWorker(stubs(calls), async (tq) => (await start(tq, { system: 'shop', approved: true, components: ['cache'] })).result());
    assert.deepEqual(changes(calls), ['stage cache', 'swapIn cache', 'discard cache']);
  });

  it('a component the set does not have fails at once, naming what it has', async () => {
    const calls: Calls = [];
    const message = await withWorker(stubs(calls), async (tq) => failureMessage((await start(tq, { system: 'shop', approved: true, components: ['files'] })).result()));
    assert.match(message, /has no component files \(it has: postgres, cache\)/);
    assert.deepEqual(changes(calls), []);
  });

  it('an approval without a name is rejected by the validator', async () => {
    await withWorker(stubs([]), async (tq) => {
      const handle = await start(tq, { system: 'shop', approvalTimeoutSeconds: 60 });
      for (let i = 0; i < 100 && !(await handle.query(statusQuery)).awaitingApproval; i++) await new Promise((r) => setTimeout(r, 50));
      await assert.rejects(handle.executeUpdate(approveUpdate, { args: [{ by: '' }] }), (err: Error) => /by: required/.test((err.cause as Error)?.message));
      // Let the cancellation finish while the worker runs: a workflow left with an
      // unpolled task would stop the test server from skipping time for the next test.
      await handle.cancel();
      await assert.rejects(handle.result());
    });
  });

  it('no approval within the timeout: fails, nothing staged or swapped', async () => {
    const calls: Calls = [];
    const message = await withWorker(stubs(calls), async (tq) => failureMessage((await start(tq, { system: 'shop', approvalTimeoutSeconds: 3600 })).result()));
    assert.match(message, /no approval within 3600 s; nothing was changed/);
    assert.deepEqual(changes(calls), []);
  });

  it('a component that fails its check while staging: nothing swapped, every staged copy removed', async () => {
    const calls: Calls = [];
    const message = await withWorker(
      stubs(calls, {
        stageComponent: async (input: { component: { name: string } }) => {
          if (input.component.name === 'cache') throw ApplicationFailure.nonRetryable('cache: 11 keys read back, the manifest says 12', 'IntegrityError');
          return 'staged';
        },
      }),
      async (tq) => failureMessage((await start(tq, { system: 'shop', approved: true })).result()),
    );
    assert.match(message, /11 keys read back, the manifest says 12/);
    assert.deepEqual(changes(calls).filter((c) => !c.startsWith('stageComponent')), ['discard cache', 'discard postgres']);
  });

  it('a swap that fails half way puts every component back, newest first', async () => {
    const calls: Calls = [];
    const message = await withWorker(
      stubs(calls, {
        swapInComponent: async (input: { component: { name: string } }) => {
          if (input.component.name === 'cache') throw ApplicationFailure.nonRetryable('SWAPDB refused', 'PeerRejected');
        },
      }),
      async (tq) => failureMessage((await start(tq, { system: 'shop', approved: true })).result()),
    );
    assert.match(message, /SWAPDB refused/);
    const undo = changes(calls).filter((c) => /^(swapBack|discard) /.test(c));
    assert.deepEqual(undo, ['swapBack cache', 'swapBack postgres', 'discard cache', 'discard postgres']);
  });

  it('a cancelled restore removes what it staged even though it was cancelled', async () => {
    const calls: Calls = [];
    await withWorker(
      // Like the real activity: heartbeats until cancelled (cancellation arrives with a heartbeat).
      stubs(calls, {
        stageComponent: async () => {
          const ctx = Context.current();
          for (;;) {
            ctx.heartbeat();
            await ctx.sleep(100);
          }
        },
      }),
      async (tq) => {
        const handle = await start(tq, { system: 'shop', approved: true });
        for (let i = 0; i < 100 && !calls.some((c) => c.startsWith('stageComponent')); i++) await new Promise((r) => setTimeout(r, 50));
        await handle.cancel();
        await assert.rejects(handle.result());
        assert.equal((await handle.query(statusQuery)).phase, 'cancelled');
      },
    );
    assert.ok(calls.includes('discard postgres'), 'staged database removed');
  });

  it('--into (database only): a restore that finds row counts differ drops the recovery database', async () => {
    const calls: Calls = [];
    const differ = 'row counts differ from the manifest in 1 table(s): app.orders: expected 7, got 6';
    const message = await withWorker(
      stubs(calls, { restorePostgres: async () => { throw ApplicationFailure.nonRetryable(differ, 'IntegrityError'); } }),
      async (tq) => failureMessage((await start(tq, { system: 'shop', into: 'copy' })).result()),
    );
    assert.match(message, /row counts differ from the manifest in 1 table\(s\): app\.orders: expected 7, got 6/);
    assert.ok(calls.some((c) => /^dropDatabase .*copy_restore_/.test(c)), 'recovery database dropped');
    assert.ok(!calls.some((c) => c.startsWith('renameDatabase')), 'nothing renamed');
  });
});

describe('disasterRecovery workflow (stubbed activities, time skipping)', () => {
  it('stages while the application runs, swaps only at 0 replicas, scales back, checks health, switches traffic, reports RTO and RPO', async () => {
    const calls: Calls = [];
    const result = await withWorker(stubs(calls), async (tq) => (await start(tq, { system: 'shop', approved: true }, 'disasterRecovery')).result());
    assert.deepEqual(changes(calls), [
      'stage cache', 'stage postgres', 'scaleDown 0', 'swapIn postgres', 'swapIn cache', 'scaleBack', 'switchTraffic', 'discard cache', 'discard postgres',
    ]);
    assert.ok(calls.indexOf('waitReady') > calls.indexOf('scaleBack') && calls.indexOf('health') < calls.indexOf('switchTraffic'));
    const r = result as { rtoSeconds: number; rpoSeconds: number; trafficSwitched: boolean; plan: { workloads: string[] } };
    assert.equal(r.trafficSwitched, true);
    assert.deepEqual(r.plan.workloads, ['api']);
    assert.ok(r.rpoSeconds > 0 && r.rtoSeconds >= 0);
  });

  it('a database swap that fails: live data put back and the application scaled back, and the run says so', async () => {
    const calls: Calls = [];
    const message = await withWorker(
      stubs(calls, {
        swapInComponent: async (input: { component: { name: string } }) => {
          if (input.component.name === 'postgres') throw ApplicationFailure.nonRetryable('database "shop_old_x" already exists', 'Conflict');
        },
      }),
      async (tq) => failureMessage((await start(tq, { system: 'shop', approved: true }, 'disasterRecovery')).result()),
    );
    assert.match(message, /already exists/);
    const after = changes(calls).slice(changes(calls).indexOf('scaleDown 0') + 1).filter((c) => !c.startsWith('swapInComponent'));
    assert.deepEqual(after, ['swapBack postgres', 'scaleBack', 'discard cache', 'discard postgres']);
  });

  it('failing health checks undo the recovery', async () => {
    const calls: Calls = [];
    const message = await withWorker(
      stubs(calls, { recoveryHealth: async () => [{ name: 'ready', ok: false, detail: 'answered 503' }] }),
      async (tq) => failureMessage((await start(tq, { system: 'shop', approved: true }, 'disasterRecovery')).result()),
    );
    assert.match(message, /health checks failed after recovery: ready: answered 503/);
    assert.ok(!calls.includes('switchTraffic'), 'traffic never switched');
    assert.deepEqual(changes(calls).filter((c) => c.startsWith('swapBack')), ['swapBack cache', 'swapBack postgres']);
  });

  it('dry run: the plan only, nothing changed', async () => {
    const calls: Calls = [];
    const result = await withWorker(stubs(calls), async (tq) => (await start(tq, { system: 'shop', dryRun: true }, 'disasterRecovery')).result());
    assert.equal((result as { dryRun: boolean }).dryRun, true);
    assert.deepEqual(changes(calls), []);
  });
});
