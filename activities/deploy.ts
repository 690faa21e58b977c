/**
 * Activities of the deploy procedure: plan (images, containers, capacity),
 * pre-deploy checks, the migration Job, one analysis measurement, rollout
 * pause/resume, and the notification webhook. Decisions (roll back, pause
 * for a human) are the workflow's; these only measure and act.
 */
import { Context } from '@temporalio/activity';
import type { V1Deployment, V1StatefulSet } from '@kubernetes/client-node';
import type { Systems } from '../src/systems.ts';
import type { PostgresAdapter } from '../src/adapters/postgres.ts';
import { requireDeploy, resolveSetting, type DeployConfig, type HttpCheckConfig } from '../src/config.ts';
import { deploymentCapacity, statefulSetCapacity, type CapacityVerdict } from '../src/domain/capacity.ts';
import { rolloutStatus, statefulSetRolloutStatus, type RolloutStatus } from '../src/domain/rollout.ts';
import { probe } from '../src/adapters/http.ts';
import { Prometheus } from '../src/adapters/prometheus.ts';
import { redact, resolveSecret } from '../src/secrets.ts';
import { connectRedis } from '../src/adapters/redis.ts';
import { NotFoundError, PeerUnavailableError } from '../src/errors.ts';
import type { WorkloadRef } from '../src/adapters/kubernetes/index.ts';
import type { FailingPod } from '../src/adapters/kubernetes/workloads.ts';
import type { JobResult } from '../src/adapters/kubernetes/jobs.ts';
import { catalogActivities } from './catalog.ts';
import { startHeartbeats, type WaitProgress } from './progress.ts';

export interface DeployDeps {
  systems: Systems;
  postgres: PostgresAdapter;
}

export interface DeployPlan {
  workload: WorkloadRef;
  replicas: number;
  /** Container → image now; what a rollback returns to. */
  previousImages: Record<string, string>;
  /** The Deployment revision now (0 for a StatefulSet): the rollback target. */
  previousRevision: number;
  capacity: CapacityVerdict;
  capacityPolicy: DeployConfig['capacity'];
  analysis: Pick<DeployConfig['analysis'], 'intervalSeconds' | 'failureLimit' | 'inconclusiveLimit' | 'bakeSeconds'>;
  /** The image the migration Job runs, if the system has a migration. */
  migrationImage?: string;
}

export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
}

export type Verdict = 'pass' | 'fail' | 'inconclusive';

export interface Measurement {
  at: string;
  verdict: Verdict;
  checks: (CheckResult & { verdict: Verdict; value?: number })[];
  /** New-version pods that will not start by waiting: roll back at once. */
  failingPods: FailingPod[];
  rollout: RolloutStatus;
}

/** One HTTP check from the config: answered with an expected status, within its latency limit. */
export async function httpCheck(check: HttpCheckConfig, where: string, signal?: AbortSignal): Promise<CheckResult & { value: number }> {
  const url = resolveSetting(check.url, where);
  const r = await probe(url, { timeoutMs: check.timeoutMs, expectStatus: check.expectStatus, signal });
  const slow = r.ok && check.maxLatencyMs !== undefined && r.latencyMs > check.maxLatencyMs;
  const ok = r.ok && !slow;
  const detail = !r.ok ? r.error ?? 'failed' : slow ? `answered in ${r.latencyMs} ms, over ${check.maxLatencyMs} ms` : `${r.status} in ${r.latencyMs} ms`;
  return { name: check.name, ok, detail, value: r.latencyMs };
}

export function deployActivities({ systems, postgres }: DeployDeps) {
  const catalog = catalogActivities({ systems });
  const deployConfig = (system: string): DeployConfig => requireDeploy(systems.config, system);

  const workloadOf = (system: string): WorkloadRef => {
    const refs = systems.workloads(system);
    const name = deployConfig(system).workload;
    const ref = name === undefined ? refs[0] : refs.find((w) => w.name === name);
    if (!ref) throw new NotFoundError(`systems.${system}.deploy.workload "${name}" is not one of the system's workloads (${refs.map((w) => w.name).join(', ')})`);
    return ref;
  };

  return {
    /**
     * Everything checked before anything changes: the workload exists, the
     * containers and image references are valid, and the rollout strategy
     * keeps capacity (or the config says to warn only).
     */
    async planDeploy(input: { system: string; images: Record<string, string> }): Promise<DeployPlan> {
      const config = deployConfig(input.system);
      const workload = workloadOf(input.system);
      const workloads = (await systems.kubernetes(input.system)).workloads;
      const object = await workloads.checkImages(workload, input.images);
      const capacity = workload.kind === 'Deployment' ? deploymentCapacity(object as V1Deployment) : statefulSetCapacity(object as V1StatefulSet);
      const containers = object.spec?.template.spec?.containers ?? [];
      const migrationContainer = config.migration?.container ?? containers[0]?.name;
      return {
        workload,
        replicas: object.spec?.replicas ?? 1,
        previousImages: Object.fromEntries(containers.map((c) => [c.name, c.image ?? ''])),
        previousRevision: workload.kind === 'Deployment' ? await workloads.revision(workload.namespace, workload.name) : 0,
        capacity,
        capacityPolicy: config.capacity,
        analysis: {
          intervalSeconds: config.analysis.intervalSeconds,
          failureLimit: config.analysis.failureLimit,
          inconclusiveLimit: config.analysis.inconclusiveLimit,
          bakeSeconds: config.analysis.bakeSeconds,
        },
        migrationImage: config.migration && migrationContainer ? input.images[migrationContainer] ?? containers.find((c) => c.name === migrationContainer)?.image : undefined,
      };
    },

    /** 003's pre-deploy checklist: database reachable, a recent backup, the application's own health checks. */
    async preDeployChecks(input: { system: string }): Promise<CheckResult[]> {
      const { system } = input;
      const checks = deployConfig(system).checks;
      const results: CheckResult[] = [];
      if (checks.database && systems.get(system).postgres) {
        try {
          const info = await postgres.serverInfo(systems.postgresUrl(system));
          results.push({ name: 'database', ok: true, detail: `${info.database} answers (PostgreSQL ${info.serverVersion})` });
        } catch (err) {
          results.push({ name: 'database', ok: false, detail: redact((err as Error).message) });
        }
      }
      if (checks.redis && systems.get(system).redis) {
        let redis: Awaited<ReturnType<typeof connectRedis>> | undefined;
        try {
          redis = await connectRedis({ url: systems.redisUrl(system) });
          const pong = await redis.ping();
          results.push({ name: 'redis', ok: pong === 'PONG', detail: `PING → ${pong}` });
        } catch (err) {
          results.push({ name: 'redis', ok: false, detail: redact((err as Error).message) });
        } finally {
          redis?.disconnect();
        }
      }
      if (checks.backupMaxAgeHours !== undefined) {
        const newest = (await catalog.listBackups({ system }))[0];
        const ageHours = newest ? (Date.now() - Date.parse(newest.completedAt)) / 3_600_000 : Infinity;
        results.push({
          name: 'recent-backup',
          ok: ageHours <= checks.backupMaxAgeHours,
          detail: newest ? `newest backup ${newest.backupId} is ${ageHours.toFixed(1)} h old (limit ${checks.backupMaxAgeHours} h)` : 'no complete backup exists',
        });
      }
      for (const [i, check] of checks.http.entries()) results.push(await httpCheck(check, `systems.${system}.deploy.checks.http.${i}.url`));
      return results;
    },

    /** The migration as a Job running the new image; its name comes from the run, so a retry waits on the same Job. */
    async runMigration(input: { system: string; image: string; jobName: string }): Promise<JobResult> {
      const migration = deployConfig(input.system).migration;
      if (!migration) throw new NotFoundError(`system "${input.system}" has no deploy.migration`);
      const { namespace } = workloadOf(input.system);
      const progress: WaitProgress = { step: 'migration', message: `job ${input.jobName} starting` };
      const stop = startHeartbeats(progress);
      try {
        return await (await systems.kubernetes(input.system)).jobs.run(
          {
            namespace,
            name: input.jobName,
            image: input.image,
            command: migration.command,
            serviceAccountName: migration.serviceAccountName,
            activeDeadlineSeconds: migration.timeoutSeconds,
            ...systems.kubernetesConfig(input.system).podPlacement,
          },
          {
            signal: Context.current().cancellationSignal,
            onStatus: (p) => (progress.message = `job ${input.jobName}: ${p.active} active, ${p.succeeded} succeeded, ${p.failed} failed`),
          },
        );
      } finally {
        stop();
      }
    },

    /**
     * One analysis measurement: the rollout's state, pods of the new images
     * that fail to start, every probe and every Prometheus query against its
     * threshold. Fail if anything failed; inconclusive if something could not
     * be measured (no data, Prometheus unreachable) and nothing failed.
     */
    async analyze(input: { system: string; images: Record<string, string> }): Promise<Measurement> {
      const { system } = input;
      const analysis = deployConfig(system).analysis;
      const workload = workloadOf(system);
      const workloads = (await systems.kubernetes(system)).workloads;
      const signal = Context.current().cancellationSignal;
      const object = await workloads.read(workload);
      const rollout = workload.kind === 'Deployment' ? rolloutStatus(object as V1Deployment) : statefulSetRolloutStatus(object as V1StatefulSet);
      const failingPods = await workloads.failingPods(workload, { minRestarts: analysis.crashLoopRestarts, images: Object.values(input.images) });

      const checks: Measurement['checks'] = [];
      for (const [i, p] of analysis.probes.entries()) {
        const r = await httpCheck(p, `systems.${system}.deploy.analysis.probes.${i}.url`, signal);
        checks.push({ ...r, verdict: r.ok ? 'pass' : 'fail' });
      }
      if (analysis.queries.length > 0) {
        if (!analysis.prometheus) throw new NotFoundError(`systems.${system}.deploy.analysis has queries but no prometheus.url`);
        const prometheus = new Prometheus({ url: resolveSetting(analysis.prometheus.url, `systems.${system}.deploy.analysis.prometheus.url`) });
        for (const q of analysis.queries) {
          try {
            const { value } = await prometheus.query(q.query, { signal });
            if (value === undefined) {
              checks.push({ name: q.name, ok: false, verdict: 'inconclusive', detail: 'no data' });
              continue;
            }
            const over = q.max !== undefined && value > q.max;
            const under = q.min !== undefined && value < q.min;
            const limit = over ? `above max ${q.max}` : under ? `below min ${q.min}` : 'within limits';
            checks.push({ name: q.name, ok: !over && !under, verdict: over || under ? 'fail' : 'pass', value, detail: `${round(value)} ${limit}` });
          } catch (err) {
            if (!(err instanceof PeerUnavailableError)) throw err; // a bad query is a config error, not a measurement
            checks.push({ name: q.name, ok: false, verdict: 'inconclusive', detail: err.message });
          }
        }
      }
      const verdict: Verdict =
        failingPods.length > 0 || checks.some((c) => c.verdict === 'fail') ? 'fail' : checks.some((c) => c.verdict === 'inconclusive') ? 'inconclusive' : 'pass';
      return { at: new Date().toISOString(), verdict, checks, failingPods, rollout };
    },

    /**
     * Back to the previous version: `rollout undo` to the revision recorded
     * before the deploy; a no-op when the images already are the previous
     * ones (a retry after the undo went through, when that revision number
     * has moved on). A StatefulSet gets its previous images back.
     */
    async rollbackWorkload(input: { system: string; workload: string; toRevision: number; previousImages: Record<string, string> }): Promise<{ changed: boolean }> {
      const workload = workloadOf(input.system);
      const workloads = (await systems.kubernetes(input.system)).workloads;
      const current = await workloads.images(workload);
      if (Object.entries(input.previousImages).every(([c, image]) => current[c] === image)) return { changed: false };
      if (workload.kind === 'Deployment' && input.toRevision > 0) {
        await workloads.setPaused(workload.namespace, workload.name, false); // undo is refused on a paused Deployment
        await workloads.undo(workload.namespace, workload.name, input.toRevision);
      } else {
        await workloads.setImage(workload, input.previousImages, { changeCause: 'opsflow rollback' });
      }
      return { changed: true };
    },

    async setRolloutPaused(input: { system: string; paused: boolean }): Promise<{ changed: boolean }> {
      const workload = workloadOf(input.system);
      if (workload.kind !== 'Deployment') return { changed: false }; // a StatefulSet has no pause; the workflow still holds its decisions
      return (await systems.kubernetes(input.system)).workloads.setPaused(workload.namespace, workload.name, input.paused);
    },

    /** POSTs `{ text, event, … }` to the system's webhook; a system without one is a no-op. */
    async notify(input: { system: string; event: string; text: string; details?: Record<string, unknown> }): Promise<{ sent: boolean }> {
      const webhook = deployConfig(input.system).notify?.webhook;
      if (!webhook) return { sent: false };
      const url = resolveSecret(webhook, `systems.${input.system}.deploy.notify.webhook`);
      let res: Response;
      try {
        res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ text: input.text, event: input.event, system: input.system, ...input.details }),
          signal: AbortSignal.timeout(10_000),
        });
      } catch (err) {
        throw new PeerUnavailableError(`notification webhook unreachable: ${(err as Error).message}`, err);
      }
      if (!res.ok) throw new PeerUnavailableError(`notification webhook answered ${res.status}`);
      return { sent: true };
    },
  };
}

function round(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toPrecision(3);
}
