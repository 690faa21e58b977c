/**
 * The CLI against the bed, as an SRE types it: backup with progress, list,
 * restore into a new database, a set restore's plan shown for approval and
 * rejected, verify, drill, retention, and bad input that exits 2 naming the
 * field. Also a run started with raw JSON, as the Temporal UI starts it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { REPO_ROOT } from '../../deploy/bed/bed.ts';
import { client, eventually, startWorker, testSetup, type WorkerProcess } from '../support/bed.ts';
import { createSampleDatabase, databaseExists, dropDatabase, tableChecksums } from '../support/data.ts';
import type { OpsflowClient } from '../../src/client.ts';
import type { BackupResult } from '../../workflows/shared.ts';
import { findComponent, type PostgresComponent } from '../../src/domain/manifest.ts';

const DB = 'cli_app';
const setup = testSetup('cli', { inventory: DB }, { inventory: { backup: { retention: { keepLast: 1 } } } });
let worker: WorkerProcess;
let opsflow: OpsflowClient;

before(async () => {
  await createSampleDatabase(DB, 2_000);
  worker = await startWorker(setup);
  opsflow = await client(setup);
});

after(async () => {
  await opsflow?.close();
  await worker?.stop();
  for (const db of [DB, 'cli_copy']) await dropDatabase(db);
});

interface Running {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exit: Promise<number | null>;
}

function start(...args: string[]): Running {
  const child = spawn(`${REPO_ROOT}/bin/opsflow`, args, { env: { ...process.env, ...setup.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c) => (stdout += c));
  child.stderr!.on('data', (c) => (stderr += c));
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  return { child, stdout: () => stdout, stderr: () => stderr, exit };
}

async function cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = start(...args);
  const code = await r.exit;
  return { code, stdout: r.stdout(), stderr: r.stderr() };
}

describe('opsflow CLI', () => {
  let backupId: string;
  let uiBackupId: string;

  it('backup shows each step and prints the backup ID and each component', async () => {
    const r = await cli('backup', 'inventory');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /started backup\/inventory\//);
    assert.match(r.stderr, /✔ plan  postgres: /);
    assert.match(r.stderr, /✔ backup postgres  \d+ bytes read, \d+ stored/);
    assert.match(r.stderr, /✔ write-manifest/);
    const out = JSON.parse(r.stdout);
    backupId = out.backupId;
    assert.match(backupId, /^\d{8}T\d{6}Z-[0-9a-z]{6}$/);
    assert.equal(out.components.length, 1);
    const [c] = out.components;
    assert.deepEqual(Object.keys(c).sort(), ['kind', 'name', 'rawBytes', 'storedBytes']);
    assert.equal(c.name, 'postgres');
    assert.equal(c.kind, 'postgres');
    assert.ok(c.storedBytes > 0 && c.rawBytes > 0);
  });

  it('backup --dry-run lists the components and what their check found', async () => {
    const r = await cli('backup', 'inventory', '--dry-run');
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.dryRun, true);
    assert.equal(out.components[0].name, 'postgres');
    assert.equal(out.components[0].kind, 'postgres');
    assert.equal(typeof out.components[0].detail, 'string');
  });

  it('backups list shows the complete backup', async () => {
    const r = await cli('backups', 'list', 'inventory');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^BACKUP +COMPLETED +SIZE +COMPONENTS +ENCRYPTED +PINNED +VERIFIED$/m);
    assert.match(r.stdout, new RegExp(`^${backupId}  +\\S+Z  +[\\d.]+ \\S+  +postgres  +no  +-  +-$`, 'm'));
    const alias = await cli('list', 'inventory');
    assert.equal(alias.stdout, r.stdout);
  });

  it('restore --into brings back the same data', async () => {
    const r = await cli('restore', 'inventory', '--backup', backupId, '--into', 'cli_copy');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /– approval  restoring into a new database changes nothing live/);
    assert.match(r.stdout, new RegExp(`restored backup ${backupId} into database "cli_copy": \\d+ tables match the manifest`));
    assert.deepEqual(await tableChecksums('cli_copy'), await tableChecksums(DB));
  });

  it('restore --dry-run shows the set plan: components, sizes, age', async () => {
    const r = await cli('restore', 'inventory', '--dry-run', '--component', 'postgres');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /dry run, nothing changed/);
    assert.match(r.stdout, new RegExp(`Restore plan: overwrite the live data of "inventory" with backup ${backupId}`));
    assert.match(r.stdout, /ago \(RPO: writes after that are lost\)/);
    assert.match(r.stdout, /^ {2}postgres +postgres +[\d.]+ \S+ stored +[\d.]+ \S+ raw$/m);
    const json = JSON.parse((await cli('restore', 'inventory', '--dry-run', '--json')).stdout);
    assert.equal(json.plan.backupId, backupId);
    assert.equal(json.plan.components[0].name, 'postgres');
  });

  it('a set restore shows its plan for approval; a rejection changes nothing', async () => {
    const before = await tableChecksums(DB);
    const run = start('restore', 'inventory', '--backup', backupId);
    const workflowId = await eventually('the run to ask for approval', async () => /Waiting for approval: opsflow approve (\S+)/.exec(run.stderr())?.[1], 60_000);
    assert.equal(workflowId, 'recover/inventory');
    assert.match(run.stderr(), new RegExp(`Restore plan: overwrite the live data of "inventory" with backup ${backupId}`));
    assert.match(run.stderr(), /Components \(1\):\n {2}postgres +postgres +[\d.]+ \S+ stored/);
    const rejected = await cli('reject', workflowId, '--by', 'test-sre', '--comment', 'not now');
    assert.equal(rejected.code, 0, rejected.stderr);
    assert.equal(await run.exit, 1);
    assert.match(run.stderr(), /rejected by test-sre: not now; nothing was changed/);
    assert.deepEqual(await tableChecksums(DB), before);
  });

  it('bad input exits 2 and names the field; an unknown system lists the known ones', async () => {
    const bad = await cli('restore', 'inventory', '--backup', 'last-tuesday');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /input\.backup: must be latest, latest-verified, a date \(YYYY-MM-DD\) or a backup ID/);
    const unknown = await cli('backup', 'nope');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /unknown system "nope" \(configured: inventory\)/);
    const flag = await cli('backup', 'inventory', '--bogus');
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /Unknown option '--bogus'/);
  });

  it('a run started with raw JSON (as from the Temporal UI) sets its own search attributes', async () => {
    const workflowId = `ui-backup-${Date.now()}`;
    const handle = await opsflow.temporal.workflow.start('backup', { taskQueue: setup.taskQueue, workflowId, args: [{ system: 'inventory' }] });
    const result = (await handle.result()) as BackupResult;
    uiBackupId = result.backupId;
    assert.equal((findComponent(result.manifest!, 'postgres') as PostgresComponent | undefined)?.database, DB);
    // Visibility is eventually consistent: poll until the index has it.
    await eventually('the run in visibility by its search attributes', async () => {
      for await (const wf of opsflow.temporal.workflow.list({ query: `OpsflowSystem = "inventory" AND OpsflowProcedure = "backup" AND OpsflowPhase = "done"` })) {
        if (wf.workflowId === workflowId) return true;
      }
      return false;
    }, 20_000);
  });

  it('backups verify restores the newest set into a scratch place and records it', async () => {
    const r = await cli('backups', 'verify', 'inventory');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /started verify\/inventory\//);
    assert.match(r.stdout, new RegExp(`backup ${uiBackupId} verified`));
    assert.match(r.stdout, /^ {2}postgres {2}\S/m);
    const list = await cli('backups', 'list', 'inventory');
    assert.match(list.stdout, new RegExp(`^${uiBackupId} .* \\d{4}-\\d{2}-\\d{2}T\\S+Z$`, 'm'));
  });

  it('drill reports RTO and RPO', async () => {
    const r = await cli('drill', 'inventory');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /started drill\/inventory/);
    assert.match(r.stdout, new RegExp(`drill restored backup ${uiBackupId}`));
    assert.match(r.stdout, /^RTO {2}\S+.*\(\d+ s\)$/m);
    assert.match(r.stdout, /^RPO {2}\S+.*\(\d+ s\)$/m);
  });

  it('retention --dry-run shows what stays and why, and what would go; retention deletes it', async () => {
    const dry = await cli('retention', 'inventory', '--dry-run');
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /dry run: nothing deleted/);
    assert.match(dry.stdout, new RegExp(`kept \\(1\\):\\n {2}${uiBackupId} {2}.*last 1`));
    assert.match(dry.stdout, new RegExp(`would delete \\(1\\):\\n {2}${backupId} {2}no rule keeps it`));
    assert.match((await cli('backups', 'list', 'inventory')).stdout, new RegExp(`^${backupId} `, 'm'));

    const real = await cli('retention', 'inventory');
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stdout, new RegExp(`deleted \\(1\\):\\n {2}${backupId}`));
    assert.match(real.stdout, /\d+ objects deleted, \d+ incomplete uploads aborted/);
    const list = await cli('backups', 'list', 'inventory');
    assert.doesNotMatch(list.stdout, new RegExp(`^${backupId} `, 'm'));
    assert.match(list.stdout, new RegExp(`^${uiBackupId} `, 'm'));
    assert.ok(await databaseExists(DB));
  });
});
