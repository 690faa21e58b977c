/**
 * The adapters against the real peers: S3 multipart uploads that fail or are
 * aborted leave nothing behind; PostgreSQL errors are typed (unavailable vs
 * rejected vs not found); renames are idempotent and refuse to clobber.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { bedStore, pgUrl } from '../support/bed.ts';
import { dropDatabase, sql } from '../support/data.ts';
import { PostgresAdapter } from '../../src/adapters/postgres.ts';
import { ConflictError, NotFoundError, PeerRejectedError, PeerUnavailableError } from '../../src/errors.ts';

const prefix = `integration/${randomBytes(3).toString('hex')}`;
const pg = new PostgresAdapter({ binDir: process.env.OPSFLOW_PG_BIN });

after(async () => {
  for (const db of ['adapter_a', 'adapter_b', 'adapter_c']) await dropDatabase(db);
});

async function* chunks(total: number, size = 1024 * 1024, failAt?: number): AsyncGenerator<Buffer> {
  for (let sent = 0; sent < total; sent += size) {
    if (failAt !== undefined && sent >= failAt) throw new Error('source broke');
    yield randomBytes(Math.min(size, total - sent));
  }
}

describe('S3 adapter (MinIO)', () => {
  it('streams a multi-part object whose bytes read back identical (part buffers reused: more parts than buffers)', async () => {
    const store = bedStore();
    const key = `${prefix}/multi.bin`;
    const total = 44 * 1024 * 1024 + 12345;
    const hashIn = createHash('sha256');
    async function* body() {
      for await (const c of chunks(total, 700 * 1024)) {
        hashIn.update(c);
        yield c;
      }
    }
    const r = await store.uploadStream(key, body());
    assert.equal(r.sizeBytes, total);
    assert.equal(r.parts, 6, '8 MiB parts');
    assert.equal((await store.head(key))?.size, total);
    const hashOut = createHash('sha256');
    for await (const c of (await store.getStream(key)).body) hashOut.update(c as Buffer);
    assert.equal(hashOut.digest('hex'), hashIn.digest('hex'));
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
});
