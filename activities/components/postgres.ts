/**
 * PostgreSQL: pg_dump (custom format) of one snapshot, with exact row counts
 * from the same snapshot; restored with pg_restore into a recovery database,
 * counted, then swapped in by renaming (003's recovery-and-rename).
 *
 * A database of `splitFromBytes` or more is split (format
 * `pg_dump-custom-split`): one archive of its schema, and `jobs` archives of
 * its rows, the tables shared out by size, all dumped at once from the same
 * snapshot. A table bigger than a part's share is not one archive but
 * several row ranges (COPY text of its heap pages, in the same snapshot), so
 * it loads in parallel too. A restore loads the schema's pre-data section,
 * then the data parts in parallel, then the post-data section (indexes,
 * constraints, triggers): what pg_restore -j does, which needs a seekable
 * file, done over streams, and without waiting on one big table.
 */
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type pg from 'pg';
import { databaseOf, withDatabase, type RowRange, type TableRef } from '../../src/adapters/postgres.ts';
import { ConflictError, IntegrityError, NotFoundError } from '../../src/errors.ts';
import { compareRowCounts, describeRowCountMismatches } from '../../src/domain/manifest.ts';
import { recoveryDatabaseName, retiredDatabaseName, scratchDatabaseName } from '../../src/domain/names.ts';
import { pageRanges, splitTables } from '../../src/domain/split.ts';
import { allSettledOrFirstError } from '../../src/promises.ts';
import { withScratchDir } from '../../src/scratch.ts';
import { consumeDownload, downloadArtifact, uploadArtifact, type ArtifactOptions, type ArtifactRef } from '../artifacts.ts';
import { shareOf } from '../progress.ts';
import { describeCounts, type ComponentOf, type ConfigOf, type Driver, type DriverContext } from './driver.ts';

type PostgresComponent = ComponentOf<'postgres'>;
type TableSize = TableRef & { bytes: number };
type DataPart = NonNullable<PostgresComponent['dataParts']>[number];

/** The live, recovery and retired database names of a restore into `ctx.system`. */
function namesFor(ctx: DriverContext, tag: string) {
  const url = ctx.systems.postgresUrl(ctx.system);
  const live = databaseOf(url);
  return { url, live, recovery: recoveryDatabaseName(live, tag), retired: retiredDatabaseName(live, tag) };
}

/** `…/postgres.dump.zst.enc` → `…/postgres.data-2.dump.zst.enc`: a data part's object, beside the schema's. */
function dataPartKey(key: string, n: number): string {
  const at = key.lastIndexOf('.dump.zst');
  return `${key.slice(0, at)}.data-${n}${key.slice(at)}`;
}

/** The context's artifact options with a progress of their own, counted into the context's total. */
function withOwnProgress(ctx: DriverContext): ArtifactOptions {
  return { ...ctx.artifacts, progress: shareOf(ctx.artifacts.progress) };
}

/**
 * Runs transfers side by side, each with the artifact options it should use
 * (its own share of the progress, a signal of its own). The first to fail
 * stops the others, so no pg_dump or pg_restore is left running. What is
 * thrown is the cause, not the cancellations it caused: an IntegrityError if
 * any found one (a corrupt object), else the first failure.
 */
async function allOrNone<T>(ctx: DriverContext, tasks: ((options: ArtifactOptions) => Promise<T>)[]): Promise<T[]> {
  const stop = new AbortController();
  const signal = AbortSignal.any([ctx.signal, stop.signal]);
  const failures: unknown[] = [];
  const results = await Promise.allSettled(
    tasks.map((task) => task({ ...withOwnProgress(ctx), signal }).catch((err: unknown) => {
      failures.push(err);
      stop.abort();
      throw err;
    })),
  );
  if (failures.length > 0) throw failures.find((e) => e instanceof IntegrityError) ?? failures[0];
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}

/**
 * The row ranges the first part's table is cut into when it is that part's
 * only table and bigger than a part's share (`pageRanges`); undefined when it
 * stays whole. The last part always stays a pg_dump archive (it takes
 * sequences and large objects), so there must be another. Not on a server
 * older than 14, which would scan the whole table once per range.
 */
async function rowRanges(ctx: DriverContext, client: pg.Client, parts: TableSize[][]): Promise<RowRange[] | undefined> {
  const first = parts[0]!;
  if (parts.length < 2 || first.length !== 1) return undefined;
  const table = first[0]!;
  const layout = await ctx.postgres.tableLayout(client, table);
  if (!layout.tidRangeScans || layout.columns.length === 0) return undefined;
  const totalBytes = parts.flat().reduce((n, t) => n + t.bytes, 0);
  const ranges = pageRanges(layout.pages, table.bytes, totalBytes, parts.length);
  if (ranges.length < 2) return undefined;
  return ranges.map((pages) => ({ table: { schema: table.schema, name: table.name }, columns: layout.columns, encoding: layout.encoding, ...pages }));
}

/** The whole database into `key` (one archive), or split into a schema and data parts beside it. */
async function dump(ctx: DriverContext, config: ConfigOf<'postgres'>, key: string) {
  const { systems, postgres, system } = ctx;
  const url = systems.postgresUrl(system);
  const { client, snapshot } = await postgres.openSnapshot(url);
  try {
    const facts = await client.query<{ version: string; size: string }>(`SELECT current_setting('server_version') AS version, pg_database_size(current_database())::text AS size`);
    const { version: serverVersion, size } = facts.rows[0]!;
    const extraArgs = systems.postgresDumpArgs(system);
    // The user's own pg_dump flags may select tables; the split would not know which, so it is left to them.
    const split = config.jobs > 1 && extraArgs.length === 0 && Number(size) >= config.splitFromBytes;
    // What each data part holds: pg_dump archives of whole tables, or COPY text of one big table's row ranges.
    const parts = split ? splitTables(await postgres.tableSizes(client), config.jobs) : [];
    const ranges = split ? await rowRanges(ctx, client, parts) : undefined;
    const sources: { tables: TableRef[]; range?: RowRange }[] = [
      ...(ranges ? ranges.map((range) => ({ tables: [range.table], range })) : parts.slice(0, 1).map((tables) => ({ tables }))),
      ...parts.slice(1).map((tables) => ({ tables })),
    ];
    const rowCounts = postgres.rowCounts(client);
    rowCounts.catch(() => undefined); // awaited below; if an upload fails first, not at all

    type Producer = { stdout: Readable; done: Promise<unknown> };
    const upload = (objectKey: string, start: (signal?: AbortSignal) => Producer) => (options: ArtifactOptions) => {
      const producer = start(options.signal);
      return uploadArtifact(objectKey, producer.stdout, producer.done, options);
    };
    if (!split) {
      const stored = await upload(key, (signal) => postgres.startDump(url, { extraArgs, snapshot, signal }))(ctx.artifacts);
      return { stored, serverVersion, rowCounts: await rowCounts };
    }
    const others = parts.slice(0, -1).flat();
    const [stored, ...dataParts] = await allOrNone(ctx, [
      upload(key, (signal) => postgres.startDump(url, { sections: ['pre-data', 'post-data'], snapshot, signal })),
      ...sources.map(({ tables, range }, i) =>
        upload(dataPartKey(key, i + 1), (signal) => {
          if (range) return postgres.startCopyOut(url, range, { snapshot, signal });
          return postgres.startDump(url, { sections: ['data'], ...(i === sources.length - 1 ? { withoutRowsOf: others } : { tables }), snapshot, signal });
        })),
    ]);
    const described = dataParts.map(({ key, compression, encrypted, rawBytes, storedBytes, sha256 }, i) => {
      const { tables, range } = sources[i]!;
      return {
        key, compression, encrypted, rawBytes, storedBytes, sha256,
        tables: tables.map((t) => `${t.schema}.${t.name}`),
        rest: i === sources.length - 1,
        ...(range ? { rows: range } : {}),
      };
    });
    return { stored: stored!, serverVersion, rowCounts: await rowCounts, dataParts: described };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** pg_restore of the component into `database` (made anew, so a retry starts clean), then its row counts checked. */
export async function loadInto(ctx: DriverContext, component: PostgresComponent, url: string, database: string): Promise<Record<string, number>> {
  const { postgres } = ctx;
  const recreate = async () => {
    await postgres.dropDatabase(url, database);
    await postgres.createDatabase(url, database);
  };
  const target = withDatabase(url, database);
  // zstd writes straight into pg_restore (or psql): the decompressed data never passes through the worker.
  const restoreArchive = (object: ArtifactRef) => (options: ArtifactOptions) =>
    consumeDownload(downloadArtifact(object, options, { toProcess: true }), (stream: Readable) =>
      postgres.startRestore(target, stream, { signal: options.signal }).done);
  const { dataParts } = component;
  if (!dataParts) {
    await recreate();
    await restoreArchive(component)(ctx.artifacts);
    return checkedRowCounts(component, await postgres.rowCountsOf(target));
  }
  // A row range's rows are counted by the server as they go in (COPY's
  // count): only the other tables are counted after, so the biggest table is
  // not scanned again while its indexes are built.
  const copied: Record<string, number> = {};
  const loadPart = (part: DataPart) => async (options: ArtifactOptions) => {
    if (!part.rows) return restoreArchive(part)(options);
    const { rows } = part;
    const stored = await consumeDownload(downloadArtifact(part, options, { toProcess: true }), (stream: Readable) =>
      postgres.copyIn(target, rows, stream, { signal: options.signal }).rows);
    const table = `${rows.table.schema}.${rows.table.name}`;
    copied[table] = (copied[table] ?? 0) + stored;
  };
  // The schema archive is small: fetched once, while the database is made,
  // and kept on disk for its two sections.
  return withScratchDir('schema', async (dir) => {
    const schema = { file: join(dir, 'schema.dump') };
    await allSettledOrFirstError([
      recreate(),
      consumeDownload(downloadArtifact(component, withOwnProgress(ctx)), (stream: Readable) => pipeline(stream, createWriteStream(schema.file))),
    ]);
    const { signal } = ctx;
    await postgres.startRestore(target, schema, { section: 'pre-data', signal }).done;
    await allOrNone(ctx, dataParts.map(loadPart));
    // Every row is in: count them while the indexes are built (post-data adds no rows).
    const [, counted] = await allSettledOrFirstError([
      postgres.startRestore(target, schema, { section: 'post-data', signal }).done,
      postgres.rowCountsOf(target, new Set(Object.keys(copied))),
    ]);
    return checkedRowCounts(component, { ...counted, ...copied });
  });
}

/** The row counts found, once they match the manifest's. */
function checkedRowCounts(component: PostgresComponent, actual: Record<string, number>): Record<string, number> {
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
    const startedAt = new Date().toISOString();
    const { stored, serverVersion, rowCounts, dataParts } = await dump(ctx, config, key);
    return {
      ...stored,
      kind: 'postgres',
      name: config.name,
      database: databaseOf(ctx.systems.postgresUrl(ctx.system)),
      serverVersion,
      ...(dataParts ? { format: 'pg_dump-custom-split', dataParts } : { format: 'pg_dump-custom' }),
      rowCounts,
      startedAt,
      completedAt: new Date().toISOString(),
    };
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

  async tearDown(ctx, _config, tag) {
    const { url, live, recovery, retired } = namesFor(ctx, tag);
    const dropped: string[] = [];
    for (const name of [live, recovery, retired]) if (await ctx.postgres.dropDatabase(url, name)) dropped.push(name);
    return dropped.length ? `database ${dropped.join(', ')} dropped` : 'no database to drop';
  },
};
