/**
 * SQLite in a pod, through PodExec against the real apiserver with kwok
 * running the commands on this machine (bed option localExec, so "the
 * container's" files are local files we can inspect): a snapshot restored in
 * the pod is staged and checked beside the live database, swapped in with the
 * live one's journal mode and permissions, swapped back, discarded and
 * removed, each step repeatable; a short or corrupt copy fails before
 * anything live changes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startKubernetes, type KubernetesBed } from '../../deploy/bed/kubernetes/cluster.ts';
import type { PodExec } from '../../src/adapters/kubernetes/exec.ts';
import {
  discardSqliteInPod,
  removeSqliteInPod,
  sqliteSnapshotInPod,
  stageSqliteInPod,
  swapBackSqliteInPod,
  swapInSqliteInPod,
  type PodSqliteTarget,
} from '../../src/adapters/sqlite.ts';
import { IntegrityError, NotFoundError } from '../../src/errors.ts';
import { podToExecInto } from '../support/kubernetes.ts';

const namespace = 'default';
const pod = 'hive';
let dir: string;
let bed: KubernetesBed;
let podExec: PodExec;
/** The live database, "in the container". */
let live: string;

const at = (path = live): PodSqliteTarget => ({ namespace, pod, container: 'app', path });
const sqlite = (file: string, sql: string) => execFileSync('sqlite3', [file, sql]).toString();
const dumpHash = (file: string) => createHash('sha256').update(execFileSync('sqlite3', [file, '.dump'])).digest('hex');
/** Header byte 18: 2 in WAL mode. */
const walFlag = (file: string) => readFileSync(file)[18];
const besides = () => readdirSync(join(live, '..')).filter((n) => n.startsWith(`${live.split('/').pop()}.`));

async function* chunksOf(data: Buffer, size = 64 * 1024): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < data.length; offset += size) yield data.subarray(offset, offset + size);
}

async function snapshot(): Promise<Buffer> {
  const snap = sqliteSnapshotInPod(podExec, at());
  const chunks: Buffer[] = [];
  for await (const chunk of snap.stream) chunks.push(chunk as Buffer);
  await snap.done;
  return Buffer.concat(chunks);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'opsflow-k8s-sqlite-'));
  bed = await startKubernetes({ dir, localExec: true });
  podExec = await podToExecInto(bed.kubeconfigPath, namespace, pod, 'example/hive:v1');
  mkdirSync(join(dir, 'exec', 'app', 'data'), { recursive: true });
  // Quotes, spaces and $ in the path: arguments reach sh as "$1", never as script text.
  live = join(dir, 'exec', 'app', 'data', `agent's "hive" $HOME.db`);
});

after(async () => {
  await bed?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('SQLite in a pod', () => {
  it('stage, swap in with the live journal mode and permissions, swap back, discard; every step repeats as a no-op', async () => {
    sqlite(live, "PRAGMA journal_mode=WAL; CREATE TABLE agents (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO agents (name) VALUES ('architect'), ('coder'), ('reviewer');");
    chmodSync(live, 0o640);
    const original = dumpHash(live);
    const data = await snapshot();
    sqlite(live, "DELETE FROM agents WHERE name = 'coder'; INSERT INTO agents (name) VALUES ('intruder');");
    const changed = dumpHash(live);

    const info = await stageSqliteInPod(podExec, at(), 'r1', chunksOf(data), { expectedBytes: data.length });
    assert.deepEqual(info.tables, { agents: 3 });
    assert.equal(dumpHash(live), changed, 'staging leaves the live database alone');

    await swapInSqliteInPod(podExec, at(), 'r1');
    await swapInSqliteInPod(podExec, at(), 'r1');
    assert.equal(dumpHash(live), original);
    assert.equal(walFlag(live), 2, 'WAL mode, as the live database was');
    assert.equal(statSync(live).mode & 0o777, 0o640);

    await swapBackSqliteInPod(podExec, at(), 'r1');
    await swapBackSqliteInPod(podExec, at(), 'r1');
    assert.equal(dumpHash(live), changed, 'the previous database is back');
    await discardSqliteInPod(podExec, at(), 'r1');
    assert.deepEqual(besides().filter((n) => !/-(wal|shm)$/.test(n)), []);

    // Kept this time: discard drops the previous database only.
    await stageSqliteInPod(podExec, at(), 'r2', chunksOf(data), { expectedBytes: data.length });
    await swapInSqliteInPod(podExec, at(), 'r2');
    await discardSqliteInPod(podExec, at(), 'r2');
    await discardSqliteInPod(podExec, at(), 'r2');
    assert.equal(dumpHash(live), original);
    assert.deepEqual(besides().filter((n) => !/-(wal|shm)$/.test(n)), []);
  });

  it('a short or corrupt copy fails before anything live changes, and cannot be swapped in', async () => {
    const data = await snapshot();
    const before = dumpHash(live);
    await assert.rejects(stageSqliteInPod(podExec, at(), 'r3', chunksOf(data.subarray(0, data.length - 4096)), { expectedBytes: data.length }), (err: Error) =>
      err instanceof IntegrityError && err.message.includes(`ended after ${data.length - 4096} of the expected ${data.length} bytes`));
    const corrupt = Buffer.from(data);
    corrupt[4096] = 0x01; // the table's page: no b-tree page type
    await assert.rejects(stageSqliteInPod(podExec, at(), 'r3', chunksOf(corrupt), { expectedBytes: data.length }), IntegrityError);
    assert.equal(dumpHash(live), before);
    await assert.rejects(swapInSqliteInPod(podExec, at(), 'r3'), NotFoundError, 'a failed stage cannot be swapped in');
    await discardSqliteInPod(podExec, at(), 'r3');
    assert.deepEqual(besides().filter((n) => !/-(wal|shm)$/.test(n)), []);
  });

  it('remove takes the database, its sidecars and every restore copy', async () => {
    const data = await snapshot();
    await stageSqliteInPod(podExec, at(), 'r4', chunksOf(data), { expectedBytes: data.length });
    await swapInSqliteInPod(podExec, at(), 'r4');
    await removeSqliteInPod(podExec, at(), 'r4');
    await removeSqliteInPod(podExec, at(), 'r4');
    assert.deepEqual(readdirSync(join(live, '..')), []);
  });
});
