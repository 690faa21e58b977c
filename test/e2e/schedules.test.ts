/**
 * The config's schedules as Temporal Schedules, against the bed's real
 * Temporal: apply creates them (the 004 plan: backups daily at 02:00 UTC and
 * every 4 h, a daily verify and retention, a monthly drill), a second apply
 * changes nothing, a changed cron updates one, a removed schedule is deleted,
 * a schedule made by hand is never touched; pause, unpause and trigger from
 * the CLI.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { ScheduleNotFoundError } from '@temporalio/client';
import { REPO_ROOT } from '../../deploy/bed/bed.ts';
import { client, eventually, testSetup } from '../support/bed.ts';
import type { OpsflowClient } from '../../src/client.ts';
import { parseConfig, type Config } from '../../src/config.ts';
import { ConflictError } from '../../src/errors.ts';
import { actionMemoOf, applySchedules, scheduledWorkflowId } from '../../src/schedules.ts';

const setup = testSetup('schedules', { shop: 'schedules_app' });
const tag = `t${randomBytes(3).toString('hex')}`;
const n = (name: string) => `${tag}-${name}`;
const id = (name: string) => `opsflow/${n(name)}`;
let opsflow: OpsflowClient;

/** The 004 plan as schedules (with this run's names). */
function plan(): Record<string, unknown>[] {
  return [
    { name: n('backup-daily'), system: 'shop', procedure: 'backup', cron: ['0 2 * * *'] },
    { name: n('backup-4h'), system: 'shop', procedure: 'backup', cron: ['0 */4 * * *'], catchupWindowMinutes: 30 },
    { name: n('verify'), system: 'shop', procedure: 'verify', cron: ['30 3 * * *'] },
    { name: n('retention'), system: 'shop', procedure: 'retention', cron: ['0 4 * * *'] },
    { name: n('drill'), system: 'shop', procedure: 'drill', cron: ['0 5 1 * *'], timezone: 'Europe/Berlin' },
  ];
}

const rawConfig = parseYaml(readFileSync(setup.configPath, 'utf8')) as Record<string, unknown>;
function configWith(schedules: Record<string, unknown>[]): { config: Config; path: string } {
  const raw = { ...rawConfig, schedules };
  const path = join(dirname(setup.configPath), `schedules-${randomBytes(3).toString('hex')}.yaml`);
  writeFileSync(path, stringifyYaml(raw));
  return { config: parseConfig(raw), path };
}

function cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(`${REPO_ROOT}/bin/opsflow`, args, { env: { ...process.env, ...setup.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const apply = (config: Config) => applySchedules(opsflow.temporal, config, { taskQueue: setup.taskQueue });

async function listedIds(): Promise<Set<string>> {
  const ids = new Set<string>();
  for await (const s of opsflow.temporal.schedule.list()) ids.add(s.scheduleId);
  return ids;
}

before(async () => {
  opsflow = await client(setup);
  // Made by hand, on the same task queue, without opsflow's memo: never touched.
  await opsflow.temporal.schedule.create({
    scheduleId: id('by-hand'),
    spec: { cronExpressions: ['0 0 1 1 *'] },
    action: { type: 'startWorkflow', workflowType: 'backup', taskQueue: setup.taskQueue, args: [{ system: 'shop' }] },
    state: { paused: true },
  });
});

after(async () => {
  for await (const s of opsflow.temporal.schedule.list()) {
    if (s.scheduleId.startsWith(`opsflow/${tag}-`)) await opsflow.temporal.schedule.getHandle(s.scheduleId).delete().catch(() => undefined);
  }
  // Runs started by trigger have no worker on this task queue: end them.
  for await (const wf of opsflow.temporal.workflow.list({ query: `TaskQueue = "${setup.taskQueue}" AND ExecutionStatus = "Running"` })) {
    await opsflow.temporal.workflow.getHandle(wf.workflowId, wf.runId).terminate('test cleanup').catch(() => undefined);
  }
  await opsflow?.close();
});

describe('schedules apply', () => {
  it('creates one Temporal Schedule per configured schedule', async () => {
    const { path } = configWith(plan());
    const r = await cli('schedules', 'apply', '--config', path, '--json');
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.deepEqual(summary.created.sort(), plan().map((s) => s.name as string).sort());
    assert.deepEqual([summary.updated, summary.deleted, summary.unchanged], [[], [], []]);

    const d = await opsflow.temporal.schedule.getHandle(id('backup-4h')).describe();
    assert.deepEqual(d.memo, { managedBy: 'opsflow' });
    assert.equal(d.action.workflowType, 'backup');
    assert.equal(d.action.taskQueue, setup.taskQueue);
    assert.deepEqual(d.action.args, [{ system: 'shop' }]);
    assert.equal(d.action.workflowId, `backup/shop/scheduled/${n('backup-4h')}`);
    assert.equal(d.policies.overlap, 'SKIP');
    assert.equal(d.policies.catchupWindow, 30 * 60_000);
    assert.equal(d.state.paused, false);
    assert.equal(actionMemoOf(d)?.name, n('backup-4h'));
    // Every 4 hours: the next runs are 4 h apart, on the hour, UTC.
    const [first, second] = d.info.nextActionTimes;
    assert.equal(second!.getTime() - first!.getTime(), 4 * 3600_000);
    assert.equal(first!.getUTCMinutes(), 0);
    assert.equal(first!.getUTCHours() % 4, 0);

    const daily = await opsflow.temporal.schedule.getHandle(id('backup-daily')).describe();
    assert.equal(daily.info.nextActionTimes[0]!.getUTCHours(), 2);
    assert.equal((await opsflow.temporal.schedule.getHandle(id('backup-daily')).describe()).policies.catchupWindow, 60 * 60_000);

    const verify = await opsflow.temporal.schedule.getHandle(id('verify')).describe();
    assert.deepEqual(verify.action.args, [{ system: 'shop', backup: 'latest' }]);
    const drill = await opsflow.temporal.schedule.getHandle(id('drill')).describe();
    assert.equal(drill.action.workflowId, scheduledWorkflowId({ procedure: 'drill', system: 'shop', name: n('drill') }));
    assert.equal(drill.spec.timezone, 'Europe/Berlin');
    const parts = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', day: 'numeric', hour: 'numeric', minute: 'numeric', hourCycle: 'h23' }).formatToParts(drill.info.nextActionTimes[0]!);
    const part = (type: string) => Number(parts.find((p) => p.type === type)?.value);
    assert.deepEqual([part('day'), part('hour'), part('minute')], [1, 5, 0], '05:00 on the 1st, Berlin time');
    const retention = await opsflow.temporal.schedule.getHandle(id('retention')).describe();
    assert.equal(retention.action.workflowId, `retention/shop/scheduled/${n('retention')}`);
  });

  it('a second apply changes nothing', async () => {
    assert.deepEqual(await apply(configWith(plan()).config), { created: [], updated: [], deleted: [], unchanged: plan().map((s) => s.name as string) });
  });

  it('a changed cron updates that schedule only, and the next apply sees it as unchanged', async () => {
    const changed = plan();
    changed[0]!.cron = ['15 2 * * *'];
    const { config } = configWith(changed);
    const r = await apply(config);
    assert.deepEqual(r.updated, [n('backup-daily')]);
    assert.equal(r.unchanged.length, 4);
    const d = await opsflow.temporal.schedule.getHandle(id('backup-daily')).describe();
    assert.equal(d.info.nextActionTimes[0]!.getUTCMinutes(), 15);
    assert.deepEqual(d.memo, { managedBy: 'opsflow' });
    assert.deepEqual((await apply(config)).unchanged.length, 5);
  });

  it('a schedule removed from the config is deleted; one made by hand survives', async () => {
    await eventually('the schedules in the list (visibility)', async () => {
      const ids = await listedIds();
      return [...plan().map((s) => `opsflow/${s.name}`), id('by-hand')].every((x) => ids.has(x));
    }, 30_000);
    const fewer = plan().filter((s) => s.name !== n('verify'));
    fewer[0]!.cron = ['15 2 * * *'];
    const r = await apply(configWith(fewer).config);
    assert.deepEqual(r, { created: [], updated: [], deleted: [n('verify')], unchanged: fewer.map((s) => s.name as string) });
    await assert.rejects(opsflow.temporal.schedule.getHandle(id('verify')).describe(), ScheduleNotFoundError);
    const byHand = await opsflow.temporal.schedule.getHandle(id('by-hand')).describe();
    assert.equal(byHand.memo, undefined);
    assert.equal(byHand.state.paused, true);
  });

  it('a configured name taken by a schedule opsflow does not manage is a conflict: nothing changes', async () => {
    const taken = [...plan(), { name: n('by-hand'), system: 'shop', procedure: 'backup', cron: ['0 1 * * *'] }];
    await assert.rejects(apply(configWith(taken).config), (err: Error) => {
      assert.ok(err instanceof ConflictError);
      assert.match(err.message, new RegExp(`schedule ${id('by-hand')} exists but was not created by opsflow`));
      return true;
    });
    await assert.rejects(opsflow.temporal.schedule.getHandle(id('verify')).describe(), ScheduleNotFoundError, 'nothing created');
    const byHand = await opsflow.temporal.schedule.getHandle(id('by-hand')).describe();
    assert.equal(byHand.memo, undefined);
    assert.deepEqual(byHand.action.args, [{ system: 'shop' }]);
  });

  it('paused in the config: created paused, unpaused when the config says so', async () => {
    const paused = [...plan(), { name: n('paused'), system: 'shop', procedure: 'retention', cron: ['0 6 * * *'], paused: true }];
    const r = await apply(configWith(paused).config);
    assert.deepEqual(r.created, [n('verify'), n('paused')]);
    assert.deepEqual(r.updated, [n('backup-daily')], 'its cron is back to 02:00');
    assert.equal((await opsflow.temporal.schedule.getHandle(id('paused')).describe()).state.paused, true);
    paused.at(-1)!.paused = false;
    assert.deepEqual((await apply(configWith(paused).config)).updated, [n('paused')]);
    assert.equal((await opsflow.temporal.schedule.getHandle(id('paused')).describe()).state.paused, false);
  });
});

describe('schedules from the CLI', () => {
  it('list shows each schedule with its procedure, system, cron and state', async () => {
    const r = await eventually('every schedule listed', async () => {
      const out = await cli('schedules', 'list');
      return out.stdout.includes(id('paused')) && out.stdout.includes(id('verify')) ? out : undefined;
    }, 30_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^SCHEDULE +PROCEDURE +SYSTEM +CRON +STATE +NEXT +LAST RUN$/m);
    assert.match(r.stdout, new RegExp(`^${id('backup-4h')} +backup +shop +0 \\*/4 \\* \\* \\* +active +\\S+Z +-$`, 'm'));
    assert.match(r.stdout, new RegExp(`^${id('drill')} +drill +shop +0 5 1 \\* \\* \\(Europe/Berlin\\) +active`, 'm'));
    assert.match(r.stdout, new RegExp(`^${id('by-hand')} +backup +shop +- +paused \\(not managed by opsflow\\)`, 'm'));
  });

  it('pause and unpause; a pause made by hand survives apply', async () => {
    const paused = await cli('schedules', 'pause', n('backup-daily'), '--reason', 'incident 42', '--by', 'test-sre');
    assert.equal(paused.code, 0, paused.stderr);
    assert.match(paused.stdout, new RegExp(`paused ${id('backup-daily')}`));
    let d = await opsflow.temporal.schedule.getHandle(id('backup-daily')).describe();
    assert.equal(d.state.paused, true);
    assert.equal(d.state.note, 'paused by test-sre with opsflow: incident 42');

    const current = [...plan(), { name: n('paused'), system: 'shop', procedure: 'retention', cron: ['0 6 * * *'], paused: false }];
    const same = await apply(configWith(current).config);
    assert.equal(same.unchanged.length, current.length);
    assert.equal((await opsflow.temporal.schedule.getHandle(id('backup-daily')).describe()).state.paused, true, 'apply leaves an operator pause alone');
    current[0]!.cron = ['45 1 * * *'];
    assert.deepEqual((await apply(configWith(current).config)).updated, [n('backup-daily')]);
    d = await opsflow.temporal.schedule.getHandle(id('backup-daily')).describe();
    assert.equal(d.state.paused, true, 'an update keeps the operator pause');
    assert.equal(d.info.nextActionTimes[0]!.getUTCMinutes(), 45);

    const unpaused = await cli('schedules', 'unpause', id('backup-daily'));
    assert.equal(unpaused.code, 0, unpaused.stderr);
    d = await opsflow.temporal.schedule.getHandle(id('backup-daily')).describe();
    assert.equal(d.state.paused, false);

    const missing = await cli('schedules', 'pause', n('nope'));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, new RegExp(`no schedule ${id('nope')}`));
  });

  it('trigger starts a run now', async () => {
    const r = await cli('schedules', 'trigger', n('retention'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`triggered ${id('retention')}`));
    const action = await eventually('the triggered run', async () => {
      const d = await opsflow.temporal.schedule.getHandle(id('retention')).describe();
      return d.info.recentActions[0];
    }, 30_000);
    assert.ok(action.action.workflow.workflowId.startsWith(`retention/shop/scheduled/${n('retention')}-`), action.action.workflow.workflowId);
    const started = await opsflow.temporal.workflow.getHandle(action.action.workflow.workflowId).describe();
    assert.equal(started.type, 'retention');
    assert.equal(started.taskQueue, setup.taskQueue);
    assert.equal(started.memo?.opsflowSchedule && (started.memo.opsflowSchedule as { name: string }).name, n('retention'));
  });

  it('an unknown sub-command exits 2 with the usage', async () => {
    const r = await cli('schedules', 'bogus');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /usage: opsflow schedules apply/);
  });
});
