/**
 * The whole path once, for real: a database is backed up to S3 by the backup
 * workflow, dropped, and restored by the restore workflow; every table's
 * contents and the schema are identical. Also: `--into`, the approval gate,
 * and that no secret reaches workflow history.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { client, startWorker, testSetup, bedEnv, bedStore, type WorkerProcess } from '../support/bed.ts';
import { createSampleDatabase, dropDatabase, schemaOf, sql, tableChecksums } from '../support/data.ts';
import type { OpsflowClient } from '../../src/client.ts';
import { freePort } from '../../deploy/bed/bed.ts';
import { ConflictError, innermostMessage } from '../../src/errors.ts';
import { componentStoredBytes, findComponent, type PostgresComponent } from '../../src/domain/manifest.ts';
import { randomBytes } from 'node:crypto';
import { describeManifest } from '../../src/cli.ts';

const DB = 'rt_app';
/** `shopsplit`: the same database, backed up split into a schema and 3 data parts, encrypted. */
const SPLIT = { jobs: 3 };
const setup = testSetup('roundtrip', { shop: DB, shopsplit: DB }, {
  shopsplit: {
    backup: {
      components: [{ kind: 'postgres', jobs: SPLIT.jobs, splitFromBytes: 0 }],
      encryption: { current: 'k1', keys: { k1: { env: 'RT_MASTER_KEY' } } },
    },
  },
});
const masterKey = randomBytes(32).toString('base64');
let worker: WorkerProcess;
let opsflow: OpsflowClient;
let healthPort: number;

before(async () => {
  await createSampleDatabase(DB, 30_000);
  healthPort = await freePort();
  worker = await startWorker(setup, { OPSFLOW_HEALTH_PORT: String(healthPort), RT_MASTER_KEY: masterKey });
  opsflow = await client(setup);
});

after(async () => {
  await opsflow?.close();
  await worker?.stop();
  for (const db of [DB, `${DB}_old`, 'rt_copy', 'rt_split_copy']) await dropDatabase(db);
});

describe('PostgreSQL backup and restore round trip', () => {
  it('the worker answers its readiness probe while polling', async () => {
    const ready = await fetch(`http://127.0.0.1:${healthPort}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal(await ready.text(), 'running\n');
  });

  let checksums: Record<string, string>;
  let schema: string;
  let backupId: string;

  it('backs up to S3 with a manifest that records sizes, checksum and row counts', async () => {
    checksums = await tableChecksums(DB);
    schema = schemaOf(DB);
    const run = await opsflow.startBackup({ system: 'shop' });
    const result = await run.result();
    backupId = result.backupId;
    const pgc = findComponent(result.manifest!, 'postgres') as PostgresComponent;
    assert.equal(pgc.rowCounts['app.documents'], 30_000);
    assert.equal(pgc.rowCounts['audit.events'], 500);
    assert.equal(pgc.rowCounts['public.empty_table'], 0);
    assert.match(pgc.sha256, /^[0-9a-f]{64}$/);
    assert.ok(pgc.storedBytes < pgc.rawBytes, 'stored object is compressed');
    const head = await bedStore().head(pgc.key);
    assert.equal(head?.size, pgc.storedBytes);
    assert.deepEqual(await bedStore().incompleteUploads(setup.prefix), []);
  });

  it('restores into a new database without touching the live one', async () => {
    await sql(DB, `INSERT INTO app.users (name) VALUES ('written after the backup')`);
    const run = await opsflow.startRestore({ system: 'shop', backup: backupId, into: 'rt_copy' });
    const result = await run.result();
    assert.equal(result.plan.mode, 'into');
    assert.deepEqual(await tableChecksums('rt_copy'), checksums);
    assert.notDeepEqual(await tableChecksums(DB), checksums, 'live database keeps the later write');
  });

  it('split: the largest table in row ranges, the others by table, one snapshot, encrypted, restored in parallel into a new database, identical', async () => {
    const live = { checksums: await tableChecksums(DB), schema: schemaOf(DB) };
    const backup = await (await opsflow.startBackup({ system: 'shopsplit' })).result();
    const pgc = findComponent(backup.manifest!, 'postgres') as PostgresComponent;
    assert.equal(pgc.format, 'pg_dump-custom-split');
    const parts = pgc.dataParts!;
    // The largest table is more than a part's share: its rows are cut into ranges of heap pages, end to end.
    const ranges = parts.filter((p) => p.rows);
    assert.ok(ranges.length >= 2 && ranges.length <= SPLIT.jobs, `${ranges.length} row ranges`);
    assert.deepEqual(parts.slice(0, ranges.length), ranges, 'the ranges come first');
    for (const [i, range] of ranges.entries()) {
      assert.deepEqual(range.tables, ['app.documents']);
      assert.equal(range.rows!.fromPage, i === 0 ? 0 : ranges[i - 1]!.rows!.toPage);
      assert.equal(range.rows!.toPage === undefined, i === ranges.length - 1, 'only the last range is open-ended');
      assert.ok(!range.rows!.columns.includes('title_length') && !range.rows!.columns.includes('draft'), 'no generated or dropped column is copied');
    }
    const archives = parts.slice(ranges.length);
    assert.deepEqual(archives.map((p) => p.rest), [false, true], 'then pg_dump archives, the last taking every other table');
    const named = archives.flatMap((p) => p.tables);
    assert.equal(new Set(named).size, named.length, 'no table in two archives');
    assert.ok(!named.includes('app.documents'));
    assert.ok(named.every((t) => t in pgc.rowCounts));
    for (const object of [pgc, ...parts]) {
      assert.ok(object.encrypted && object.key.endsWith('.enc'), `${object.key} is encrypted`);
      assert.equal((await bedStore().head(object.key))?.size, object.storedBytes, `${object.key} as the manifest says`);
    }
    assert.ok(componentStoredBytes(pgc) > pgc.storedBytes + parts[0]!.storedBytes);
    const described = describeManifest(backup.manifest!);
    assert.match(described, new RegExp(`schema and rows in ${parts.length} parts, restored in parallel`));
    for (const part of parts) assert.ok(described.includes(part.key), `backups describe lists ${part.key}`);
    assert.match(described, new RegExp(`rows of app\\.documents in heap pages 0 to ${ranges[0]!.rows!.toPage! - 1}\\n`));

    const restored = await (await opsflow.startRestore({ system: 'shopsplit', backup: backup.backupId, into: 'rt_split_copy' })).result();
    assert.equal(restored.plan.mode, 'into');
    assert.deepEqual(await tableChecksums('rt_split_copy'), live.checksums, 'rows, large objects and sequences as backed up (no trigger fired on load)');
    assert.equal(schemaOf('rt_split_copy'), live.schema);
    const failure = async (p: Promise<unknown>) => p.then(() => assert.fail('expected the run to fail'), (err: unknown) => innermostMessage(err));

    // The ranged table is counted by its COPYs: a manifest that says one row more fails the restore, and leaves no database.
    const manifestKey = `${pgc.key.slice(0, pgc.key.lastIndexOf('/') + 1)}manifest.json`;
    const original = await bedStore().getJson(manifestKey);
    const oneRowMore = structuredClone(backup.manifest!);
    (findComponent(oneRowMore, 'postgres') as PostgresComponent).rowCounts['app.documents']! += 1;
    await bedStore().putJson(manifestKey, oneRowMore);
    const countError = await failure((await opsflow.startRestore({ system: 'shopsplit', backup: backup.backupId, into: 'rt_split_counts' })).result());
    assert.match(countError, /row counts differ from the manifest in 1 table\(s\): app\.documents: expected 30001, got 30000/);
    assert.deepEqual(await sql('postgres', `SELECT datname FROM pg_database WHERE datname LIKE 'rt_split_counts%'`), []);
    await bedStore().putJson(manifestKey, original);

    // One data part corrupted: verification and a restore fail naming it, and leave no database behind.
    const part = parts[1]!;
    const { body } = await bedStore().getStream(part.key);
    const bytes = Buffer.concat((await body.toArray()) as Buffer[]);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    await bedStore().uploadStream(part.key, (async function* () { yield bytes; })());
    const verifyError = await failure((await opsflow.startVerify({ system: 'shopsplit', backup: backup.backupId })).result());
    assert.match(verifyError, /corrupt|failed authentication/);
    assert.ok(verifyError.includes(part.key), `the message names the object: ${verifyError}`);
    const restoreError = await failure((await opsflow.startRestore({ system: 'shopsplit', backup: backup.backupId, into: 'rt_split_again' })).result());
    assert.match(restoreError, /corrupt|failed authentication/);
    const left = await sql<{ datname: string }>('postgres', `SELECT datname FROM pg_database WHERE datname LIKE 'rt_split_again%'`);
    assert.deepEqual(left, [], 'no database left by the failed restore');
  });

  it('after the live database is dropped, a swap restore from latest brings back identical data and schema', async () => {
    await dropDatabase(DB);
    await sql('postgres', `CREATE DATABASE ${DB}`);
    await sql(DB, 'CREATE TABLE wrong (x int)');
    const run = await opsflow.startRestore({ system: 'shop', backup: 'latest' });
    // The swap replaces the live database: it waits for an approval.
    const waiting = await eventuallyAwaiting(run.workflowId);
    assert.equal(waiting.plan.backupId, backupId);
    const retiredNames = async () => (await sql<{ datname: string }>('postgres', `SELECT datname FROM pg_database WHERE datname LIKE '${DB}_old%'`)).map((r) => r.datname);
    assert.deepEqual(await retiredNames(), [], 'nothing is changed before the approval');
    // One restore per target at a time: a second caller is refused, told which run holds it.
    await assert.rejects(opsflow.startRestore({ system: 'shop', backup: 'latest' }), (err: Error) => {
      assert.ok(err instanceof ConflictError);
      assert.match(err.message, new RegExp(`already running as workflow ${run.workflowId}`));
      return true;
    });
    await opsflow.approve(run.workflowId, 'test-sre');
    const result = await run.result();
    assert.equal(result.approvedBy, 'test-sre');
    assert.deepEqual(await tableChecksums(DB), checksums);
    assert.equal(schemaOf(DB), schema);
    const [retired] = await retiredNames();
    assert.match(retired ?? '', new RegExp(`^${DB}_old_[0-9a-z]{6}$`), 'the replaced database is kept under a name of this run');
    const [old] = await sql<{ datallowconn: boolean }>('postgres', 'SELECT datallowconn FROM pg_database WHERE datname = $1', [retired]);
    assert.equal(old?.datallowconn, false, 'the replaced database is kept for rollback, closed to connections');
    await sql('postgres', `ALTER DATABASE ${retired} WITH ALLOW_CONNECTIONS true`);
    assert.deepEqual(Object.keys(await tableChecksums(retired!)), ['public.wrong']);
    await dropDatabase(retired!);
  });

  it('keeps secrets out of workflow history', async () => {
    const histories: string[] = [];
    for await (const wf of opsflow.temporal.workflow.list({ query: `TaskQueue = "${setup.taskQueue}"` })) {
      histories.push(JSON.stringify(await opsflow.temporal.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory()));
    }
    assert.ok(histories.length >= 3);
    const secrets = [new URL(bedEnv('BED_PG_SUPERUSER_URL')).password, bedEnv('BED_S3_SECRET_ACCESS_KEY'), masterKey];
    for (const h of histories) for (const s of secrets) assert.ok(!h.includes(s), 'a secret appears in history');
    for (const s of secrets) assert.ok(!worker.logs().includes(s), 'a secret appears in the worker log');
  });

  async function eventuallyAwaiting(workflowId: string) {
    for (let i = 0; i < 300; i++) {
      const status = await opsflow.status(workflowId).catch(() => undefined);
      if (status?.awaitingApproval) return status.awaitingApproval;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error('restore never asked for approval');
  }
});
