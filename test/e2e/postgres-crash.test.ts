/**
 * Worker crashes: the worker is killed (SIGKILL) mid-upload and mid-restore;
 * a new worker finishes the same workflow. Exactly one backup exists, no
 * incomplete multipart upload remains, no scratch database is left, and the
 * restore is exact.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { bedStore, client, eventually, startWorker, testSetup, type WorkerProcess } from '../support/bed.ts';
import { createSampleDatabase, dropDatabase, sql, tableChecksums } from '../support/data.ts';
import type { OpsflowClient } from '../../src/client.ts';
import { heartbeatOf } from '../../src/progress.ts';
import { backupIdFor, backupPrefix, POSTGRES_DUMP_FILE } from '../../src/domain/names.ts';

const DB = 'crash_app';
// One archive (no split): the kill lands in its one upload and its one download. sets-crash kills split backups.
const setup = testSetup('crash', { crashy: DB }, { crashy: { backup: { components: [{ kind: 'postgres', jobs: 1 }] } } });
// A transfer cap makes the upload take seconds, so the kill lands mid-transfer.
writeFileSync(setup.configPath, readFileSync(setup.configPath, 'utf8').replace('    s3:\n', '    limits:\n      transferMBps: 1\n    s3:\n'));

let opsflow: OpsflowClient;
const workers: WorkerProcess[] = [];

before(async () => {
  await createSampleDatabase(DB, 150_000);
  opsflow = await client(setup);
});

after(async () => {
  await opsflow?.close();
  for (const w of workers) await w.stop();
  for (const db of [DB, 'crash_copy']) await dropDatabase(db);
});

/** Waits until the running activity has heartbeated `minBytes` of progress. */
async function progressOf(workflowId: string, minBytes: number) {
  return eventually(`progress of ${workflowId}`, async () => {
    const details = await heartbeatOf(opsflow.temporal.workflow.getHandle(workflowId));
    if (!details || !('bytesOut' in details)) return undefined;
    const moved = details.step === 'restore' ? details.bytesIn : details.bytesOut;
    return moved >= minBytes ? details : undefined;
  }, 90_000);
}

describe('worker crash mid-transfer', () => {
  let backupId: string;
  let checksums: Record<string, string>;

  it('a backup killed mid-upload is finished by a new worker: one backup, no incomplete upload', async () => {
    checksums = await tableChecksums(DB);
    const first = await startWorker(setup);
    workers.push(first);
    const run = await opsflow.startBackup({ system: 'crashy' });
    const before = await progressOf(run.workflowId, 1_000_000);
    // MinIO lists multipart uploads by exact key only, so derive the key as the workflow does.
    const started = await opsflow.temporal.workflow.getHandle(run.workflowId).describe();
    const key = backupPrefix(setup.prefix, 'crashy', backupIdFor(started.startTime, run.workflowId)) + POSTGRES_DUMP_FILE;
    assert.equal((await bedStore().incompleteUploads(key)).length, 1, 'an upload is in flight');
    await first.kill();

    const second = await startWorker(setup);
    workers.push(second);
    const result = await run.result();
    backupId = result.backupId;
    assert.ok(before.bytesOut > 0);

    const keys: string[] = [];
    for await (const o of bedStore().listKeys(`${setup.prefix}/`)) keys.push(o.key);
    assert.equal(keys.filter((k) => k.endsWith('postgres.dump.zst')).length, 1, `exactly one dump: ${keys.join(', ')}`);
    assert.equal(keys.filter((k) => k.endsWith('manifest.json')).length, 1);
    assert.deepEqual(await bedStore().incompleteUploads(key), [], 'no incomplete multipart upload remains');
    assert.equal(keys.find((k) => k.endsWith('postgres.dump.zst')), key);

    const history = await opsflow.temporal.workflow.getHandle(run.workflowId).fetchHistory();
    const attempts = history.events!.filter((e) => e.activityTaskStartedEventAttributes).map((e) => e.activityTaskStartedEventAttributes!.attempt);
    assert.ok(attempts.some((a) => a === 2), 'the dump activity ran a second attempt on the new worker');
  });

  it('a backup cancelled mid-upload leaves no object and no incomplete upload', async () => {
    const run = await opsflow.startBackup({ system: 'crashy' });
    await progressOf(run.workflowId, 1_000_000);
    const started = await opsflow.temporal.workflow.getHandle(run.workflowId).describe();
    const key = backupPrefix(setup.prefix, 'crashy', backupIdFor(started.startTime, run.workflowId)) + POSTGRES_DUMP_FILE;
    await opsflow.cancel(run.workflowId);
    await assert.rejects(run.result());
    assert.equal((await opsflow.status(run.workflowId)).phase, 'cancelled');
    // The workflow waited for the activity's cleanup before it reported "cancelled".
    assert.deepEqual(await bedStore().incompleteUploads(key), []);
    assert.equal(await bedStore().head(key), undefined);
  });

  it('a restore killed mid-download is finished by a new worker and is exact', async () => {
    const run = await opsflow.startRestore({ system: 'crashy', backup: backupId, into: 'crash_copy' });
    await progressOf(run.workflowId, 1_000_000);
    await workers.at(-1)!.kill();
    const third = await startWorker(setup);
    workers.push(third);
    const result = await run.result();
    assert.equal(result.plan.target, 'crash_copy');
    assert.deepEqual(await tableChecksums('crash_copy'), checksums);
    const leftovers = await sql<{ datname: string }>('postgres', `SELECT datname FROM pg_database WHERE datname LIKE 'crash%restore%'`);
    assert.deepEqual(leftovers, [], 'no scratch database left behind');
  });
});
