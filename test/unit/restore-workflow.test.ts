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
import { approveUpdate, SEARCH_ATTRIBUTE_NAMES, statusQuery, type RestoreInput } from '../../workflows/shared.ts';
import proto from '@temporalio/proto';
import { bedEnv } from '../support/bed.ts';

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

const manifest: Manifest = {
  formatVersion: 1,
  backupId: '20261123T020000Z-abc123',
  system: 'shop',
  workflowId: 'backup/shop/x',
  startedAt: '2026-11-23T02:00:00Z',
  completedAt: '2026-11-23T02:01:00Z',
  components: {
    postgres: {
      kind: 'postgres', key: 'k', database: 'shop', serverVersion: '15', format: 'pg_dump-custom', compression: 'zstd',
      rawBytes: 100, storedBytes: 50, sha256: 'a'.repeat(64), rowCounts: { 'app.users': 3, 'app.orders': 7 },
      startedAt: '2026-11-23T02:00:00Z', completedAt: '2026-11-23T02:01:00Z',
    },
  },
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
    restorePostgres: record('restorePostgres', { database: 'x', storedBytes: 50 }),
    postgresRowCounts: record('postgresRowCounts', { 'app.users': 3, 'app.orders': 7 }),
    renameDatabase: record('renameDatabase'),
    allowConnections: record('allowConnections'),
    dropDatabase: record('dropDatabase', true),
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
    workflowBundle: { codePath: bedEnv('OPSFLOW_WORKFLOW_BUNDLE') },
    activities,
    maxHeartbeatThrottleInterval: '100ms',
    defaultHeartbeatThrottleInterval: '100ms',
  });
  return worker.runUntil(fn(taskQueue));
}

function start(taskQueue: string, input: RestoreInput) {
  return env.client.workflow.start('restore', { taskQueue, workflowId: `restore-${randomUUID()}`, args: [input] });
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
  it('swap mode waits for approval, then swaps live → _old and recovery → live', async () => {
    const calls: Calls = [];
    await withWorker(stubs(calls), async (tq) => {
      const handle = await start(tq, { system: 'shop' });
      for (let i = 0; i < 100 && !(await handle.query(statusQuery)).awaitingApproval; i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(!calls.some((c) => c.startsWith('restorePostgres')), 'nothing restored before approval');
      await handle.executeUpdate(approveUpdate, { args: [{ by: 'alice' }] });
      const result = await handle.result();
      assert.equal(result.approvedBy, 'alice');
    });
    const renames = calls.filter((c) => c.startsWith('renameDatabase'));
    assert.equal(renames.length, 2);
    assert.match(renames[0]!, /"from":"shop","to":"shop_old","closeFrom":true/);
    assert.match(renames[1]!, /"from":"shop_restore_[0-9a-z]{6}","to":"shop"/);
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

  it('no approval within the timeout: fails, nothing restored or renamed', async () => {
    const calls: Calls = [];
    const message = await withWorker(stubs(calls), async (tq) => failureMessage((await start(tq, { system: 'shop', approvalTimeoutSeconds: 3600 })).result()));
    assert.match(message, /no approval within 3600 s; nothing was changed/);
    assert.deepEqual(calls.filter((c) => !c.startsWith('findBackup')), []);
  });

  it('row counts that differ from the manifest fail the run and drop the recovery database', async () => {
    const calls: Calls = [];
    const message = await withWorker(
      stubs(calls, { postgresRowCounts: async () => ({ 'app.users': 3, 'app.orders': 6 }) }),
      async (tq) => failureMessage((await start(tq, { system: 'shop', approved: true })).result()),
    );
    assert.match(message, /row counts differ from the manifest in 1 table\(s\): app\.orders: expected 7, got 6/);
    assert.ok(calls.some((c) => /^dropDatabase .*shop_restore_/.test(c)), 'recovery database dropped');
    assert.ok(!calls.some((c) => c.startsWith('renameDatabase')), 'live database never touched');
  });

  it('a swap that fails half way puts the live database back', async () => {
    const calls: Calls = [];
    let renames = 0;
    const message = await withWorker(
      stubs(calls, {
        renameDatabase: async () => {
          renames++;
          if (renames === 2) throw ApplicationFailure.nonRetryable('disk full', 'PeerRejected');
        },
      }),
      async (tq) => failureMessage((await start(tq, { system: 'shop', approved: true })).result()),
    );
    assert.match(message, /disk full/);
    const renameCalls = calls.filter((c) => c.startsWith('renameDatabase'));
    assert.match(renameCalls[2]!, /"from":"shop_old","to":"shop"/, 'live database renamed back');
    assert.ok(calls.some((c) => /^allowConnections .*"database":"shop","allow":true/.test(c)), 'connections allowed again');
    assert.ok(calls.some((c) => /^dropDatabase .*shop_restore_/.test(c)), 'recovery database dropped');
  });

  it('a cancelled restore drops the recovery database even though it was cancelled', async () => {
    const calls: Calls = [];
    await withWorker(
      // Like the real activity: heartbeats until cancelled (cancellation arrives with a heartbeat).
      stubs(calls, {
        restorePostgres: async () => {
          const ctx = Context.current();
          for (;;) {
            ctx.heartbeat();
            await ctx.sleep(100);
          }
        },
      }),
      async (tq) => {
        const handle = await start(tq, { system: 'shop', into: 'copy' });
        for (let i = 0; i < 100 && !calls.some((c) => c.startsWith('restorePostgres')); i++) await new Promise((r) => setTimeout(r, 50));
        await handle.cancel();
        await assert.rejects(handle.result());
        assert.equal((await handle.query(statusQuery)).phase, 'cancelled');
      },
    );
    assert.ok(calls.some((c) => /^dropDatabase .*copy_restore_/.test(c)), 'recovery database dropped');
  });
});
