/**
 * Jobs against the real control plane: the real Job controller decides
 * Complete or Failed; kwok plays the kubelet (a Job's pod succeeds, or fails
 * for a bad-release image) and serves the `migrate` container's log. Covers
 * the verdicts, the failed pod's log in the error, a retry that must not
 * start a second Job, input checked before anything is created, and
 * cancellation of the wait.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatchV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { BAD_RELEASE_JOB_MESSAGE, DEFAULT_CONTAINER_LOG, FAKE_NODE_SELECTOR, FAKE_NODE_TOLERATION, startKubernetes, type KubernetesBed } from '../../deploy/bed/kubernetes/cluster.ts';
import { Jobs, type JobProgress, type JobSpec } from '../../src/adapters/kubernetes/jobs.ts';
import { ConflictError, InvalidInputError, RolloutError } from '../../src/errors.ts';

const namespace = 'default';
// 80 lines: more than the 50 the error keeps, so the test can tell a tail from the whole log.
const MIGRATION_LOG = [
  ...Array.from({ length: 79 }, (_, i) => `applying migration ${String(i + 1).padStart(4, '0')}_step`),
  'ERROR: migration failed: relation "x" does not exist',
].join('\n');

let dir: string;
let bed: KubernetesBed;
let batch: BatchV1Api;
let core: CoreV1Api;
let jobs: Jobs;

/** A Job the bed's fake nodes will run; the `migrate` container gets MIGRATION_LOG as its log. */
function spec(name: string, image: string, extra: Partial<JobSpec> = {}): JobSpec {
  return {
    namespace,
    name,
    image,
    command: ['./migrate', '--to', 'latest'],
    container: 'migrate',
    nodeSelector: FAKE_NODE_SELECTOR,
    tolerations: [FAKE_NODE_TOLERATION],
    ...extra,
  };
}

async function jobsNamed(name: string) {
  return (await batch.listNamespacedJob({ namespace, fieldSelector: `metadata.name=${name}` })).items;
}

async function podsOf(name: string) {
  return (await core.listNamespacedPod({ namespace, labelSelector: `batch.kubernetes.io/job-name=${name}` })).items;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'opsflow-k8s-jobs-'));
  bed = await startKubernetes({ dir, containerLogs: { migrate: MIGRATION_LOG } });
  const kc = new KubeConfig();
  kc.loadFromFile(bed.kubeconfigPath);
  batch = kc.makeApiClient(BatchV1Api);
  core = kc.makeApiClient(CoreV1Api);
  jobs = new Jobs(kc);
});

after(async () => {
  await bed?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('Jobs.run', () => {
  it('resolves when the Job controller marks the Job Complete', async () => {
    const t0 = Date.now();
    const seen: JobProgress[] = [];
    const result = await jobs.run(spec('migrate-ok', 'example/app:v2'), { onStatus: (p) => seen.push(p) });
    console.log(`job complete after ${Date.now() - t0} ms (job's own duration ${result.durationMs} ms)`);
    assert.deepEqual({ ...result, durationMs: undefined }, { namespace, name: 'migrate-ok', succeeded: 1, durationMs: undefined });
    assert.ok(result.durationMs >= 0 && result.durationMs < 30_000, `durationMs ${result.durationMs}`);
    assert.equal(seen.at(-1)?.succeeded, 1, `progress seen: ${JSON.stringify(seen)}`);

    const [job] = await jobsNamed('migrate-ok');
    const container = job?.spec?.template.spec?.containers[0];
    assert.equal(container?.name, 'migrate');
    assert.deepEqual(container?.command, ['./migrate', '--to', 'latest']);
    assert.equal(job?.spec?.backoffLimit, 0, 'a failed migration is not re-run by default');
    assert.equal(job?.spec?.template.spec?.restartPolicy, 'Never');
  });

  it('a second run of the same Job (a retry after a crash) creates nothing and returns the same result', async () => {
    const first = await jobs.run(spec('migrate-ok', 'example/app:v2'));
    const again = await jobs.run(spec('migrate-ok', 'example/app:v2'));
    assert.deepEqual(again, first);
    assert.equal((await jobsNamed('migrate-ok')).length, 1);
    assert.equal((await podsOf('migrate-ok')).length, 1, 'the command ran once');
  });

  it('runs concurrently started for the same Job share one Job', async () => {
    const results = await Promise.all([1, 2, 3].map(() => jobs.run(spec('migrate-race', 'example/app:v3'))));
    assert.ok(results.every((r) => r.succeeded === 1));
    assert.equal((await jobsNamed('migrate-race')).length, 1);
    assert.equal((await podsOf('migrate-race')).length, 1);
  });

  it('refuses an existing Job of that name with another image or command', async () => {
    await assert.rejects(jobs.run(spec('migrate-ok', 'example/app:v9')), (err: Error) => {
      assert.ok(err instanceof ConflictError, String(err));
      assert.match(err.message, /job default\/migrate-ok already exists with image "example\/app:v2", not "example\/app:v9"/);
      return true;
    });
    await assert.rejects(jobs.run(spec('migrate-ok', 'example/app:v2', { command: ['./migrate', '--down'] })), (err: Error) => {
      assert.ok(err instanceof ConflictError, String(err));
      assert.match(err.message, /already exists with a different command/);
      assert.doesNotMatch(err.message, /--down/, 'the command itself stays out of the message');
      return true;
    });
  });

  it('a failed Job rejects with JobFailed naming the Job and reason, with the tail of the pod log', async () => {
    const t0 = Date.now();
    let failure: Error | undefined;
    await assert.rejects(jobs.run(spec('migrate-bad', 'example/app:bad')), (err: Error) => {
      failure = err;
      return true;
    });
    console.log(`job failed after ${Date.now() - t0} ms; message:\n${failure?.message.split('\n').slice(0, 2).join('\n')}\n…`);
    assert.ok(failure instanceof RolloutError, String(failure));
    assert.equal(failure.type, 'JobFailed');
    const message = failure.message;
    assert.match(message, /^job default\/migrate-bad failed \(BackoffLimitExceeded: /);
    assert.match(message, new RegExp(`container "migrate" exited with code 1 \\(Error: ${BAD_RELEASE_JOB_MESSAGE.replace(/[()]/g, '\\$&')}\\)`));
    assert.match(message, /ERROR: migration failed: relation "x" does not exist$/, 'the log ends the message');
    assert.match(message, /applying migration 0079_step/);
    assert.match(message, /applying migration 0031_step/, '50 lines: 0031 … 0079 and the error');
    assert.doesNotMatch(message, /applying migration 0030_step/, 'only the tail');
    assert.ok(Buffer.byteLength(message) < 6 * 1024, `message is ${Buffer.byteLength(message)} bytes`);

    // A retry of a failed Job reports the same failure and runs nothing again.
    await assert.rejects(jobs.run(spec('migrate-bad', 'example/app:bad')), (err: Error) => err.message === message);
    assert.equal((await podsOf('migrate-bad')).length, 1);
  });

  it('a failed Job whose container has no log of its own shows the bed\'s default log', async () => {
    const { container: _, ...withDefaultContainer } = spec('backfill-bad', 'registry.example/bad-release:1');
    await assert.rejects(jobs.run(withDefaultContainer), (err: Error) => {
      assert.ok(err instanceof RolloutError && err.type === 'JobFailed', String(err));
      assert.match(err.message, /container "job" exited with code 1/);
      assert.ok(err.message.endsWith(`last log lines:\n${DEFAULT_CONTAINER_LOG.trim()}`), err.message);
      return true;
    });
  });

  it('activeDeadlineSeconds fails a Job that cannot finish (DeadlineExceeded)', async () => {
    // No toleration for the fake nodes: the pod stays Pending, so only the deadline ends it.
    const t0 = Date.now();
    await assert.rejects(
      jobs.run({ namespace, name: 'migrate-stuck', image: 'example/app:v2', command: ['true'], activeDeadlineSeconds: 2 }),
      (err: Error) => {
        assert.ok(err instanceof RolloutError && err.type === 'JobFailed', String(err));
        assert.match(err.message, /^job default\/migrate-stuck failed \(DeadlineExceeded: /);
        console.log(err.message);
        return true;
      },
    );
    console.log(`deadline-exceeded verdict after ${Date.now() - t0} ms`);
    assert.ok(Date.now() - t0 >= 2_000 - 1_000, 'not before the deadline (s resolution)');
  });

  it('an invalid image fails at once, naming the image, and creates nothing', async () => {
    const t0 = Date.now();
    await assert.rejects(jobs.run(spec('migrate-typo', 'Example/App:v2')), (err: Error) => {
      assert.ok(err instanceof InvalidInputError, String(err));
      assert.match(err.message, /image "Example\/App:v2" for job default\/migrate-typo has an invalid repository part "Example"/);
      return true;
    });
    assert.ok(Date.now() - t0 < 500);
    assert.equal((await jobsNamed('migrate-typo')).length, 0);
    await assert.rejects(jobs.run(spec('Migrate_Now', 'example/app:v2')), InvalidInputError);
    await assert.rejects(jobs.run(spec('migrate-empty', 'example/app:v2', { command: [] })), InvalidInputError);
    assert.equal((await batch.listNamespacedJob({ namespace })).items.filter((j) => /typo|Migrate|empty/.test(j.metadata?.name ?? '')).length, 0);
  });

  it('a wait stops when its signal aborts, leaving the Job for delete', async () => {
    const controller = new AbortController();
    // Pending forever (no toleration for the fake nodes), so only the abort can end the wait.
    const waiting = jobs.run({ namespace, name: 'migrate-wait', image: 'example/app:v2', command: ['true'] }, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('cancelled by test')), 300);
    const t0 = Date.now();
    await assert.rejects(waiting, /cancelled by test/);
    assert.ok(Date.now() - t0 < 2_000, 'stopped promptly');
    assert.equal((await jobsNamed('migrate-wait')).length, 1, 'the Job itself is left alone');

    assert.deepEqual(await jobs.delete(namespace, 'migrate-wait'), { deleted: true });
    assert.deepEqual(await jobs.delete(namespace, 'migrate-wait'), { deleted: false }, 'idempotent');
    await assert.rejects(jobs.run(spec('migrate-x', 'example/app:v2'), { signal: AbortSignal.abort(new Error('already cancelled')) }), /already cancelled/);
    assert.equal((await jobsNamed('migrate-x')).length, 0, 'an aborted run creates nothing');
  });
});
