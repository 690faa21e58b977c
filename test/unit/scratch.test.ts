/**
 * Scratch space left by killed workers: a starting worker removes the
 * directories of processes that are gone and stops what still runs on them,
 * and leaves a running process's directories alone.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeScratchDir, sweepScratch, withScratchDir } from '../../src/scratch.ts';

const root = mkdtempSync(join(tmpdir(), 'scratch-test-'));
const savedTmp = process.env.TMPDIR;
const children: ChildProcess[] = [];

/** A process that runs until killed, with `path` on its command line (as a scratch redis-server has its --dir). */
async function runningOn(path: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 300_000)', path], { stdio: 'ignore' });
  children.push(child);
  await once(child, 'spawn');
  return child;
}

async function deadPid(): Promise<number> {
  const child = spawn('true');
  await once(child, 'exit');
  return child.pid!;
}

before(() => {
  process.env.TMPDIR = root; // tmpdir() follows it: the sweep sees this test's directories only
});

after(() => {
  for (const c of children) c.kill('SIGKILL');
  process.env.TMPDIR = savedTmp;
  rmSync(root, { recursive: true, force: true });
});

describe('scratch directories', () => {
  it('are named after this process and removed after use, also when the work fails', async () => {
    let seen = '';
    await assert.rejects(withScratchDir('rdb', async (dir) => {
      seen = dir;
      assert.match(dir, new RegExp(`/opsflow-${process.pid}-rdb-`));
      throw new Error('failed mid-way');
    }), /failed mid-way/);
    assert.equal(existsSync(seen), false);
  });

  it('a starting worker removes those of gone processes, stopping what runs on them; a live process keeps its own', async () => {
    const gone = join(root, `opsflow-${await deadPid()}-rdb-abc123`);
    mkdirSync(gone);
    const orphan = await runningOn(join(gone, 'dump.rdb'));
    const alive = await runningOn('nothing');
    const kept = join(root, `opsflow-${alive.pid}-redis-def456`);
    mkdirSync(kept);
    const other = join(root, 'not-opsflow');
    mkdirSync(other);
    // This process's own, as a restarted container's worker with the same pid finds them.
    const own = await makeScratchDir('verify');

    const exited = once(orphan, 'exit');
    const swept = await sweepScratch();
    assert.deepEqual(swept.directories.sort(), [gone, own].sort());
    assert.deepEqual(swept.processes, [orphan.pid]);
    const [, signal] = await exited;
    assert.equal(signal, 'SIGKILL');
    assert.equal(existsSync(gone), false);
    assert.equal(existsSync(own), false);
    assert.equal(existsSync(kept), true);
    assert.equal(existsSync(other), true);
    assert.equal(alive.exitCode, null, 'the live process runs on');
  });
});
