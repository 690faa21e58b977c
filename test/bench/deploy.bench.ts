/**
 * Rollback benchmark (a script, not a test): `npm run bench:deploy [-- flags]`.
 *
 * On the beds (real Temporal, real control plane with kwok), releases a bad
 * image (its pods crash-loop) and times, in the same run:
 *   opsflow  the `deploy` workflow with the default analysis interval (10 s):
 *            from the first crash-looping pod to the rollback starting, and
 *            the rollback itself (undo, rolled out, measured healthy)
 *   kubectl  the runbooks' script: `kubectl set image`, then
 *            `kubectl rollout status --timeout=…` and `kubectl rollout undo`
 *            when it fails; it only learns of the failure when the
 *            Deployment's progress deadline passes
 * Both see the same Deployment (3 replicas, progressDeadlineSeconds from
 * --deadline, 600 by default in Kubernetes, 60 here so a run takes minutes).
 *
 * Flags: --interval 10 (s)  --deadline 60 (s)  --runs 1
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { promisify } from 'node:util';
import { AppsV1Api, CoreV1Api, Watch, type V1Pod } from '@kubernetes/client-node';
import { startBed } from '../../deploy/bed/bed.ts';
import { FAKE_NODE_SELECTOR, FAKE_NODE_TOLERATION, startKubernetes } from '../../deploy/bed/kubernetes/cluster.ts';
import { Kubernetes } from '../../src/adapters/kubernetes/index.ts';
import { testDeployment } from '../support/kubernetes.ts';

const { values: flags } = parseArgs({
  options: {
    interval: { type: 'string', default: '10' },
    deadline: { type: 'string', default: '60' },
    runs: { type: 'string', default: '1' },
  },
});
const INTERVAL = Number(flags.interval);
const DEADLINE = Number(flags.deadline);
const RUNS = Number(flags.runs);
const run = promisify(execFile);
const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);

const dir = mkdtempSync(join(tmpdir(), 'opsflow-bench-deploy-'));
const bed = await startBed({ dir });
Object.assign(process.env, bed.env, { OPSFLOW_TEST_DIR: dir });
const k8s = await startKubernetes({ dir: join(dir, 'k8s') });
const { testSetup, startWorker, client } = await import('../support/bed.ts');
const kube = Kubernetes.connect({ kubeconfig: k8s.kubeconfigPath });
const apps = kube.kc.makeApiClient(AppsV1Api);
const namespace = 'bench';
await kube.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });

/** Resolves with the time the first pod of `image` is seen crash-looping. */
async function firstCrashLoop(image: string): Promise<{ at: Promise<number>; stop(): void }> {
  let resolveAt!: (t: number) => void;
  const at = new Promise<number>((r) => (resolveAt = r));
  const req = await new Watch(kube.kc).watch(`/api/v1/namespaces/${namespace}/pods`, {}, (_phase, p: V1Pod) => {
    if (p.spec?.containers[0]?.image === image && p.status?.containerStatuses?.some((c) => c.state?.waiting?.reason === 'CrashLoopBackOff')) resolveAt(Date.now());
  }, () => undefined);
  return { at, stop: () => req.abort() };
}

async function freshDeployment(name: string): Promise<void> {
  const d = testDeployment(name, 'example/app:v1', 3);
  d.spec!.progressDeadlineSeconds = DEADLINE;
  await apps.createNamespacedDeployment({ namespace, body: d });
  await kube.workloads.waitForRollout({ kind: 'Deployment', namespace, name });
}

const results: { method: string; detectToRollbackMs: number; rollbackMs: number }[] = [];

const kubernetesSection = (name: string) => ({
  kubeconfig: k8s.kubeconfigPath,
  namespace,
  workloads: [{ kind: 'Deployment', name }],
  podPlacement: { nodeSelector: FAKE_NODE_SELECTOR, tolerations: [FAKE_NODE_TOLERATION] },
});
try {
  for (let i = 0; i < RUNS; i++) {
    // ---- opsflow
    const name = `app-${i}`;
    await freshDeployment(name);
    const system = `bench-${i}`;
    const benchSetup = testSetup(system, { [system]: 'none' }, {
      [system]: { kubernetes: kubernetesSection(name), deploy: { checks: { database: false }, analysis: { intervalSeconds: INTERVAL, bakeSeconds: 0 } } },
    });
    const worker = await startWorker(benchSetup);
    const opsflow = await client(benchSetup);
    const crash = await firstCrashLoop('example/app:bad');
    const started = await opsflow.startDeploy({ system, images: { app: 'example/app:bad' } });
    await started.result().catch(() => undefined);
    const observed = await crash.at;
    crash.stop();
    const rollback = (await opsflow.status(started.workflowId)).deploy?.rollback;
    if (!rollback?.completedAt) throw new Error(`opsflow did not roll back: ${JSON.stringify(await opsflow.status(started.workflowId))}`);
    results.push({
      method: `opsflow (interval ${INTERVAL} s)`,
      detectToRollbackMs: Date.parse(rollback.startedAt) - observed,
      rollbackMs: Date.parse(rollback.completedAt) - Date.parse(rollback.startedAt),
    });
    await opsflow.close();
    await worker.stop();

    // ---- the runbook's kubectl script
    const plain = `plain-${i}`;
    await freshDeployment(plain);
    const kubectl = (...args: string[]) => run('kubectl', ['--kubeconfig', k8s.kubeconfigPath, '-n', namespace, ...args]);
    const plainCrash = await firstCrashLoop('example/plain:bad');
    await kubectl('set', 'image', `deployment/${plain}`, 'app=example/plain:bad');
    let failedAt = 0;
    await kubectl('rollout', 'status', `deployment/${plain}`, '--timeout=300s').catch(() => (failedAt = Date.now()));
    const plainObserved = await plainCrash.at;
    plainCrash.stop();
    await kubectl('rollout', 'undo', `deployment/${plain}`);
    await kubectl('rollout', 'status', `deployment/${plain}`, '--timeout=300s');
    results.push({ method: `kubectl rollout status + undo (deadline ${DEADLINE} s)`, detectToRollbackMs: failedAt - plainObserved, rollbackMs: Date.now() - failedAt });
    log(`run ${i + 1}/${RUNS} done`);
  }
} finally {
  await k8s.stop();
  await bed.stop();
  rmSync(dir, { recursive: true, force: true });
}

process.stdout.write(`\n${'method'.padEnd(48)} ${'failure → rollback starts'.padStart(26)} ${'rollback takes'.padStart(15)}\n`);
for (const r of results) {
  process.stdout.write(`${r.method.padEnd(48)} ${`${(r.detectToRollbackMs / 1000).toFixed(1)} s`.padStart(26)} ${`${(r.rollbackMs / 1000).toFixed(1)} s`.padStart(15)}\n`);
}
const opsflowWorst = Math.max(...results.filter((r) => r.method.startsWith('opsflow')).map((r) => r.detectToRollbackMs));
process.stdout.write(`target: rollback starts within ${INTERVAL} s + 5 s of the failure: ${opsflowWorst <= (INTERVAL + 5) * 1000 ? 'met' : 'NOT met'} (worst ${(opsflowWorst / 1000).toFixed(1)} s)\n`);
process.stdout.write(`${JSON.stringify({ interval: INTERVAL, deadline: DEADLINE, results })}\n`);
process.exit(0);
