/**
 * PostgreSQL: pg_dump (custom format) of one snapshot, with exact row counts
 * from the same snapshot; restored with pg_restore into a recovery database,
 * counted, then swapped in by renaming (003's recovery-and-rename).
 */
import type { Readable } from 'node:stream';
import { databaseOf, withDatabase } from '../../src/adapters/postgres.ts';
import { ConflictError, IntegrityError, NotFoundError } from '../../src/errors.ts';
import { compareRowCounts, describeRowCountMismatches } from '../../src/domain/manifest.ts';
import { recoveryDatabaseName, retiredDatabaseName, scratchDatabaseName } from '../../src/domain/names.ts';
import { consumeDownload, downloadArtifact, uploadArtifact } from '../artifacts.ts';
import { describeCounts, type ComponentOf, type Driver, type DriverContext } from './driver.ts';

type PostgresComponent = ComponentOf<'postgres'>;

/** The live, recovery and retired database names of a restore into `ctx.system`. */
function namesFor(ctx: DriverContext, tag: string) {
  const url = ctx.systems.postgresUrl(ctx.system);
  const live = databaseOf(url);
  return { url, live, recovery: recoveryDatabaseName(live, tag), retired: retiredDatabaseName(live, tag) };
}

/** pg_restore of the component into `database` (made anew, so a retry starts clean), then its row counts checked. */
export async function loadInto(ctx: DriverContext, component: PostgresComponent, url: string, database: string): Promise<Record<string, number>> {
  const { postgres } = ctx;
  await postgres.dropDatabase(url, database);
  await postgres.createDatabase(url, database);
  // zstd writes straight into pg_restore: the decompressed archive never passes through the worker.
  const download = downloadArtifact(component, ctx.artifacts, { toProcess: true });
  await consumeDownload(download, (stream: Readable) => postgres.startRestore(withDatabase(url, database), stream, { signal: ctx.signal, fromProcess: true }).done);
  const actual = await postgres.rowCountsOf(withDatabase(url, database));
  const mismatches = compareRowCounts(component.rowCounts, actual);
  if (mismatches.length > 0) throw new IntegrityError(describeRowCountMismatches(mismatches));
  return actual;
}

export const postgresDriver: Driver<'postgres'> = {
  fileName: (config) => `${config.name}.dump.zst`,

  async check(ctx) {
    const info = await ctx.postgres.serverInfo(ctx.systems.postgresUrl(ctx.system));
    return `database ${info.database}, PostgreSQL ${info.serverVersion}, ${info.sizeBytes} bytes`;
  },

  async backup(ctx, config, key) {
    const { systems, postgres, system } = ctx;
    const url = systems.postgresUrl(system);
    const startedAt = new Date().toISOString();
    const { client, snapshot } = await postgres.openSnapshot(url);
    try {
      const serverVersion = (await client.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)).rows[0]!.v;
      const dump = postgres.startDump(url, { snapshot, extraArgs: systems.postgresDumpArgs(system), signal: ctx.signal });
      const rowCounts = postgres.rowCounts(client);
      rowCounts.catch(() => undefined); // awaited below; if the upload fails first, not at all
      const stored = await uploadArtifact(key, dump.stdout, dump.done, ctx.artifacts);
      return {
        ...stored,
        kind: 'postgres',
        name: config.name,
        database: databaseOf(url),
        serverVersion,
        format: 'pg_dump-custom',
        rowCounts: await rowCounts,
        startedAt,
        completedAt: new Date().toISOString(),
      };
    } finally {
      await client.end().catch(() => undefined);
    }
  },

  async stage(ctx, component, _config, tag) {
    const { url, recovery, retired } = namesFor(ctx, tag);
    if (await ctx.postgres.databaseExists(url, retired)) {
      throw new ConflictError(`database "${retired}" already exists: an earlier attempt of this restore swapped it out; finish or undo that first`);
    }
    const counts = await loadInto(ctx, component, url, recovery);
    return `${recovery}: ${describeCounts(counts)}, as in the manifest`;
  },

  async swapIn(ctx, _component, _config, tag) {
    const { url, live, recovery, retired } = namesFor(ctx, tag);
    const { postgres } = ctx;
    if (!(await postgres.databaseExists(url, recovery))) {
      if (await postgres.databaseExists(url, live)) return; // swapped already (a retry)
      throw new NotFoundError(`recovery database "${recovery}" is gone; stage the restore again`);
    }
    // A system being recovered onto new infrastructure may have no live database yet.
    if (await postgres.databaseExists(url, live)) await postgres.renameDatabase(url, live, retired, { closeFrom: true });
    await postgres.renameDatabase(url, recovery, live);
  },

  async swapBack(ctx, _component, _config, tag) {
    const { url, live, recovery, retired } = namesFor(ctx, tag);
    const { postgres } = ctx;
    if (!(await postgres.databaseExists(url, retired))) return; // never swapped, or put back already
    if (await postgres.databaseExists(url, live)) await postgres.renameDatabase(url, live, recovery, { closeFrom: true });
    await postgres.renameDatabase(url, retired, live);
    await postgres.setAllowConnections(url, live, true);
  },

  /** Drops the recovery database if it is still there; the retired one is kept for a manual rollback. */
  async discard(ctx, _component, _config, tag) {
    const { url, recovery } = namesFor(ctx, tag);
    await ctx.postgres.dropDatabase(url, recovery);
  },

  async verify(ctx, component) {
    const url = ctx.systems.postgresUrl(ctx.system);
    const scratch = scratchDatabaseName(databaseOf(url), component.key);
    try {
      const counts = await loadInto(ctx, component, url, scratch);
      return `restored into ${scratch}: ${describeCounts(counts)}, as in the manifest`;
    } finally {
      await ctx.postgres.dropDatabase(url, scratch).catch(() => undefined);
    }
  },
};
