/** How a split PostgreSQL backup shares tables among its data parts. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { splitTables } from '../../src/domain/split.ts';

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
