/**
 * Records workflow histories for the replay test: runs backup and restore
 * (into, swap with approval, a failing restore) on a fresh bed and writes each
 * history to test/replay/histories/. Run again when a workflow changes in a
 * way that is meant to break replay (and guard old runs with patched()).
 *
 *   node --import tsx test/replay/record.ts
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { readToolsEnv, startBed, REPO_ROOT } from '../../deploy/bed/bed.ts';
import { writeWorkflowBundle } from '../../workers/bundle.ts';

const dir = mkdtempSync(join(tmpdir(), 'opsflow-record-'));
const bed = await startBed({ dir });
Object.assign(process.env, bed.env, { OPSFLOW_TEST_DIR: dir });
const { testSetup, startWorker, client, eventually } = await import('../support/bed.ts');
const { createSampleDatabase, dropDatabase } = await import('../support/data.ts');

const setup = testSetup('record', { shop: 'record_app' });
await createSampleDatabase('record_app', 500);
const bundle = await writeWorkflowBundle(join(dir, 'bundle.js'));
const worker = await startWorker(setup, { OPSFLOW_WORKFLOW_BUNDLE: bundle });
const opsflow = await client(setup);
const out = join(REPO_ROOT, 'test/replay/histories');

/** Exports a history the standard way, as `temporal workflow show --output json` does. */
function save(name: string, workflowId: string) {
  const json = execFileSync(readToolsEnv().OPSFLOW_TEMPORAL_BIN!, ['workflow', 'show', '--address', bed.temporalAddress, '--workflow-id', workflowId, '--output', 'json']);
  writeFileSync(join(out, `${name}.json`), json);
}

try {
  const backup = await opsflow.startBackup({ system: 'shop' });
  await backup.result();
  save('backup', backup.workflowId);

  const into = await opsflow.startRestore({ system: 'shop', into: 'record_copy' });
  await into.result();
  save('restore-into', into.workflowId);

  const swap = await opsflow.startRestore({ system: 'shop' });
  await eventually('approval', async () => (await opsflow.status(swap.workflowId)).awaitingApproval);
  await opsflow.approve(swap.workflowId, 'recorder');
  await swap.result();
  save('restore-swap-approved', swap.workflowId);

  const failing = await opsflow.startRestore({ system: 'shop', into: 'record_copy' }); // exists now: conflict
  await failing.result().catch(() => undefined);
  save('restore-conflict', failing.workflowId);
  console.log(`histories written to ${out}`);
} finally {
  await opsflow.close();
  await worker.stop();
  for (const db of ['record_app', 'record_app_old', 'record_copy']) await dropDatabase(db);
  await bed.stop();
}
