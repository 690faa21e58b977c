/**
 * How a split PostgreSQL backup shares its tables out among its data parts:
 * largest first, each to the part with the fewest bytes so far (the greedy
 * rule for balancing loads), so the parts load in about the same time. A
 * part never gets split: one huge table bounds a restore, as with
 * pg_restore -j.
 *
 * The part with the most tables comes last. It is dumped as "every table's
 * rows but the other parts'", which puts the fewest names on pg_dump's
 * command line and also takes what belongs to no one table: sequences'
 * positions and large objects. So there is always at least that one part.
 */
export function splitTables<T extends { bytes: number }>(tables: readonly T[], jobs: number): T[][] {
  const parts = Array.from({ length: Math.max(1, jobs) }, () => ({ bytes: 0, tables: [] as T[] }));
  for (const table of [...tables].sort((a, b) => b.bytes - a.bytes)) {
    const lightest = parts.reduce((min, part) => (part.bytes < min.bytes ? part : min));
    lightest.bytes += table.bytes;
    lightest.tables.push(table);
  }
  const used = parts.filter((p, i) => p.tables.length > 0 || i === 0).map((p) => p.tables);
  const rest = used.reduce((most, part) => (part.length > most.length ? part : most));
  return [...used.filter((p) => p !== rest), rest];
}
