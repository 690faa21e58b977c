/**
 * The CLI against the bed, as an SRE types it: backup with progress, list,
 * restore into a new database, and bad input that exits 2 naming the field.
 * Also a run started with raw JSON, as the Temporal UI starts it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { REPO_ROOT } from '../../deploy/bed/bed.ts';
import { client, eventually, startWorker, testSetup, type WorkerProcess } from '../support/bed.ts';
import { createSampleDatabase, dropDatabase, tableChecksums } from '../support/data.ts';
import type { OpsflowClient } from '../../src/client.ts';
import type { BackupResult } from '../../workflows/shared.ts';

const DB = 'cli_app';
const setup = testSetup('cli', { inventory: DB });
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

describe('opsflow CLI', () => {
  let backupId: string;

  it('backup shows each step and prints the result', async () => {
    const r = await cli('backup', 'inventory');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /started backup\/inventory\//);
    assert.match(r.stderr, /✔ check-database/);
    assert.match(r.stderr, /✔ dump-postgres .* bytes dumped/);
    assert.match(r.stderr, /✔ write-manifest/);
    backupId = JSON.parse(r.stdout).backupId;
    assert.match(backupId, /^\d{8}T\d{6}Z-[0-9a-z]{6}$/);
  });

  it('backups list shows the complete backup', async () => {
    const r = await cli('backups', 'list', 'inventory');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${backupId}  .*postgres$`, 'm'));
  });

  it('restore --into brings back the same data', async () => {
    const r = await cli('restore', 'inventory', '--backup', backupId, '--into', 'cli_copy');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /– approval  restoring into a new database changes nothing live/);
    assert.deepEqual(await tableChecksums('cli_copy'), await tableChecksums(DB));
  });

  it('bad input exits 2 and names the field; an unknown system lists the known ones', async () => {
    const bad = await cli('restore', 'inventory', '--backup', 'last-tuesday');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /input\.backup: must be "latest" or a backup ID/);
    const unknown = await cli('backup', 'nope');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /unknown system "nope" \(configured: inventory\)/);
  });

  it('a run started with raw JSON (as from the Temporal UI) sets its own search attributes', async () => {
    const workflowId = `ui-backup-${Date.now()}`;
    const handle = await opsflow.temporal.workflow.start('backup', { taskQueue: setup.taskQueue, workflowId, args: [{ system: 'inventory' }] });
    const result = (await handle.result()) as BackupResult;
    assert.equal(result.manifest?.components.postgres?.database, DB);
    // Visibility is eventually consistent: poll until the index has it.
    await eventually('the run in visibility by its search attributes', async () => {
      for await (const wf of opsflow.temporal.workflow.list({ query: `OpsflowSystem = "inventory" AND OpsflowProcedure = "backup" AND OpsflowPhase = "done"` })) {
        if (wf.workflowId === workflowId) return true;
      }
      return false;
    }, 20_000);
  });
});
