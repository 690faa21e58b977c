/**
 * `npm test`: starts one local bed (real Temporal, PostgreSQL, Redis, MinIO)
 * and builds the worker as it is deployed (`npm run build`: compiled, with
 * its workflow bundle), then runs every test file with node's
 * test runner against it, and stops the bed. Tiers run in order: unit,
 * integration, end-to-end, Kubernetes. `npm test -- test/e2e/crash.test.ts`
 * runs a subset.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBed, REPO_ROOT } from '../deploy/bed/bed.ts';
import { build } from '../workers/build.ts';

// kubernetes/ files start their own control plane (deploy/bed/kubernetes/cluster.ts).
const tiers = ['unit', 'integration', 'e2e', 'kubernetes'];
const requested = process.argv.slice(2);
const files = requested.length
  ? requested
  : tiers.flatMap((tier) =>
      (existsSync(join(REPO_ROOT, 'test', tier)) ? readdirSync(join(REPO_ROOT, 'test', tier)) : [])
        .filter((f) => f.endsWith('.test.ts'))
        .sort()
        .map((f) => join('test', tier, f)),
    );

const dir = mkdtempSync(join(tmpdir(), 'opsflow-test-'));
const started = Date.now();
const building = build();
building.catch(() => undefined); // awaited once the bed is up, so a failed build can stop it
const bed = await startBed({ dir });
await building.catch(async (err: unknown) => {
  await bed.stop();
  throw err;
});
process.stderr.write(`[test] bed and worker build ready in ${Date.now() - started} ms (${dir})\n`);

// A test file that hangs fails after 10 minutes instead of holding CI to its limit.
const code = await new Promise<number>((resolve) => {
  const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-timeout=600000', '--test-reporter=spec', ...files], {
    cwd: REPO_ROOT,
    stdio: 'inherit',
    env: { ...process.env, ...bed.env, OPSFLOW_TEST_DIR: dir },
  });
  child.on('exit', (c) => resolve(c ?? 1));
});

await bed.stop();
if (code === 0 && !process.env.OPSFLOW_KEEP_TEST_DIR) rmSync(dir, { recursive: true, force: true });
process.exit(code);
