/**
 * Bad input fails at once, with a message that names the problem, and leaves
 * nothing half done: unknown system, malformed backup ID (from the SDK and
 * from raw JSON as the Temporal UI sends it), unreadable or invalid config,
 * an unreachable database, a wrong password (which never shows in the error).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { WorkflowFailedError } from '@temporalio/client';
import { bedStore, client, startWorker, testSetup, type WorkerProcess } from '../support/bed.ts';
import { createSampleDatabase, dropDatabase, sql } from '../support/data.ts';
import { randomBytes } from 'node:crypto';
import { REPO_ROOT } from '../../deploy/bed/bed.ts';
import { WORKER_ENTRY } from '../../workers/build.ts';
import type { OpsflowClient } from '../../src/client.ts';
import { innermostMessage, InvalidInputError } from '../../src/errors.ts';
import { findComponent, type PostgresComponent } from '../../src/domain/manifest.ts';

const DB = 'bad_input_app';
const setup = testSetup('badinput', { good: DB, down: DB, locked: DB });
// `down` points at a port nobody listens on; `locked` has a wrong password.
setup.env.DOWN_DATABASE_URL = 'postgresql://postgres:secret-pw-1234@127.0.0.1:9/bad_input_app';
const wrongPassword = 'wrong-pass-5678';
const locked = new URL(setup.env.LOCKED_DATABASE_URL!);
locked.password = wrongPassword;
setup.env.LOCKED_DATABASE_URL = locked.toString();

let worker: WorkerProcess;
let opsflow: OpsflowClient;

before(async () => {
  await createSampleDatabase(DB, 100);
  worker = await startWorker(setup);
  opsflow = await client(setup);
});

after(async () => {
  await opsflow?.close();
  await worker?.stop();
  await dropDatabase(DB);
});

/** Runs a workflow to its end and returns the failure's innermost message and the time it took. */
async function failureOf(start: () => Promise<{ result(): Promise<unknown> }>): Promise<{ message: string; seconds: number }> {
  const t0 = Date.now();
  const run = await start();
  try {
    await run.result();
  } catch (err) {
    assert.ok(err instanceof WorkflowFailedError, `expected a workflow failure, got ${err}`);
    return { message: innermostMessage(err), seconds: (Date.now() - t0) / 1000 };
  }
  assert.fail('the run should have failed');
}

async function storedObjects(): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of bedStore().listKeys(`${setup.prefix}/`)) keys.push(o.key);
  return keys;
}

describe('bad input fails at once with a clear message', () => {
  it('unknown system', async () => {
    const { message, seconds } = await failureOf(() => opsflow.startBackup({ system: 'nope' }));
    assert.match(message, /unknown system "nope" \(configured: good, down, locked\)/);
    assert.ok(seconds < 10, `took ${seconds} s`);
  });

  it('malformed backup ID from the SDK: refused before anything starts, naming the field', async () => {
    await assert.rejects(() => opsflow.startRestore({ system: 'good', backup: '../etc/passwd' }), (err: Error) => {
      assert.ok(err instanceof InvalidInputError);
      assert.match(err.message, /input\.backup: must be latest, latest-verified, a date \(YYYY-MM-DD\) or a backup ID/);
      return true;
    });
  });

  it('malformed input as raw JSON (as the Temporal UI sends it): the workflow fails at once, naming each field', async () => {
    const { message, seconds } = await failureOf(async () => {
      const handle = await opsflow.temporal.workflow.start('restore', {
        taskQueue: setup.taskQueue,
        workflowId: `ui-restore-${Date.now()}`,
        args: [{ system: 'good', backup: 'yesterday', into: 'Robert"; DROP', extra: 1 }],
      });
      return { result: () => handle.result() };
    });
    assert.match(message, /input\.backup: must be latest, latest-verified, a date \(YYYY-MM-DD\) or a backup ID/);
    assert.match(message, /input\.into: must be a plain database name/);
    assert.match(message, /extra/);
    assert.ok(seconds < 5, `took ${seconds} s`);
  });

  it('a backup ID that does not exist', async () => {
    const { message } = await failureOf(() => opsflow.startRestore({ system: 'good', backup: '20200101T000000Z-aaaaaa', into: 'never_made' }));
    assert.match(message, /backup 20200101T000000Z-aaaaaa of system "good" not found/);
  });

  it('a corrupted backup object: the restore fails at once saying so, and leaves no database', async () => {
    const backup = await (await opsflow.startBackup({ system: 'good' })).result();
    const component = findComponent(backup.manifest!, 'postgres') as PostgresComponent;
    const { PutObjectCommand } = await import('@aws-sdk/client-s3');
    const store = bedStore();
    await store.client.send(new PutObjectCommand({ Bucket: store.bucket, Key: component.key, Body: randomBytes(component.storedBytes) }));
    const { message, seconds } = await failureOf(() => opsflow.startRestore({ system: 'good', backup: backup.backupId, into: 'bad_input_copy' }));
    assert.match(message, /backup object .*postgres\.dump\.zst is corrupt: its SHA-256 is .* the manifest says/);
    assert.ok(seconds < 10, `took ${seconds} s`);
    const left = await sql<{ datname: string }>('postgres', `SELECT datname FROM pg_database WHERE datname LIKE 'bad_input_copy%'`);
    assert.deepEqual(left, []);
  });

  it('unreachable database: a few retries with backoff, then a clear failure; nothing stored', async () => {
    const { message, seconds } = await failureOf(() => opsflow.startBackup({ system: 'down' }));
    assert.match(message, /cannot connect to PostgreSQL at 127\.0\.0\.1:9.*ECONNREFUSED/);
    assert.ok(!message.includes('secret-pw-1234'));
    assert.ok(seconds >= 5 && seconds < 30, `retried with backoff for ${seconds} s`);
    assert.deepEqual((await storedObjects()).filter((k) => k.includes('/down/')), []);
  });

  it('wrong password: not retried, and the password is not in the message', async () => {
    const { message, seconds } = await failureOf(() => opsflow.startBackup({ system: 'locked' }));
    assert.match(message, /password authentication failed/);
    assert.ok(!message.includes(wrongPassword));
    assert.ok(seconds < 5, `took ${seconds} s`);
    assert.ok(!worker.logs().includes(wrongPassword));
  });

  it('unreadable config: the worker refuses to start and says why', async () => {
    const out = await runWorkerUntilExit({ ...setup.env, OPSFLOW_CONFIG: '/nonexistent/opsflow.yaml' });
    assert.equal(out.code, 1);
    assert.match(out.output, /cannot read config file \/nonexistent\/opsflow\.yaml: ENOENT/);
  });

  it('invalid config: the error gives the path and the reason', async () => {
    const path = `${setup.configPath}.invalid.yaml`;
    writeFileSync(path, 'version: 1\nsystems:\n  demo:\n    postgres:\n      url: postgresql://u:inline-secret@h/db\n    s3: {}\n');
    const out = await runWorkerUntilExit({ ...setup.env, OPSFLOW_CONFIG: path });
    assert.equal(out.code, 1);
    assert.match(out.output, /systems\.demo\.postgres\.url: must be a reference/);
    assert.match(out.output, /systems\.demo\.s3\.bucket: required/);
    assert.ok(!out.output.includes('inline-secret'));
  });
});

function runWorkerUntilExit(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [WORKER_ENTRY], { cwd: REPO_ROOT, env: { ...process.env, ...env } });
    let output = '';
    child.stdout.on('data', (c) => (output += c));
    child.stderr.on('data', (c) => (output += c));
    child.on('exit', (code) => resolve({ code, output }));
  });
}
