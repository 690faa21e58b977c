/**
 * The manifest written beside every backup set. It is the set's table of
 * contents and the proof of what it holds; a set without one is incomplete and
 * never listed. Parsed with a schema on read, because S3 content is input too.
 */
import { z } from 'zod';

export const postgresComponentSchema = z.object({
  kind: z.literal('postgres'),
  key: z.string(),
  database: z.string(),
  serverVersion: z.string(),
  format: z.literal('pg_dump-custom'),
  compression: z.literal('zstd'),
  /** Bytes pg_dump wrote. */
  rawBytes: z.number().int().nonnegative(),
  /** Bytes stored in S3 (compressed). */
  storedBytes: z.number().int().nonnegative(),
  /** SHA-256 of the stored object, hex. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Exact row counts per `schema.table`, taken in the dump's own snapshot. */
  rowCounts: z.record(z.string(), z.number().int().nonnegative()),
  startedAt: z.string(),
  completedAt: z.string(),
});
export type PostgresComponent = z.infer<typeof postgresComponentSchema>;

export const manifestSchema = z.object({
  formatVersion: z.literal(1),
  backupId: z.string(),
  system: z.string(),
  workflowId: z.string(),
  startedAt: z.string(),
  completedAt: z.string(),
  components: z.object({ postgres: postgresComponentSchema.optional() }),
});
export type Manifest = z.infer<typeof manifestSchema>;

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
