/** What a disaster recovery does besides restoring data: check the recovered application, and send traffic to it. */
import { PeerUnavailableError } from '../src/errors.ts';
import { resolveSecret } from '../src/secrets.ts';
import type { Systems } from '../src/systems.ts';
import { httpCheck, type CheckResult } from './deploy.ts';
import { keepAlive } from './progress.ts';

export function recoveryActivities({ systems }: { systems: Systems }) {
  return {
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
