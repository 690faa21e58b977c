/**
 * A real Kubernetes control plane for tests: etcd, kube-apiserver,
 * kube-controller-manager and kube-scheduler on free loopback ports, plus kwok
 * faking two nodes. Deployments roll out through the real controllers and
 * scheduler; kwok only writes the pod status a kubelet would. Binaries come
 * from install.sh next to this file (it records them in paths.env).
 *
 * Bad releases: pods whose container image matches `badImagePattern` never
 * become Ready (CrashLoopBackOff), so their Deployment ends with
 * ProgressDeadlineExceeded; a Job's pod with such an image fails (exit code 1),
 * so the real Job controller marks the Job Failed. Any other Job's pod
 * succeeds at once. `kubectl logs` of a fake container shows `containerLogs`
 * for its name, else a default line (kwok ClusterLogs). See README.md.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { CoreV1Api, Health, KubeConfig, type V1Node } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { freePorts, startDaemon, stopDaemon, waitFor, type Daemon } from '../daemons.ts';

export interface KubernetesOptions {
  dir: string;
  /** Go regexp on container images (kwok evaluates it with jq's `test`); matching pods never become Ready. */
  badImagePattern?: string;
  /**
   * Let `kubectl exec` into a fake pod run the command on this machine, in
   * `dir/exec`. Off by default: kwok's kubelet port takes commands from anyone
   * on loopback without authentication.
   */
  localExec?: boolean;
  /**
   * Container name → what `kubectl logs` shows for containers of that name in
   * any fake pod; other containers show DEFAULT_CONTAINER_LOG. kwok picks a
   * log by pod and container name only, never by image or outcome.
   */
  containerLogs?: Record<string, string>;
}

export interface KubernetesBed {
  kubeconfigPath: string;
  server: string;
  adminToken: string;
  startupMs: number;
  stop(): Promise<void>;
}

export const DEFAULT_BAD_IMAGE_PATTERN = ':bad$|bad-release';
/** What `kubectl logs` shows for a fake container without an entry in `containerLogs`. */
export const DEFAULT_CONTAINER_LOG = 'kwok fake container: no process ran, this is the bed\'s default log\n';
/** The terminated message a bad release's Job pod gets (containerStatuses[].state.terminated.message). */
export const BAD_RELEASE_JOB_MESSAGE = 'bad release (kwok stage pod-bad-release-job)';
export const FAKE_NODES = ['kwok-node-0', 'kwok-node-1'];
/** What a pod spec needs to land on the fake nodes. */
export const FAKE_NODE_SELECTOR = { type: 'kwok' };
export const FAKE_NODE_TOLERATION = { key: 'kwok.x-k8s.io/node', operator: 'Equal', value: 'fake', effect: 'NoSchedule' };

interface Paths {
  ETCD: string;
  KUBE_APISERVER: string;
  KUBE_CONTROLLER_MANAGER: string;
  KUBE_SCHEDULER: string;
  KWOK: string;
  KWOK_STAGES: string;
}

export function readKubernetesPaths(): Paths {
  const file = join(process.env.OPSFLOW_CACHE || join(homedir(), '.cache/opsflow'), 'kubernetes/paths.env');
  const missing = `run 'bash deploy/bed/kubernetes/install.sh' first`;
  if (!existsSync(file)) throw new Error(`${file} is missing: ${missing}`);
  const env = Object.fromEntries(
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  const keys: (keyof Paths)[] = ['ETCD', 'KUBE_APISERVER', 'KUBE_CONTROLLER_MANAGER', 'KUBE_SCHEDULER', 'KWOK', 'KWOK_STAGES'];
  for (const key of keys) {
    if (!env[key] || !existsSync(env[key])) throw new Error(`${key} (${env[key] ?? 'unset'}) from ${file} is missing: ${missing}`);
  }
  return env as unknown as Paths;
}

/** /healthz of kube-scheduler: loopback-only probe of a self-signed port, nothing to verify. */
function healthz(port: number): Promise<boolean> {
  return new Promise((res) => {
    const req = httpsGet({ host: '127.0.0.1', port, path: '/healthz', rejectUnauthorized: false, timeout: 1_000 }, (r) => {
      r.resume();
      res(r.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => res(false));
  });
}

/** Wins over kwok's pod-ready stage (weight 0) for matching pods; phase Running keeps pod-ready from matching later. */
function badReleaseStage(pattern: string) {
  return {
    apiVersion: 'kwok.x-k8s.io/v1alpha1',
    kind: 'Stage',
    metadata: { name: 'pod-bad-release' },
    spec: {
      resourceRef: { apiGroup: 'v1', kind: 'Pod' },
      selector: {
        matchExpressions: [
          { key: '.metadata.deletionTimestamp', operator: 'DoesNotExist' },
          { key: '.status.phase', operator: 'In', values: ['Pending'] },
          // A JSON string is a valid jq string literal.
          { key: `.spec.containers.[].image | test(${JSON.stringify(pattern)})`, operator: 'In', values: ['true'] },
        ],
      },
      weight: 1,
      next: {
        statusTemplate: `{{ $now := Now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  reason: ContainersNotReady
  status: "False"
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  reason: ContainersNotReady
  status: "False"
  type: ContainersReady
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 1
  started: false
  state:
    waiting:
      reason: CrashLoopBackOff
      message: "bad release (kwok stage pod-bad-release)"
{{ end }}
{{ with NodeIPWith .spec.nodeName }}
hostIP: {{ . | Quote }}
{{ end }}
{{ with PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
podIP: {{ . | Quote }}
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
`,
      },
    },
  };
}

/**
 * A Job's pod with a bad image fails instead of completing: after
 * pod-bad-release made it Running, this stage (weight 1) beats kwok's
 * pod-complete (weight 0, Running Job pods → Succeeded). Exit code 1 and phase
 * Failed are what the Job controller counts against backoffLimit.
 */
function badReleaseJobStage(pattern: string) {
  return {
    apiVersion: 'kwok.x-k8s.io/v1alpha1',
    kind: 'Stage',
    metadata: { name: 'pod-bad-release-job' },
    spec: {
      resourceRef: { apiGroup: 'v1', kind: 'Pod' },
      selector: {
        matchExpressions: [
          { key: '.metadata.deletionTimestamp', operator: 'DoesNotExist' },
          { key: '.status.phase', operator: 'In', values: ['Running'] },
          { key: '.metadata.ownerReferences.[].kind', operator: 'In', values: ['Job'] },
          { key: `.spec.containers.[].image | test(${JSON.stringify(pattern)})`, operator: 'In', values: ['true'] },
        ],
      },
      weight: 1,
      next: {
        statusTemplate: `{{ $now := Now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  reason: PodFailed
  status: "False"
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  reason: PodFailed
  status: "False"
  type: ContainersReady
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: 1
      reason: Error
      message: ${JSON.stringify(BAD_RELEASE_JOB_MESSAGE)}
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
phase: Failed
`,
      },
    },
  };
}

/** kwok serves a container's logs from a file in CRI format: "<RFC 3339 time> <stream> F <line>". */
function writeCriLog(file: string, text: string) {
  const now = new Date().toISOString();
  const lines = text.endsWith('\n') ? text.slice(0, -1).split('\n') : text.split('\n');
  writeFileSync(file, text === '' ? '' : lines.map((l) => `${now} stdout F ${l}\n`).join(''));
}

/** Every fake pod's logs: one file per named container, the default file for the rest. */
function clusterLogsConfig(logsDir: string, containerLogs: Record<string, string>) {
  mkdirSync(logsDir, { recursive: true });
  const logs: { containers?: string[]; logsFile: string }[] = [];
  for (const [container, text] of Object.entries(containerLogs)) {
    if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(container)) throw new Error(`containerLogs: "${container}" is not a container name`);
    const logsFile = join(logsDir, `container-${container}.log`);
    writeCriLog(logsFile, text);
    logs.push({ containers: [container], logsFile });
  }
  const defaultFile = join(logsDir, 'default.log');
  writeCriLog(defaultFile, DEFAULT_CONTAINER_LOG);
  logs.push({ logsFile: defaultFile }); // no containers: kwok's fallback for any other container
  return { apiVersion: 'kwok.x-k8s.io/v1alpha1', kind: 'ClusterLogs', metadata: { name: 'bed' }, spec: { logs } };
}

function localExecConfig(workDir: string) {
  return {
    apiVersion: 'kwok.x-k8s.io/v1alpha1',
    kind: 'ClusterExec',
    metadata: { name: 'local' },
    spec: { execs: [{ local: { workDir } }] },
  };
}

function fakeNode(name: string): V1Node {
  return {
    metadata: {
      name,
      annotations: { 'kwok.x-k8s.io/node': 'fake' },
      labels: { ...FAKE_NODE_SELECTOR, 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' },
    },
    spec: { taints: [{ key: FAKE_NODE_TOLERATION.key, value: FAKE_NODE_TOLERATION.value, effect: FAKE_NODE_TOLERATION.effect }] },
  };
}

export async function startKubernetes(options: KubernetesOptions): Promise<KubernetesBed> {
  const started = Date.now();
  const dir = resolve(options.dir);
  mkdirSync(dir, { recursive: true });
  const bin = readKubernetesPaths();
  const badImagePattern = options.badImagePattern ?? DEFAULT_BAD_IMAGE_PATTERN;
  new RegExp(badImagePattern); // throws on a broken pattern, which kwok would silently never match
  const daemons: Daemon[] = [];
  const stop = async () => {
    // Clients first, while the apiserver still answers them; etcd last.
    const [etcd, apiserver, ...clients] = daemons;
    await Promise.all(clients.map((d) => stopDaemon(d)));
    if (apiserver) await stopDaemon(apiserver);
    if (etcd) await stopDaemon(etcd);
  };

  try {
    const port = await freePorts(['etcd', 'peer', 'apiserver', 'kcm', 'scheduler', 'kwok'] as const);

    startDaemon('etcd', bin.ETCD, [
      '--name', 'bed', '--data-dir', join(dir, 'etcd'),
      '--listen-client-urls', `http://127.0.0.1:${port.etcd}`, '--advertise-client-urls', `http://127.0.0.1:${port.etcd}`,
      '--listen-peer-urls', `http://127.0.0.1:${port.peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${port.peer}`,
      '--initial-cluster', `bed=http://127.0.0.1:${port.peer}`, '--listen-metrics-urls', '',
      '--unsafe-no-fsync', '--log-level', 'warn',
    ], { dir, daemons });
    await waitFor('etcd health', async () => ((await (await fetch(`http://127.0.0.1:${port.etcd}/health`)).json()) as { health?: string }).health === 'true', { daemons, timeoutMs: 20_000 });

    const sa = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    });
    const saKey = join(dir, 'sa.key');
    const saPub = join(dir, 'sa.pub');
    writeFileSync(saKey, sa.privateKey, { mode: 0o600 });
    writeFileSync(saPub, sa.publicKey);
    const adminToken = randomBytes(24).toString('hex');
    const tokens = join(dir, 'tokens.csv');
    writeFileSync(tokens, `${adminToken},admin,admin,system:masters\n`, { mode: 0o600 });
    const certDir = join(dir, 'apiserver-certs');

    startDaemon('kube-apiserver', bin.KUBE_APISERVER, [
      '--etcd-servers', `http://127.0.0.1:${port.etcd}`,
      '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${port.apiserver}`,
      // Self-signed serving cert plus its CA, written before it serves; the kubeconfig trusts it.
      `--cert-dir=${certDir}`,
      '--authorization-mode=RBAC', `--token-auth-file=${tokens}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${saPub}`, `--service-account-signing-key-file=${saKey}`,
      '--service-cluster-ip-range=10.96.0.0/16',
      // kwok gives nodes Hostname addresses that don't resolve; exec/logs must use the InternalIP.
      '--kubelet-preferred-address-types=InternalIP',
    ], { dir, daemons });
    const caFile = join(certDir, 'apiserver.crt');
    // The key is written after the cert: once it exists, the cert is complete.
    await waitFor('kube-apiserver serving cert', async () => existsSync(join(certDir, 'apiserver.key')), { daemons, timeoutMs: 30_000 });

    const server = `https://127.0.0.1:${port.apiserver}`;
    const kubeconfigPath = join(dir, 'kubeconfig');
    writeFileSync(kubeconfigPath, stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'bed', cluster: { server, 'certificate-authority-data': readFileSync(caFile).toString('base64') } }],
      users: [{ name: 'admin', user: { token: adminToken } }],
      contexts: [{ name: 'bed', context: { cluster: 'bed', user: 'admin' } }],
      'current-context': 'bed',
    }), { mode: 0o600 });
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfigPath);
    const core = kc.makeApiClient(CoreV1Api);
    const health = new Health(kc);
    await waitFor('kube-apiserver /readyz', () => health.readyz({}), { daemons });

    startDaemon('kube-controller-manager', bin.KUBE_CONTROLLER_MANAGER, [
      `--kubeconfig=${kubeconfigPath}`, '--leader-elect=false', '--bind-address=127.0.0.1', `--secure-port=${port.kcm}`,
      // Signs ServiceAccount tokens and publishes kube-root-ca.crt into every namespace.
      `--service-account-private-key-file=${saKey}`, `--root-ca-file=${caFile}`,
    ], { dir, daemons });
    startDaemon('kube-scheduler', bin.KUBE_SCHEDULER, [
      `--kubeconfig=${kubeconfigPath}`, '--leader-elect=false', '--bind-address=127.0.0.1', `--secure-port=${port.scheduler}`,
    ], { dir, daemons });

    const kwokConfig = join(dir, 'kwok.yaml');
    const docs: object[] = [
      badReleaseStage(badImagePattern),
      badReleaseJobStage(badImagePattern),
      clusterLogsConfig(join(dir, 'logs'), options.containerLogs ?? {}),
    ];
    if (options.localExec) {
      mkdirSync(join(dir, 'exec'), { recursive: true });
      docs.push(localExecConfig(join(dir, 'exec')));
    }
    writeFileSync(kwokConfig, docs.map((d) => stringify(d)).join('---\n'));
    const podStages = readdirSync(join(bin.KWOK_STAGES, 'pod/fast')).map((f) => join(bin.KWOK_STAGES, 'pod/fast', f));
    startDaemon('kwok', bin.KWOK, [
      `--kubeconfig=${kubeconfigPath}`,
      '--manage-all-nodes=false', '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
      // The fake kubelets all live at 127.0.0.1:<port.kwok>, kwok's own server (healthz, exec, logs).
      '--node-ip=127.0.0.1', `--node-port=${port.kwok}`, `--server-address=127.0.0.1:${port.kwok}`,
      // Leases keep the node lifecycle controller from marking the nodes NotReady after ~50 s.
      '--node-lease-duration-seconds=40',
      '--cidr=10.244.0.0/16',
      `--config=${[
        join(bin.KWOK_STAGES, 'node/fast/node-initialize.yaml'),
        join(bin.KWOK_STAGES, 'node/heartbeat-with-lease/node-heartbeat-with-lease.yaml'),
        ...podStages,
        kwokConfig,
      ].join(',')}`,
    ], { dir, daemons });

    await Promise.all(FAKE_NODES.map((name) => core.createNode({ body: fakeNode(name) })));
    await Promise.all([
      waitFor('kwok /healthz', async () => (await fetch(`http://127.0.0.1:${port.kwok}/healthz`)).ok, { daemons }),
      waitFor('kube-scheduler /healthz', () => healthz(port.scheduler), { daemons }),
      // Ready, and the node lifecycle controller has lifted its not-ready taint, so pods can be scheduled.
      waitFor('fake nodes Ready', async () => {
        const nodes = (await core.listNode({ labelSelector: 'type=kwok' })).items;
        return nodes.length === FAKE_NODES.length && nodes.every((n) =>
          n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') &&
          !n.spec?.taints?.some((t) => t.key.startsWith('node.kubernetes.io/')));
      }, { daemons }),
      // Pods are rejected until their namespace has its default ServiceAccount.
      waitFor('default ServiceAccount and kube-root-ca.crt', async () => {
        await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
        await core.readNamespacedConfigMap({ name: 'kube-root-ca.crt', namespace: 'default' });
        return true;
      }, { daemons }),
    ]);

    return { kubeconfigPath, server, adminToken, startupMs: Date.now() - started, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
