/**
 * The adapters against the real peers: S3 multipart uploads that fail or are
 * aborted leave nothing behind; PostgreSQL errors are typed (unavailable vs
 * rejected vs not found); renames are idempotent and refuse to clobber; a
 * table copied in heap-page ranges arrives whole, each range counted.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { bedStore, pgUrl } from '../support/bed.ts';
import { dropDatabase, sql } from '../support/data.ts';
import { PostgresAdapter, type RowRange } from '../../src/adapters/postgres.ts';
import { spawn } from 'node:child_process';
import { ConflictError, IntegrityError, NotFoundError, PeerRejectedError, PeerUnavailableError } from '../../src/errors.ts';

const prefix = `integration/${randomBytes(3).toString('hex')}`;
const pg = new PostgresAdapter({ binDir: process.env.OPSFLOW_PG_BIN });

after(async () => {
  for (const db of ['adapter_a', 'adapter_b', 'adapter_c', 'adapter_rows_from', 'adapter_rows_to']) await dropDatabase(db);
});

async function* chunks(total: number, size = 1024 * 1024, failAt?: number): AsyncGenerator<Buffer> {
  for (let sent = 0; sent < total; sent += size) {
    if (failAt !== undefined && sent >= failAt) throw new Error('source broke');
    yield randomBytes(Math.min(size, total - sent));
  }
}

describe('S3 adapter (MinIO)', () => {
  /** Uploads `total` random bytes to `key` and checks they read back identical; resolves with the part count. */
  async function roundTrip(key: string, total: number): Promise<number> {
    const store = bedStore();
    const hashIn = createHash('sha256');
    async function* body() {
      for await (const c of chunks(total, 700 * 1024)) {
        hashIn.update(c);
        yield c;
      }
    }
    const r = await store.uploadStream(key, body());
    assert.equal(r.sizeBytes, total);
    assert.equal((await store.head(key))?.size, total);
    const hashOut = createHash('sha256');
    for await (const c of (await store.getStream(key)).body) hashOut.update(c as Buffer);
    assert.equal(hashOut.digest('hex'), hashIn.digest('hex'), `${key} reads back as uploaded`);
    return r.parts;
  }

  it('streams a multi-part object whose bytes read back identical (part buffers reused: more parts than buffers)', async () => {
    assert.equal(await roundTrip(`${prefix}/multi.bin`, 44 * 1024 * 1024 + 12345), 6, '8 MiB parts');
  });

  it('uploads at once share the part buffers without mixing their bytes, and later uploads reuse them', async () => {
    const sizes = [30 * 1024 * 1024 + 1, 20 * 1024 * 1024 + 777, 9 * 1024 * 1024];
    const parts = await Promise.all(sizes.map((size, i) => roundTrip(`${prefix}/shared-${i}.bin`, size)));
    assert.deepEqual(parts, [4, 3, 2]);
    // Again, now that the buffers of those uploads (their shorter last parts too) are back in the pool.
    assert.deepEqual(await Promise.all(sizes.map((size, i) => roundTrip(`${prefix}/shared-again-${i}.bin`, size))), [4, 3, 2]);
  });

  it("an object whose stored size is not what was sent is an IntegrityError naming both sizes (checked after every upload)", async () => {
    const store = bedStore();
    const key = `${prefix}/sized.bin`;
    const { sizeBytes } = await store.uploadStream(key, chunks(1000, 300));
    await store.checkStoredSize(key, sizeBytes);
    await assert.rejects(store.checkStoredSize(key, sizeBytes + 1), (err: Error) => err instanceof IntegrityError && /holds 1000 bytes after an upload of 1001 bytes/.test(err.message));
    await assert.rejects(store.checkStoredSize(`${prefix}/never.bin`, 5), (err: Error) => err instanceof IntegrityError && /holds nothing/.test(err.message));
  });

  it('a source that fails mid-way aborts the upload: no object, no incomplete upload', async () => {
    const store = bedStore();
    const key = `${prefix}/broken.bin`;
    await assert.rejects(store.uploadStream(key, chunks(30 * 1024 * 1024, 1024 * 1024, 12 * 1024 * 1024)), /source broke/);
    assert.equal(await store.head(key), undefined);
    assert.deepEqual(await store.incompleteUploads(key), []);
  });

  it('an abandoned upload (a crashed worker) is found and aborted by key', async () => {
    const store = bedStore();
    const key = `${prefix}/abandoned.bin`;
    const { CreateMultipartUploadCommand } = await import('@aws-sdk/client-s3');
    await store.client.send(new CreateMultipartUploadCommand({ Bucket: store.bucket, Key: key }));
    assert.equal((await store.incompleteUploads(key)).length, 1);
    assert.equal(await store.abortIncompleteUploads(key), 1);
    assert.deepEqual(await store.incompleteUploads(key), []);
  });

  it('a missing object is NotFound; bad credentials are PeerRejected', async () => {
    await assert.rejects(bedStore().getJson(`${prefix}/nothing.json`), NotFoundError);
    const { ObjectStore } = await import('../../src/adapters/s3.ts');
    const wrong = new ObjectStore({ bucket: bedStore().bucket, region: 'us-east-1', endpoint: process.env.BED_S3_ENDPOINT, forcePathStyle: true, credentials: { accessKeyId: 'nobody', secretAccessKey: 'wrong-secret-value' } });
    await assert.rejects(wrong.putJson(`${prefix}/x.json`, {}), PeerRejectedError);
  });
});

describe('PostgreSQL adapter', () => {
  it('types its errors: down → unavailable (retry), bad password → rejected (stop), no database → not found', async () => {
    await assert.rejects(pg.serverInfo('postgresql://postgres:x@127.0.0.1:9/postgres'), PeerUnavailableError);
    const wrong = new URL(pgUrl('postgres'));
    wrong.password = 'not-the-password';
    await assert.rejects(pg.serverInfo(wrong.toString()), (err: Error) => err instanceof PeerRejectedError && !err.message.includes('not-the-password'));
    await assert.rejects(pg.serverInfo(pgUrl('no_such_db')), NotFoundError);
  });

  it('renames idempotently and never onto an existing database', async () => {
    const url = pgUrl('postgres');
    for (const db of ['adapter_a', 'adapter_b', 'adapter_c']) await dropDatabase(db);
    await pg.createDatabase(url, 'adapter_a');
    await pg.createDatabase(url, 'adapter_c');
    await pg.renameDatabase(url, 'adapter_a', 'adapter_b', { closeFrom: true });
    await pg.renameDatabase(url, 'adapter_a', 'adapter_b'); // already done: succeeds
    assert.ok(await pg.databaseExists(url, 'adapter_b'));
    const [row] = await sql<{ datallowconn: boolean }>('postgres', `SELECT datallowconn FROM pg_database WHERE datname = 'adapter_b'`);
    assert.equal(row?.datallowconn, false, 'closeFrom closed it to new connections');
    await assert.rejects(pg.renameDatabase(url, 'adapter_b', 'adapter_c'), ConflictError);
    await assert.rejects(pg.renameDatabase(url, 'adapter_x', 'adapter_y'), NotFoundError);
  });

  it('copies a table in heap-page ranges, and says how many rows each range stored', async () => {
    const url = pgUrl('postgres');
    const [from, to] = ['adapter_rows_from', 'adapter_rows_to'];
    for (const db of [from, to]) {
      await dropDatabase(db);
      await pg.createDatabase(url, db);
      await sql(db, `CREATE TABLE t (id int, body text, gone int, len int GENERATED ALWAYS AS (length(body)) STORED); ALTER TABLE t DROP COLUMN gone`);
    }
    await sql(from, `INSERT INTO t (id, body) SELECT i, repeat(E'\\t\\n' || i, i % 7) FROM generate_series(1, 5000) i`);
    const { client, snapshot } = await pg.openSnapshot(pgUrl(from));
    try {
      const layout = await pg.tableLayout(client, { schema: 'public', name: 't' });
      assert.deepEqual(layout.columns, ['id', 'body'], 'neither the generated nor the dropped column');
      const middle = Math.floor(layout.pages / 2);
      assert.ok(middle > 0, `${layout.pages} pages: enough for two ranges`);
      const ranges: RowRange[] = [
        { table: { schema: 'public', name: 't' }, columns: layout.columns, fromPage: 0, toPage: middle, encoding: layout.encoding },
        { table: { schema: 'public', name: 't' }, columns: layout.columns, fromPage: middle, encoding: layout.encoding },
      ];
      const stored: number[] = [];
      for (const range of ranges) {
        const out = pg.startCopyOut(pgUrl(from), range, { snapshot });
        stored.push(await pg.copyIn(pgUrl(to), range, out.stdout, {}).rows);
        await out.done;
      }
      const [first] = await sql<{ n: string }>(from, `SELECT count(*) AS n FROM t WHERE ctid < '(${middle},0)'::tid`);
      assert.equal(stored[0], Number(first!.n));
      assert.equal(stored[0]! + stored[1]!, 5000);
      const [copy] = await sql<{ n: string; sum: string }>(to, 'SELECT count(*) AS n, sum(len) AS sum FROM t');
      const [orig] = await sql<{ sum: string }>(from, 'SELECT sum(len) AS sum FROM t');
      assert.deepEqual(copy, { n: '5000', sum: orig!.sum }, 'every row, with its text as it was');
    } finally {
      await client.end();
    }
    const bad = spawn('printf', ['%s\\t%s\\n', 'not-a-number', 'x'], { stdio: ['ignore', 'pipe', 'ignore'] }).stdout;
    const range: RowRange = { table: { schema: 'public', name: 't' }, columns: ['id', 'body'], fromPage: 0, encoding: 'UTF8' };
    await assert.rejects(pg.copyIn(pgUrl(to), range, bad, {}).rows, /invalid input syntax for type integer/);
  });
});
