/**
 * Resolves a configured system into what adapters need: its database URL
 * (secret, resolved only in the worker) and its S3 object store. The one place
 * where config meets adapters.
 */
import { componentConfigSchema, getSystem, requireKubernetes, requirePostgres, resolveSetting, type ComponentConfig, type Config, type KubernetesConfig } from './config.ts';
import { rememberSecret, resolveSecret } from './secrets.ts';
import { parseMasterKey } from './crypto.ts';
import { NotFoundError } from './errors.ts';
import { ObjectStore } from './adapters/s3.ts';
import type { Kubernetes, WorkloadRef } from './adapters/kubernetes/index.ts';

export class Systems {
  private readonly stores = new Map<string, ObjectStore>();
  private readonly clusters = new Map<string, Promise<Kubernetes>>();

  constructor(readonly config: Config) {}

  /** Throws NotFound naming the configured systems when `name` is unknown. */
  get(name: string) {
    return getSystem(this.config, name);
  }

  postgresUrl(system: string): string {
    return resolveSecret(requirePostgres(this.config, system).url, `systems.${system}.postgres.url`);
  }

  /** The system's Redis URL (secret, resolved only in the worker). */
  redisUrl(system: string): string {
    const redis = this.get(system).redis;
    if (!redis) throw new NotFoundError(`system "${system}" has no redis component (systems.${system}.redis)`);
    return resolveSecret(redis.url, `systems.${system}.redis.url`);
  }

  postgresDumpArgs(system: string): string[] {
    return requirePostgres(this.config, system).dumpArgs;
  }

  /** Transfer cap in bytes per second, if the system sets one. */
  transferLimit(system: string): number | undefined {
    const mbps = this.get(system).limits.transferMBps;
    return mbps === undefined ? undefined : mbps * 1_000_000;
  }

  /** The configured zstd level, if any (else each component kind's default). */
  compressionLevel(system: string): number | undefined {
    return this.get(system).compression.level;
  }

  s3Prefix(system: string): string {
    return this.get(system).s3.prefix;
  }

  store(system: string): ObjectStore {
    let store = this.stores.get(system);
    if (!store) {
      const s3 = this.get(system).s3;
      const where = `systems.${system}.s3`;
      const credentials =
        s3.accessKeyId && s3.secretAccessKey
          ? {
              accessKeyId: resolveSecret(s3.accessKeyId, `${where}.accessKeyId`),
              secretAccessKey: resolveSecret(s3.secretAccessKey, `${where}.secretAccessKey`),
            }
          : undefined;
      store = new ObjectStore({
        bucket: resolveSetting(s3.bucket, `${where}.bucket`),
        region: s3.region,
        endpoint: s3.endpoint === undefined ? undefined : resolveSetting(s3.endpoint, `${where}.endpoint`),
        forcePathStyle: s3.forcePathStyle,
        credentials,
      });
      this.stores.set(system, store);
    }
    return store;
  }

  kubernetesConfig(system: string): KubernetesConfig {
    return requireKubernetes(this.config, system);
  }

  /**
   * The system's cluster, connected once per credentials (systems may share
   * one). The client library is loaded on first use: it is about 70 MiB of a
   * worker's memory, which workers whose systems have no Kubernetes never pay.
   */
  kubernetes(system: string): Promise<Kubernetes> {
    const k8s = this.kubernetesConfig(system);
    const kubeconfig = k8s.kubeconfig === undefined ? undefined : resolveSetting(k8s.kubeconfig, `systems.${system}.kubernetes.kubeconfig`);
    const key = `${kubeconfig ?? ''}#${k8s.context ?? ''}`;
    let cluster = this.clusters.get(key);
    if (!cluster) {
      cluster = import('./adapters/kubernetes/index.ts').then(({ Kubernetes }) => Kubernetes.connect({ kubeconfig, context: k8s.context }));
      cluster.catch(() => this.clusters.delete(key)); // a bad kubeconfig is read again next time
      this.clusters.set(key, cluster);
    }
    return cluster;
  }

  /** What a backup set of this system holds: the configured components, or its database alone. */
  components(system: string): ComponentConfig[] {
    const config = this.get(system);
    if (config.backup.components) return config.backup.components;
    return config.postgres ? [componentConfigSchema.parse({ kind: 'postgres' })] : [];
  }

  component(system: string, name: string): ComponentConfig {
    const found = this.components(system).find((c) => c.name === name);
    if (!found) throw new NotFoundError(`system "${system}" has no backup component "${name}" (configured: ${this.components(system).map((c) => c.name).join(', ') || 'none'})`);
    return found;
  }

  /** The ID of the master key new sets are encrypted under, or undefined when the system does not encrypt. */
  currentMasterKeyId(system: string): string | undefined {
    return this.get(system).backup.encryption?.current;
  }

  /** Every configured master key by ID (resolved in the worker only; values never leave it). */
  async masterKeys(system: string): Promise<Map<string, Buffer>> {
    const encryption = this.get(system).backup.encryption;
    const keys = new Map<string, Buffer>();
    for (const [id, ref] of Object.entries(encryption?.keys ?? {})) {
      const where = `systems.${system}.backup.encryption.keys.${id}`;
      let text: string;
      if ('kubernetesSecret' in ref) {
        const { name, key, namespace } = ref.kubernetesSecret;
        text = (await (await this.kubernetes(system)).objects.readSecretKey(namespace ?? this.kubernetesConfig(system).namespace, name, key)).trim();
        rememberSecret(text);
      } else {
        text = resolveSecret(ref, where);
      }
      keys.set(id, parseMasterKey(text, where));
    }
    return keys;
  }

  /** The application's workloads, in config order. */
  workloads(system: string): WorkloadRef[] {
    const k8s = this.kubernetesConfig(system);
    return k8s.workloads.map((w) => ({ kind: w.kind, name: w.name, namespace: k8s.namespace }));
  }
}
