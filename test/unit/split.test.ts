/** How a split PostgreSQL backup shares tables among its data parts. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pageRanges, splitTables } from '../../src/domain/split.ts';

const t = (name: string, bytes: number) => ({ name, bytes });
const names = (parts: { name: string }[][]) => parts.map((p) => p.map((x) => x.name));
const bytes = (parts: { bytes: number }[][]) => parts.map((p) => p.reduce((n, x) => n + x.bytes, 0));

describe('splitTables', () => {
  it('balances bytes: the largest table alone, the others together', () => {
    const parts = splitTables([t('customers', 10), t('events', 55), t('orders', 35)], 2);
    assert.deepEqual(names(parts), [['events'], ['orders', 'customers']]);
    assert.deepEqual(bytes(parts), [55, 45]);
  });

  it('every table exactly once, and the part with the most tables last (it takes the rest)', () => {
    const tables = Array.from({ length: 50 }, (_, i) => t(`t${i}`, (i * 7919) % 1000));
    const parts = splitTables(tables, 3);
    assert.equal(parts.length, 3);
    assert.deepEqual(names(parts).flat().sort(), tables.map((x) => x.name).sort());
    assert.ok(parts.every((p) => p.length <= parts.at(-1)!.length));
    const sums = bytes(parts);
    assert.ok(Math.max(...sums) - Math.min(...sums) <= 1000, `balanced within the largest table: ${sums}`);
  });

  it('fewer tables than jobs: no empty parts', () => {
    assert.deepEqual(names(splitTables([t('a', 5), t('b', 3)], 4)).sort(), [['a'], ['b']]);
  });

  it('no tables: one part still, for sequences and large objects', () => {
    assert.deepEqual(splitTables([], 2), [[]]);
  });

  it('one job: one part with everything', () => {
    assert.deepEqual(names(splitTables([t('a', 1), t('b', 2)], 1)), [['b', 'a']]);
  });
});

describe('pageRanges', () => {
  it('a table over a part\'s share is cut into about equal page ranges, end to end, the last open-ended', () => {
    // 70 of 100 bytes among 2 jobs: the share is 50, so 2 ranges.
    assert.deepEqual(pageRanges(1001, 70, 100, 2), [{ fromPage: 0, toPage: 500 }, { fromPage: 500 }]);
    // 90 of 100 among 3: 3 ranges (never more than the jobs).
    assert.deepEqual(pageRanges(9, 90, 100, 3), [{ fromPage: 0, toPage: 3 }, { fromPage: 3, toPage: 6 }, { fromPage: 6 }]);
    assert.equal(pageRanges(10_000, 99, 100, 8).length, 8);
  });

  it('one range (the table stays whole) when it fits in a share, has too few pages, or nothing has a size', () => {
    assert.deepEqual(pageRanges(1000, 50, 100, 2), [{ fromPage: 0 }]);
    assert.deepEqual(pageRanges(1, 90, 100, 2), [{ fromPage: 0 }]);
    assert.deepEqual(pageRanges(0, 0, 0, 2), [{ fromPage: 0 }]);
  });
});
