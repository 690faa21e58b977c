/**
 * What a starting worker loads. The Kubernetes client library is about 70 MiB
 * of a worker's memory, so it is loaded only when a system first uses a
 * cluster (Systems.kubernetes); a static import of it anywhere in the
 * worker's module graph would undo that.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { WORKER_ENTRY } from '../../workers/build.ts';

/** Prints every bare package name the process resolves, on stderr. */
const RECORD_PACKAGES = `
import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(
  'export async function resolve(s, c, next) { if (/^[@a-z]/.test(s) && !s.startsWith("node:")) process.stderr.write("package " + s + "\\\\n"); return next(s, c); }'
));
`;

it('the compiled worker starts without loading the Kubernetes client library', async () => {
  const cwd = mkdtempSync(join(tmpdir(), 'worker-startup-')); // no opsflow.yaml here: the worker stops once its modules are loaded
  try {
    const run = promisify(execFile)(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(RECORD_PACKAGES)}`, WORKER_ENTRY], {
      cwd,
      env: { PATH: process.env.PATH },
      timeout: 30_000,
    });
    const { stderr } = await run.catch((err: { stderr?: string; killed?: boolean }) => {
      assert.ok(!err.killed, 'the worker did not stop on its missing config');
      return { stderr: err.stderr ?? '' };
    });
    const packages = new Set([...stderr.matchAll(/^package (\S+)$/gm)].map((m) => m[1]));
    assert.ok(packages.has('@temporalio/worker') && packages.has('@aws-sdk/client-s3'), `the hook saw the worker's packages: ${[...packages].join(', ')}`);
    assert.ok(!packages.has('@kubernetes/client-node'), 'a static import loads @kubernetes/client-node at startup');
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
});
