/**
 * The one declarative config file: which systems opsflow looks after and where
 * their data lives. One zod schema, validated once at start; errors name the
 * path and the reason (`systems.demo.postgres.url: required`).
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError, NotFoundError } from './errors.ts';
import { readRef, type SecretRef } from './secrets.ts';
import { SYSTEM_NAME_PATTERN } from './domain/names.ts';
import { formatIssues, readableErrors } from './domain/validation.ts';
import { retentionPolicySchema } from './domain/retention.ts';

const secretRef = z.union([
  z.strictObject({ env: z.string().min(1) }),
  z.strictObject({ file: z.string().min(1) }),
]);

/** A secret: only ever a reference, so the file can be committed and shown. */
const secret = z.custom<SecretRef>().superRefine((value, ctx) => {
  if (typeof value === 'string') {
    ctx.addIssue({ code: 'custom', message: 'must be a reference ({ env: NAME } or { file: PATH }), never an inline secret' });
    return;
  }
  const parsed = secretRef.safeParse(value);
  if (!parsed.success) ctx.addIssue({ code: 'custom', message: 'expected { env: NAME } or { file: PATH }' });
});

/** A plain setting that may also come from the environment (e.g. a bed's port). */
const setting = z.union([z.string().min(1), secretRef]);
export type Setting = z.infer<typeof setting>;

const postgresSchema = z.strictObject({
  /** libpq connection URL of the application database. */
  url: secret,
  /** Extra pg_dump flags, e.g. ["--exclude-table-data=audit_log"]. */
  dumpArgs: z.array(z.string()).default([]),
});

const s3Schema = z.strictObject({
  bucket: setting,
  prefix: z.string().regex(/^[A-Za-z0-9._\-/]*$/, 'letters, digits, . _ - / only').default('opsflow'),
  region: z.string().default('us-east-1'),
  endpoint: setting.optional(),
  forcePathStyle: z.boolean().default(false),
  /** Without these the AWS default chain applies (env, profile, IRSA). */
  accessKeyId: secret.optional(),
  secretAccessKey: secret.optional(),
});

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

const workloadSchema = z.strictObject({
  kind: z.enum(['Deployment', 'StatefulSet']).default('Deployment'),
  name: z.string().max(253).regex(DNS_SUBDOMAIN, 'must be a Kubernetes object name (lower-case letters, digits, - and .)'),
});

const kubernetesSchema = z.strictObject({
  /** Path of a kubeconfig; without it the worker uses KUBECONFIG, ~/.kube/config or its in-cluster service account. */
  kubeconfig: setting.optional(),
  /** A context of that kubeconfig (another cluster, for recovery elsewhere). */
  context: z.string().min(1).optional(),
  namespace: z.string().max(63).regex(DNS_LABEL, 'must be a Kubernetes namespace name (lower-case letters, digits, -)'),
  /** The application's workloads, scaled, restarted and rolled out together. */
  workloads: z.array(workloadSchema).min(1),
  /** How long pods may take to become Ready after a scale-up or restart. */
  readyTimeoutSeconds: z.number().int().positive().default(300),
  /** Where opsflow's own Job pods (migrations) may run: node selector and tolerations, as in a pod spec. */
  podPlacement: z
    .strictObject({
      nodeSelector: z.record(z.string(), z.string()).optional(),
      tolerations: z.array(z.record(z.string(), z.unknown())).optional(),
    })
    .prefault({}),
});

/** An HTTP endpoint that answers whether the application is healthy. */
const httpCheckSchema = z.strictObject({
  name: z.string().min(1),
  /** May come from the environment (a URL with a token in it is a secret: use a reference). */
  url: setting,
  /** Statuses that count as healthy; any 2xx when omitted. */
  expectStatus: z.array(z.number().int().min(100).max(599)).min(1).optional(),
  /** A slower answer counts as a failure (001: latency under 500 ms). */
  maxLatencyMs: z.number().int().positive().optional(),
  timeoutMs: z.number().int().positive().default(5000),
});

const thresholdQuerySchema = z
  .strictObject({
    name: z.string().min(1),
    /** PromQL giving one number, e.g. the 5xx ratio over the last minute. */
    query: z.string().min(1),
    /** Fails when the value is above this … */
    max: z.number().optional(),
    /** … or below this. */
    min: z.number().optional(),
  })
  .refine((q) => q.max !== undefined || q.min !== undefined, 'needs a threshold: max or min');

const deploySchema = z.strictObject({
  /** The workload that gets the new image; the first configured one by default. */
  workload: z.string().optional(),
  /** When the rollout strategy could make replicas unavailable: refuse the deploy, or warn and go on. */
  capacity: z.enum(['refuse', 'warn']).default('refuse'),
  checks: z
    .strictObject({
      /** The system's database answers (its postgres section). */
      database: z.boolean().default(true),
      /** The system's Redis answers PING (its redis section). */
      redis: z.boolean().default(true),
      /** The newest complete backup is at most this old. */
      backupMaxAgeHours: z.number().positive().optional(),
      http: z.array(httpCheckSchema).default([]),
    })
    .prefault({}),
  /** Run before any pod changes, as a Job with the new image (003: alembic upgrade head). */
  migration: z
    .strictObject({
      command: z.array(z.string()).min(1),
      /** Container of the workload whose image the Job runs; the first by default. */
      container: z.string().optional(),
      timeoutSeconds: z.number().int().positive().default(600),
      serviceAccountName: z.string().optional(),
    })
    .optional(),
  analysis: z
    .strictObject({
      /** Measure this often during the rollout and the bake (Flagger's default is 60 s). */
      intervalSeconds: z.number().int().min(1).default(10),
      /** Failed measurements in a row that roll the deploy back. */
      failureLimit: z.number().int().min(1).default(2),
      /** Inconclusive measurements in a row (no data, Prometheus down) that pause for a human. */
      inconclusiveLimit: z.number().int().min(1).default(3),
      /** Keep measuring this long after the rollout completes before calling it done. */
      bakeSeconds: z.number().int().min(0).default(300),
      /** Pods of the new version crash-looping this many restarts roll back at once. */
      crashLoopRestarts: z.number().int().min(1).default(1),
      prometheus: z.strictObject({ url: setting }).optional(),
      queries: z.array(thresholdQuerySchema).default([]),
      probes: z.array(httpCheckSchema).default([]),
    })
    .prefault({}),
  /** Where to POST a JSON note on success, rollback and failure (Slack-compatible `text`). */
  notify: z.strictObject({ webhook: secret }).optional(),
});

const redisSchema = z.strictObject({
  /** redis://[:password@]host:port/db (rediss:// for TLS): a secret, since it may hold the password. */
  url: secret,
});

/** Where in the cluster a component lives when it is inside a pod: a workload's Ready pod and a container. */
const podSourceSchema = z.strictObject({
  /** A configured workload (kubernetes.workloads) whose Ready pod runs the command. */
  workload: z.string().min(1),
  /** The container; the pod's first by default. */
  container: z.string().optional(),
});

const COMPONENT_NAME = z.string().regex(/^[a-z][a-z0-9-]{0,39}$/, 'lower-case letters, digits and - (at most 40)');
const ABSOLUTE_PATH = z.string().regex(/^\/[^\0]*$/, 'an absolute path');

/** One ConfigMap's or Secret's keys replaced on restore; a Secret's values are references, never inline. */
const objectOverrideSchema = z
  .strictObject({
    kind: z.enum(['ConfigMap', 'Secret']),
    name: z.string().min(1),
    data: z.record(z.string().min(1), setting),
  })
  .superRefine((o, ctx) => {
    if (o.kind !== 'Secret') return;
    for (const [key, value] of Object.entries(o.data)) {
      if (typeof value === 'string') ctx.addIssue({ code: 'custom', path: ['data', key], message: 'a Secret\'s value must be a reference ({ env: NAME } or { file: PATH }), never inline' });
    }
  });

/** One thing a backup set holds; `name` is its name in the set (unique). */
export const componentConfigSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('postgres'),
    name: COMPONENT_NAME.default('postgres'),
    /**
     * Rows go in this many archives of one snapshot, dumped and restored in
     * parallel (as pg_dump/pg_restore -j): the tables are shared out by size.
     */
    jobs: z.number().int().min(1).max(16).default(2),
    /** A database smaller than this is one archive: splitting it saves less than it costs. */
    splitFromBytes: z.number().int().nonnegative().default(64 * 2 ** 20),
  }),
  z.strictObject({
    kind: z.literal('redis'),
    name: COMPONENT_NAME.default('redis'),
    /** `snapshot` (replication protocol, point in time) or `logical` (SCAN + DUMP, for managed Redis that blocks SYNC). */
    mode: z.enum(['snapshot', 'logical']).default('snapshot'),
    /** A restore loads keys into this spare database first, then swaps it in with SWAPDB (never a half-restored database). */
    stagingDb: z.number().int().min(0).max(15).default(15),
    /**
     * Snapshots: redis-check-rdb also reads the RDB as it streams (CRC64 and
     * every value), as a runbook's check after `redis-cli --rdb` does. Off,
     * the backup checks sizes and checksums and takes the key counts from the
     * RDB's RESIZEDB record; the deep check is then `opsflow backups verify`,
     * on demand or scheduled, which loads the RDB into a scratch redis-server.
     */
    deepCheck: z.boolean().default(false),
  }),
  z.strictObject({
    kind: z.literal('files'),
    name: COMPONENT_NAME,
    /** The directory: on the worker's filesystem, or inside `pod` when given. */
    path: ABSOLUTE_PATH,
    pod: podSourceSchema.optional(),
  }),
  z.strictObject({
    kind: z.literal('kubernetes'),
    name: COMPONENT_NAME.default('objects'),
    /** Kinds to export from the system's namespace (ConfigMap, Secret, Deployment…); a default set when omitted. */
    kinds: z.array(z.string().min(1)).optional(),
    /**
     * Keys set in the set's ConfigMaps and Secrets when they are restored into
     * this system: a scratch or new place whose application must reach its
     * own database, not the one the set was taken from.
     */
    overrides: z.array(objectOverrideSchema).default([]),
  }),
  z.strictObject({
    kind: z.literal('sqlite'),
    name: COMPONENT_NAME,
    /** The database file (online backup API, never a plain copy). */
    path: ABSOLUTE_PATH,
    pod: podSourceSchema.optional(),
  }),
]);

/** A master key: from the environment or a file, or a key of a Kubernetes Secret in the system's namespace. */
const masterKeySchema = z.union([
  secretRef,
  z.strictObject({ kubernetesSecret: z.strictObject({ name: z.string().min(1), key: z.string().min(1), namespace: z.string().optional() }) }),
]);

const backupSchema = z
  .strictObject({
    /** What a set holds, backed up in this order. Default: the postgres section's database. */
    components: z.array(componentConfigSchema).min(1).optional(),
    /**
     * Client-side encryption: each set gets its own data key, wrapped by the
     * `current` master key; older keys stay listed so older sets stay readable.
     */
    encryption: z
      .strictObject({
        current: z.string().min(1),
        keys: z.record(z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, . _ - only'), masterKeySchema),
      })
      .refine((e) => e.current in e.keys, { message: 'current: must be one of keys', path: ['current'] })
      .optional(),
    retention: retentionPolicySchema.optional(),
    /** The newest set older than this raises the staleness alert (metric opsflow_backup_age_seconds). */
    maxAgeHours: z.number().positive().default(26),
    /** A drill or DR fails loudly when the set it restored is older than this (recovery point objective). */
    rpoTargetHours: z.number().positive().optional(),
  })
  .superRefine((b, ctx) => {
    const seen = new Set<string>();
    (b.components ?? []).forEach((c, i) => {
      if (seen.has(c.name)) ctx.addIssue({ code: 'custom', path: ['components', i, 'name'], message: `"${c.name}" is used twice; give each component its own name` });
      seen.add(c.name);
    });
  });

/** Disaster recovery: how to tell the recovered application is healthy, and how to send traffic to it. */
const recoverySchema = z.strictObject({
  /** Checked after the pods are Ready (`/health`, `/ready`, custom endpoints); all must pass. */
  health: z.array(httpCheckSchema).default([]),
  /** POSTed once the recovered system is healthy (a DNS or load-balancer switch); the step is skipped without it. */
  trafficSwitch: z.strictObject({ webhook: secret }).optional(),
  /**
   * A drill recovers the set into this system (a `scratch` one), runs the
   * application there and checks its health, then empties it. Without it, a
   * drill checks each component in a scratch place and runs no application.
   */
  drillInto: z.string().optional(),
  /** A throwaway place for drills: after each drill into it, its namespace, database, Redis databases and paths are emptied. */
  scratch: z.boolean().default(false),
});

const systemFields = {
  postgres: postgresSchema.optional(),
  redis: redisSchema.optional(),
  kubernetes: kubernetesSchema.optional(),
  deploy: deploySchema.optional(),
  backup: backupSchema.prefault({}),
  recovery: recoverySchema.prefault({}),
  s3: s3Schema,
  compression: z
    .strictObject({
      /**
       * zstd level for every component; higher is smaller and slower. Unset,
       * each kind has its own (DEFAULT_COMPRESSION_LEVEL in activities/artifacts.ts).
       */
      level: z.number().int().min(1).max(19).optional(),
    })
    .prefault({}),
  limits: z
    .strictObject({
      /** Cap on backup/restore transfer rate, MB/s; none by default. */
      transferMBps: z.number().positive().optional(),
    })
    .prefault({}),
};

/** Components and what they need from the rest of the system's config. */
const systemSchema = z.strictObject(systemFields).superRefine((system, ctx) => {
  const workloads = new Set(system.kubernetes?.workloads.map((w) => w.name));
  system.backup.components?.forEach((c, i) => {
    const at = (...path: (string | number)[]) => ['backup', 'components', i, ...path];
    if (c.kind === 'postgres' && !system.postgres) ctx.addIssue({ code: 'custom', path: at('kind'), message: 'a postgres component needs the postgres section' });
    if (c.kind === 'redis' && !system.redis) ctx.addIssue({ code: 'custom', path: at('kind'), message: 'a redis component needs the redis section' });
    if (c.kind === 'kubernetes' && !system.kubernetes) ctx.addIssue({ code: 'custom', path: at('kind'), message: 'a kubernetes component needs the kubernetes section' });
    if ((c.kind === 'files' || c.kind === 'sqlite') && c.pod && !workloads.has(c.pod.workload)) {
      ctx.addIssue({ code: 'custom', path: at('pod', 'workload'), message: `"${c.pod.workload}" is not one of kubernetes.workloads` });
    }
  });
});

/** A procedure opsflow starts on a timetable, kept as a Temporal Schedule (opsflow schedules apply). */
const scheduleSchema = z.strictObject({
  /** The schedule's name; its Temporal Schedule ID is `opsflow/<name>`. */
  name: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, 'lower-case letters, digits and -'),
  system: z.string().min(1),
  procedure: z.enum(['backup', 'verify', 'drill', 'retention']),
  /** Cron expressions, in UTC unless `timezone` says otherwise (e.g. "0 2 * * *", "0 *\/4 * * *"). */
  cron: z.array(z.string().min(1)).min(1),
  timezone: z.string().default('UTC'),
  /** Runs missed while Temporal was down are started late, within this window; older ones are skipped. */
  catchupWindowMinutes: z.number().int().positive().default(60),
  paused: z.boolean().default(false),
});
export type ScheduleConfig = z.infer<typeof scheduleSchema>;

const configSchema = z.strictObject({
  version: z.literal(1),
  temporal: z
    .strictObject({
      address: setting.optional(),
      namespace: z.string().default('default'),
      taskQueue: z.string().default('opsflow'),
    })
    .prefault({}),
  systems: z.record(z.string(), systemSchema).superRefine((systems, ctx) => {
    for (const name of Object.keys(systems)) {
      if (!SYSTEM_NAME_PATTERN.test(name)) {
        ctx.addIssue({ code: 'custom', path: [name], message: 'system names are lower-case letters, digits and - (at most 40)' });
      }
    }
  }),
  schedules: z.array(scheduleSchema).default([]),
}).superRefine((config, ctx) => {
  const names = new Set<string>();
  for (const [name, system] of Object.entries(config.systems)) {
    const into = system.recovery.drillInto;
    if (into === undefined) continue;
    const path = ['systems', name, 'recovery', 'drillInto'];
    if (into === name) ctx.addIssue({ code: 'custom', path, message: 'a system cannot drill into itself' });
    else if (!(into in config.systems)) ctx.addIssue({ code: 'custom', path, message: `unknown system "${into}"` });
    else if (!config.systems[into]!.recovery.scratch) ctx.addIssue({ code: 'custom', path, message: `"${into}" is not marked recovery.scratch: true (a drill empties it afterwards)` });
  }
  config.schedules.forEach((schedule, i) => {
    if (!(schedule.system in config.systems)) ctx.addIssue({ code: 'custom', path: ['schedules', i, 'system'], message: `unknown system "${schedule.system}"` });
    if (names.has(schedule.name)) ctx.addIssue({ code: 'custom', path: ['schedules', i, 'name'], message: `"${schedule.name}" is used twice` });
    names.add(schedule.name);
  });
});

export type Config = z.infer<typeof configSchema>;
export type SystemConfig = z.infer<typeof systemSchema>;
export type PostgresConfig = z.infer<typeof postgresSchema>;
export type S3Config = z.infer<typeof s3Schema>;
export type KubernetesConfig = z.infer<typeof kubernetesSchema>;
export type DeployConfig = z.infer<typeof deploySchema>;
export type HttpCheckConfig = z.infer<typeof httpCheckSchema>;
export type BackupConfig = z.infer<typeof backupSchema>;
export type ComponentConfig = z.infer<typeof componentConfigSchema>;
export type MasterKeyRef = z.infer<typeof masterKeySchema>;

/** Top-level `x-…` keys hold YAML anchors for reuse (as in Compose files); they are not config. */
function withoutExtensions(raw: unknown): unknown {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  return Object.fromEntries(Object.entries(raw).filter(([key]) => !key.startsWith('x-')));
}

export function parseConfig(raw: unknown, source = 'config'): Config {
  const result = configSchema.safeParse(withoutExtensions(raw), readableErrors);
  if (!result.success) throw new ConfigError(`${source}: ${formatIssues(result.error)}`);
  return result.data;
}

export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  return parseConfig(raw, path);
}

export function configPath(explicit?: string): string {
  return explicit ?? process.env.OPSFLOW_CONFIG ?? 'opsflow.yaml';
}

export function getSystem(config: Config, name: string): SystemConfig {
  const system = config.systems[name];
  if (!system) {
    const known = Object.keys(config.systems).join(', ') || 'none';
    throw new NotFoundError(`unknown system "${name}" (configured: ${known})`);
  }
  return system;
}

export function requirePostgres(config: Config, name: string): PostgresConfig {
  const pg = getSystem(config, name).postgres;
  if (!pg) throw new NotFoundError(`system "${name}" has no postgres component (systems.${name}.postgres)`);
  return pg;
}

export function requireKubernetes(config: Config, name: string): KubernetesConfig {
  const k8s = getSystem(config, name).kubernetes;
  if (!k8s) throw new NotFoundError(`system "${name}" has no kubernetes section (systems.${name}.kubernetes)`);
  return k8s;
}

export function requireDeploy(config: Config, name: string): DeployConfig {
  const deploy = getSystem(config, name).deploy;
  if (!deploy) throw new NotFoundError(`system "${name}" has no deploy section (systems.${name}.deploy)`);
  return deploy;
}

/** Resolves a plain setting that may be given as an env/file reference. */
export function resolveSetting(value: Setting, where: string): string {
  return typeof value === 'string' ? value : readRef(value, where);
}
