/**
 * PostgreSQL activities: check, dump to S3, restore from S3, count rows, and
 * the database renames a restore swaps with. Each is idempotent: names derive
 * from the workflow, state is checked before acting, "already done" succeeds.
 */
import type { PostgresAdapter } from '../src/adapters/postgres.ts';
import { withDatabase } from '../src/adapters/postgres.ts';
import type { Systems } from '../src/systems.ts';
import { backupPrefix, POSTGRES_DUMP_FILE } from '../src/domain/names.ts';
import { componentStoredBytes, type PostgresComponent, type SetEncryption } from '../src/domain/manifest.ts';
import { withDriverContext } from './sets.ts';
import { loadInto, postgresDriver } from './components/postgres.ts';

export interface PostgresDeps {
  systems: Systems;
  postgres: PostgresAdapter;
}

export function postgresActivities(deps: PostgresDeps) {
  const { systems, postgres } = deps;
  return {
    /** The system exists and its database answers; what a backup would read. */
    async checkPostgres(input: { system: string }) {
      return postgres.serverInfo(systems.postgresUrl(input.system));
    },

    /** The format-1 dump step (runs started before component sets): the postgres driver, at the format-1 key. */
    async backupPostgres(input: { system: string; backupId: string }): Promise<PostgresComponent> {
      const key = backupPrefix(systems.s3Prefix(input.system), input.system, input.backupId) + POSTGRES_DUMP_FILE;
      return withDriverContext(deps, { system: input.system, step: 'dump' }, (ctx) => postgresDriver.backup(ctx, { kind: 'postgres', name: 'postgres', jobs: 1, splitFromBytes: 0 }, key));
    },

    /** The database-only restore step: loads a dump into `database` (made anew) and checks it against the manifest. */
    async restorePostgres(input: { system: string; component: PostgresComponent; database: string; encryption?: SetEncryption }) {
      const url = systems.postgresUrl(input.system);
      const counts = await withDriverContext(deps, { system: input.system, encryption: input.encryption, step: 'restore' }, (ctx) => loadInto(ctx, { ...input.component, name: 'postgres' }, url, input.database));
      return { database: input.database, storedBytes: componentStoredBytes(input.component), tables: Object.keys(counts).length };
    },

    async postgresRowCounts(input: { system: string; database: string }) {
      return postgres.rowCountsOf(withDatabase(systems.postgresUrl(input.system), input.database));
    },

    /** Which of these databases exist on the system's server. */
    async databasesExist(input: { system: string; names: string[] }): Promise<Record<string, boolean>> {
      const url = systems.postgresUrl(input.system);
      const result: Record<string, boolean> = {};
      for (const name of input.names) result[name] = await postgres.databaseExists(url, name);
      return result;
    },

    /** Idempotent rename; `closeFrom` first stops new connections to `from`. */
    async renameDatabase(input: { system: string; from: string; to: string; closeFrom?: boolean }) {
      await postgres.renameDatabase(systems.postgresUrl(input.system), input.from, input.to, { closeFrom: input.closeFrom });
    },

    async allowConnections(input: { system: string; database: string; allow: boolean }) {
      await postgres.setAllowConnections(systems.postgresUrl(input.system), input.database, input.allow);
    },

    async dropDatabase(input: { system: string; database: string }) {
      return postgres.dropDatabase(systems.postgresUrl(input.system), input.database);
    },
  };
}
