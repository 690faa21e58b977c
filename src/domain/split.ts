/**
 * How a split PostgreSQL backup shares its tables out among its data parts:
 * largest first, each to the part with the fewest bytes so far (the greedy
 * rule for balancing loads), so the parts load in about the same time. A
 * table bigger than a part's share is then cut into row ranges by
 * `pageRanges`, or it alone would bound the restore, as it does
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

/**
 * The heap page ranges a table of `pages` pages and `tableBytes` (of the
 * database's `totalBytes`) is cut into, so that no range holds much more
 * than a part's share, `totalBytes / jobs`: at most `jobs` ranges of about
 * equal pages, the last open-ended. One range means the table stays whole.
 */
export function pageRanges(pages: number, tableBytes: number, totalBytes: number, jobs: number): { fromPage: number; toPage?: number }[] {
  const share = totalBytes / jobs;
  const count = share > 0 ? Math.max(1, Math.min(jobs, pages, Math.ceil(tableBytes / share))) : 1;
  return Array.from({ length: count }, (_, i) => ({
    fromPage: Math.floor((pages * i) / count),
    ...(i < count - 1 ? { toPage: Math.floor((pages * (i + 1)) / count) } : {}),
  }));
}
