/**
 * What a disaster recovery does besides restoring data: check the recovered
 * application, and send traffic to it; and where a drill may recover into.
 */
import { isAbsolute, relative } from 'node:path';
import { databaseOf } from '../src/adapters/postgres.ts';
import { parseRedisUrl } from '../src/adapters/redis.ts';
import { InvalidInputError, PeerUnavailableError } from '../src/errors.ts';
import { resolveSetting } from '../src/config.ts';
import { resolveSecret } from '../src/secrets.ts';
import type { Systems } from '../src/systems.ts';
import { httpCheck, type CheckResult } from './deploy.ts';
import { keepAlive } from './progress.ts';

/** Where a system keeps its data, as comparable strings: database, Redis databases, namespace. */
function placesOf(systems: Systems, system: string): string[] {
  const config = systems.get(system);
  const places: string[] = [];
  if (config.postgres) {
    const u = new URL(systems.postgresUrl(system));
    places.push(`PostgreSQL database ${u.hostname || u.searchParams.get('host') || 'localhost'}:${u.port || 5432}/${databaseOf(u.toString())}`);
  }
  if (config.redis) {
    const { host, port, db } = parseRedisUrl(systems.redisUrl(system));
    const dbs = new Set([db, ...systems.components(system).flatMap((c) => (c.kind === 'redis' ? [c.stagingDb] : []))]);
    for (const n of dbs) places.push(`Redis database ${host}:${port}/${n}`);
  }
  if (config.kubernetes) {
    const k = config.kubernetes;
    const kubeconfig = k.kubeconfig === undefined ? '' : resolveSetting(k.kubeconfig, `systems.${system}.kubernetes.kubeconfig`);
    places.push(`namespace ${k.namespace} (kubeconfig ${kubeconfig || 'default'}, context ${k.context ?? 'current'})`);
  }
  return places;
}

/** Local paths of one system equal to, inside or around those of another. */
function overlappingPaths(systems: Systems, a: string, b: string): string[] {
  const paths = (s: string) => systems.components(s).flatMap((c) => ((c.kind === 'files' || c.kind === 'sqlite') && !c.pod ? [c.path] : []));
  const within = (inner: string, outer: string) => {
    const r = relative(outer, inner);
    return r === '' || (!r.startsWith('..') && !isAbsolute(r));
  };
  return paths(a).flatMap((p) => paths(b).filter((q) => within(p, q) || within(q, p)).map((q) => `paths ${p} and ${q}`));
}

export function recoveryActivities({ systems }: { systems: Systems }) {
  return {
    /**
     * The scratch system a drill of `system` recovers into: the input's, else
     * the configured `recovery.drillInto`, else none. Refused unless it is
     * marked scratch and shares no place with `system`, since the drill
     * empties it afterwards.
     */
    async drillPlace(input: { system: string; into?: string }): Promise<string | undefined> {
      const into = input.into ?? systems.get(input.system).recovery.drillInto;
      if (into === undefined) return undefined;
      if (into === input.system) throw new InvalidInputError(`into: a drill of "${input.system}" cannot recover into the system itself`);
      if (!systems.get(into).recovery.scratch) throw new InvalidInputError(`into: system "${into}" is not marked recovery.scratch: true (a drill empties it afterwards)`);
      const theirs = new Set(placesOf(systems, input.system));
      const shared = [...placesOf(systems, into).filter((p) => theirs.has(p)), ...overlappingPaths(systems, into, input.system)];
      if (shared.length) throw new InvalidInputError(`into: scratch system "${into}" shares places with "${input.system}" (${shared.join('; ')}); a drill would empty them`);
      return into;
    },

    /** The workloads a recovery scales to 0 and back: the configured ones, none without a kubernetes section. */
    async recoveryWorkloads(input: { system: string }): Promise<string[]> {
      return keepAlive('workloads', async () => (systems.get(input.system).kubernetes ? systems.workloads(input.system).map((w) => w.name) : []));
    },

    /** Every configured health check (`/health`, `/ready`, custom); the caller decides what a failure means. */
    async recoveryHealth(input: { system: string }): Promise<CheckResult[]> {
      const checks = systems.get(input.system).recovery.health;
      return keepAlive('health', async () => {
        const results: CheckResult[] = [];
        for (const [i, check] of checks.entries()) {
          const { value: _latency, ...result } = await httpCheck(check, `systems.${input.system}.recovery.health.${i}.url`);
          results.push(result);
        }
        return results;
      });
    },

    /** POSTs the switch to the configured webhook (DNS, load balancer); false when none is configured. */
    async switchTraffic(input: { system: string; backupId: string; workflowId: string }): Promise<{ switched: boolean }> {
      const hook = systems.get(input.system).recovery.trafficSwitch;
      if (!hook) return { switched: false };
      const url = resolveSecret(hook.webhook, `systems.${input.system}.recovery.trafficSwitch.webhook`);
      let res: Response;
      try {
        res = await keepAlive('switch traffic', () => fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': input.workflowId },
          body: JSON.stringify({ event: 'recovered', system: input.system, backupId: input.backupId, workflowId: input.workflowId }),
          signal: AbortSignal.timeout(10_000),
        }));
      } catch (err) {
        throw new PeerUnavailableError(`traffic switch webhook unreachable: ${(err as Error).message}`, err);
      }
      if (!res.ok) throw new PeerUnavailableError(`traffic switch webhook answered ${res.status}`);
      return { switched: true };
    },
  };
}
