/**
 * The manifest written beside every backup set. It is the set's table of
 * contents and the proof of what it holds; a set without one is incomplete and
 * never listed. Parsed with a schema on read, because S3 content is input too.
 *
 * Format 2 holds any number of named components (postgres, redis, files,
 * kubernetes, sqlite); format 1 (a PostgreSQL dump only) still reads, as a
 * format 2 set with one component named `postgres`.
 */
import { z } from 'zod';

/** What every stored component has: where it is and how to check it. */
const storedObject = {
  /** The component's name in the set (unique), e.g. `postgres`, `checkpoints`. */
  name: z.string(),
  key: z.string(),
  compression: z.literal('zstd'),
  /** Whether the object is encrypted with the set's data key. */
  encrypted: z.boolean().default(false),
  /** Bytes the source produced (before compression). */
  rawBytes: z.number().int().nonnegative(),
  /** Bytes stored in S3. */
  storedBytes: z.number().int().nonnegative(),
  /** SHA-256 of the stored object, hex. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  startedAt: z.string(),
  completedAt: z.string(),
};

/** One of the objects a split PostgreSQL backup keeps its rows in. */
export const postgresDataPartSchema = z.object({
  key: z.string(),
  compression: z.literal('zstd'),
  encrypted: z.boolean(),
  rawBytes: z.number().int().nonnegative(),
  storedBytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** The tables (`schema.table`) whose rows it holds; `rest`: also every other table's, the sequences' positions and large objects. */
  tables: z.array(z.string()),
  rest: z.boolean(),
  /**
   * Set when the part is not a pg_dump archive but the rows of one big
   * `table` whose heap page is in [fromPage, toPage), as COPY text of
   * `columns` in `encoding`: how such a table is shared among parts (the
   * adapter's RowRange, as stored).
   */
  rows: z
    .object({
      table: z.object({ schema: z.string(), name: z.string() }),
      columns: z.array(z.string()),
      fromPage: z.number().int().nonnegative(),
      toPage: z.number().int().positive().optional(),
      encoding: z.string().regex(/^\w+$/),
    })
    .optional(),
});

export const postgresComponentSchema = z
  .object({
    ...storedObject,
    kind: z.literal('postgres'),
    name: z.string().default('postgres'),
    database: z.string(),
    serverVersion: z.string(),
    /**
     * `pg_dump-custom`: the object is the whole database, one pg_dump archive.
     * `pg_dump-custom-split`: the object holds the schema (pg_dump's pre- and
     * post-data sections) and `dataParts` the rows, archives of the same
     * snapshot, so a restore loads them in parallel (as pg_restore -j does).
     */
    format: z.enum(['pg_dump-custom', 'pg_dump-custom-split']),
    dataParts: z.array(postgresDataPartSchema).optional(),
    /** Exact row counts per `schema.table`, taken in the dump's own snapshot. */
    rowCounts: z.record(z.string(), z.number().int().nonnegative()),
  })
  .refine((c) => (c.format === 'pg_dump-custom-split') === (c.dataParts !== undefined), { message: 'dataParts go with format pg_dump-custom-split, and only with it', path: ['dataParts'] });

export const redisComponentSchema = z.object({
  ...storedObject,
  kind: z.literal('redis'),
  /** `snapshot`: an RDB through the replication protocol; `logical`: a key stream (SCAN + DUMP + PTTL). */
  mode: z.enum(['snapshot', 'logical']),
  /** The database (index) the restore brings back. */
  db: z.number().int().nonnegative(),
  /** Keys of that database in the backup (for a snapshot, as its RDB counts them). */
  keys: z.number().int().nonnegative(),
  /**
   * Of those, keys with a TTL (snapshots from this version on). Loading a
   * snapshot drops keys whose time ran out, so a restore reads back between
   * `keys - expires` and `keys`.
   */
  expires: z.number().int().nonnegative().optional(),
  rdbVersion: z.number().int().optional(),
  /** A snapshot that redis-check-rdb read whole during the backup (CRC64 and every value). */
  deepChecked: z.boolean().optional(),
});

export const treeDigestSchema = z.object({
  files: z.number().int().nonnegative(),
  directories: z.number().int().nonnegative(),
  symlinks: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
  sha256: z.string(),
});

export const filesComponentSchema = z.object({
  ...storedObject,
  kind: z.literal('files'),
  /** Where the tree was: `/path` on the worker, or `pod:<namespace>/<workload>/<container>:/path`. */
  source: z.string(),
  format: z.literal('tar'),
  /** Digest of the archived tree (paths, types, modes, contents): a restore must give the same. */
  tree: treeDigestSchema,
});

export const kubernetesComponentSchema = z.object({
  ...storedObject,
  kind: z.literal('kubernetes'),
  namespace: z.string(),
  format: z.literal('json-lines'),
  /** Objects per kind. */
  objects: z.record(z.string(), z.number().int().nonnegative()),
});

export const sqliteComponentSchema = z.object({
  ...storedObject,
  kind: z.literal('sqlite'),
  source: z.string(),
  format: z.literal('sqlite-backup'),
  sqliteVersion: z.string(),
  /** Exact row counts per table of the copy. */
  rowCounts: z.record(z.string(), z.number().int().nonnegative()),
});

export const componentSchema = z.discriminatedUnion('kind', [
  postgresComponentSchema,
  redisComponentSchema,
  filesComponentSchema,
  kubernetesComponentSchema,
  sqliteComponentSchema,
]);

export type PostgresComponent = z.infer<typeof postgresComponentSchema>;
export type RedisComponent = z.infer<typeof redisComponentSchema>;
export type FilesComponent = z.infer<typeof filesComponentSchema>;
export type KubernetesComponent = z.infer<typeof kubernetesComponentSchema>;
export type SqliteComponent = z.infer<typeof sqliteComponentSchema>;
export type Component = z.infer<typeof componentSchema>;
export type ComponentKind = Component['kind'];

/** The set's data key, wrapped by a master key that has an ID (the key itself is never stored). */
export const setEncryptionSchema = z.object({
  algorithm: z.string(),
  wrappedKey: z.object({ keyId: z.string(), algorithm: z.literal('aes-256-gcm'), iv: z.string(), ciphertext: z.string(), tag: z.string() }),
});
export type SetEncryption = z.infer<typeof setEncryptionSchema>;

const setFields = {
  backupId: z.string(),
  system: z.string(),
  workflowId: z.string(),
  startedAt: z.string(),
  completedAt: z.string(),
};

const manifestV2Schema = z.object({
  ...setFields,
  formatVersion: z.literal(2),
  encryption: setEncryptionSchema.optional(),
  components: z.array(componentSchema),
});

const manifestV1Schema = z
  .object({ ...setFields, formatVersion: z.literal(1), components: z.object({ postgres: postgresComponentSchema.optional() }) })
  .transform(({ components, ...set }) => ({ ...set, formatVersion: 2 as const, components: components.postgres ? [components.postgres] : [] }));

export const manifestSchema = z.union([manifestV2Schema, manifestV1Schema]);
export type Manifest = z.infer<typeof manifestV2Schema>;
/** The format 1 manifest, as written by backups before component sets (replayed histories). */
export type ManifestV1 = z.input<typeof manifestV1Schema>;

export function findComponent(manifest: Manifest, name: string): Component | undefined {
  return manifest.components.find((c) => c.name === name);
}

/** Every object a component is stored in: its own, and a split PostgreSQL backup's data parts. */
export function objectsOf(component: Component): { key: string; sha256: string; storedBytes: number; rawBytes: number }[] {
  return [component, ...(component.kind === 'postgres' ? (component.dataParts ?? []) : [])];
}

/** Bytes a component takes in S3, all its objects. */
export function componentStoredBytes(component: Component): number {
  return objectsOf(component).reduce((n, o) => n + o.storedBytes, 0);
}

/** Bytes its source produced, all its objects. */
export function componentRawBytes(component: Component): number {
  return objectsOf(component).reduce((n, o) => n + o.rawBytes, 0);
}

export function storedBytesOf(manifest: Manifest): number {
  return manifest.components.reduce((n, c) => n + componentStoredBytes(c), 0);
}

export interface RowCountMismatch {
  table: string;
  expected: number | null;
  actual: number | null;
}

/** Tables whose counts differ, including tables present on one side only. */
export function compareRowCounts(expected: Record<string, number>, actual: Record<string, number>): RowCountMismatch[] {
  const tables = new Set([...Object.keys(expected), ...Object.keys(actual)]);
  const mismatches: RowCountMismatch[] = [];
  for (const table of [...tables].sort()) {
    const e = expected[table] ?? null;
    const a = actual[table] ?? null;
    if (e !== a) mismatches.push({ table, expected: e, actual: a });
  }
  return mismatches;
}

/** "3 tables differ: a: expected 1, got 2; …", for a failure message. */
export function describeRowCountMismatches(mismatches: RowCountMismatch[]): string {
  const list = mismatches.slice(0, 5).map((m) => `${m.table}: expected ${m.expected ?? 'absent'}, got ${m.actual ?? 'absent'}`).join('; ');
  return `row counts differ from the manifest in ${mismatches.length} table(s): ${list}`;
}
