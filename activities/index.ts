/**
 * All activities, built over adapters by one factory so tests can swap an
 * adapter. Errors are mapped to Temporal failures on the way out.
 */
import { PostgresAdapter } from '../src/adapters/postgres.ts';
import { Systems } from '../src/systems.ts';
import type { Config } from '../src/config.ts';
import { catalogActivities } from './catalog.ts';
import { postgresActivities } from './postgres.ts';
import { kubernetesActivities } from './kubernetes.ts';
import { deployActivities } from './deploy.ts';
import { setActivities } from './sets.ts';
import { recoveryActivities } from './recovery.ts';
import { withFailureMapping } from './failures.ts';

export interface ActivityDeps {
  systems: Systems;
  postgres: PostgresAdapter;
}

export function defaultDeps(config: Config): ActivityDeps {
  return {
    systems: new Systems(config),
    postgres: new PostgresAdapter({ binDir: process.env.OPSFLOW_PG_BIN }),
  };
}

export function createActivities(deps: ActivityDeps) {
  return withFailureMapping({
    ...catalogActivities(deps),
    ...postgresActivities(deps),
    ...kubernetesActivities(deps),
    ...deployActivities(deps),
    ...setActivities(deps),
    ...recoveryActivities(deps),
  });
}

export type Activities = ReturnType<typeof createActivities>;
