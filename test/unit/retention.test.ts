import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyRetention,
  retentionPolicySchema,
  summarizeRetention,
  type RetentionCandidate,
  type RetentionDecision,
  type RetentionPolicy,
} from '../../src/domain/retention.ts';
import { backupIdFor, workflowIds } from '../../src/domain/names.ts';
import { formatIssues } from '../../src/domain/validation.ts';

const DAY = 24 * 60 * 60 * 1000;
const HOUR = 60 * 60 * 1000;
const NOW = new Date('2026-11-23T12:30:00Z');

const time = (set: RetentionCandidate) => new Date(set.completedAt).getTime();
/** Newest first, equal times by backup ID: the order the rules are stated in. */
const newestFirst = (a: RetentionCandidate, b: RetentionCandidate) =>
  time(b) - time(a) || (a.backupId < b.backupId ? -1 : 1);

function scheduledSet(start: Date, verified: boolean): RetentionCandidate {
  return {
    backupId: backupIdFor(start, workflowIds.backup('shop', start)),
    completedAt: new Date(start.getTime() + 7 * 60 * 1000),
    pinned: false,
    verified,
  };
}

/**
 * 400 days of the 004 schedule (a set every 4 h from 02:00 UTC, each done 7
 * minutes later) up to NOW. The 02:00 fulls are restore-tested, but the last
 * three days' tests have not run yet. Plus the irregular ones below.
 */
function history(): RetentionCandidate[] {
  const sets: RetentionCandidate[] = [];
  const verifiedUntil = NOW.getTime() - 3 * DAY;
  for (let start = Date.UTC(2026, 10, 23, 10); start > NOW.getTime() - 400 * DAY; start -= 4 * HOUR) {
    const at = new Date(start);
    sets.push(scheduledSet(at, at.getUTCHours() === 2 && start < verifiedUntil));
  }
  return [...sets, ...IRREGULAR];
}

const IRREGULAR: RetentionCandidate[] = [
  // A manual set in the last millisecond of a day: that day's newest.
  { backupId: '20261120T235000Z-manual', completedAt: '2026-11-20T23:59:59.999Z', pinned: false, verified: false },
  // Two sets done at the same instant: the lower backup ID counts as newer.
  { backupId: '20261121T232000Z-bbbbbb', completedAt: '2026-11-21T23:30:00Z', pinned: false, verified: false },
  { backupId: '20261121T232000Z-aaaaaa', completedAt: '2026-11-21T23:30:00Z', pinned: false, verified: false },
  // Written by a host whose clock runs ahead.
  { backupId: '20261123T130000Z-skewed', completedAt: '2026-11-23T13:20:00Z', pinned: false, verified: false },
  // Kept for an audit, long past any rule; the zone is written as an offset.
  { backupId: '20240601T020000Z-pinned', completedAt: '2024-06-01T04:07:00+02:00', pinned: true, verified: false },
];

/** The newest set of each of the `count` latest periods that have one, worked out by grouping. */
function newestPerPeriod(sets: RetentionCandidate[], periodOf: (at: Date) => string, count: number): string[] {
  const newest = new Map<string, RetentionCandidate>();
  for (const set of sets) {
    const period = periodOf(new Date(set.completedAt));
    const current = newest.get(period);
    if (!current || newestFirst(set, current) < 0) newest.set(period, set);
  }
  return [...newest.keys()]
    .sort()
    .reverse()
    .slice(0, count)
    .map((period) => newest.get(period)!.backupId);
}

const day = (at: Date) => at.toISOString().slice(0, 10);
const month = (at: Date) => at.toISOString().slice(0, 7);
const year = (at: Date) => at.toISOString().slice(0, 4);
/** A week named by its Monday, so the test does not lean on ISO week numbering. */
const mondayOf = (at: Date) => day(new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate() - ((at.getUTCDay() + 6) % 7))));

/** Sets the rules judge: not from the future. */
const judged = (sets: RetentionCandidate[]) => sets.filter((set) => time(set) <= NOW.getTime());

/** What must survive: what the rules keep, plus every pinned set, the newest verified one (or the newest) and any future set. */
function survivors(sets: RetentionCandidate[], keptByRules: string[]): string[] {
  const past = judged(sets).sort(newestFirst);
  const protectedSet = past.find((set) => set.verified) ?? past[0];
  const keep = new Set(keptByRules);
  for (const set of sets) if (set.pinned || set === protectedSet || time(set) > NOW.getTime()) keep.add(set.backupId);
  return [...sets].sort(newestFirst).filter((set) => keep.has(set.backupId)).map((set) => set.backupId);
}

const keptIds = (sets: RetentionCandidate[], policy: RetentionPolicy) => summarizeRetention(applyRetention(sets, policy, NOW)).keep;

/** Completion times of the given sets, newest first: readable expectations for the long history. */
function stamps(sets: RetentionCandidate[], ids: string[]): string[] {
  const byId = new Map(sets.map((set) => [set.backupId, new Date(set.completedAt).toISOString()]));
  return ids.map((id) => byId.get(id)!);
}

/** Looks decisions up by their set's completion time, for readable expectations. */
function reasonsByStamp(sets: RetentionCandidate[], decisions: RetentionDecision[]): (iso: string) => string[] | undefined {
  const stampOf = new Map(sets.map((set) => [set.backupId, new Date(set.completedAt).toISOString()]));
  const reasons = new Map(decisions.map((decision) => [stampOf.get(decision.backupId), decision.reasons]));
  return (iso) => reasons.get(iso);
}

const at = (iso: string) => new Date(iso);
const candidate = (backupId: string, completedAt: string, flags: Partial<RetentionCandidate> = {}): RetentionCandidate => ({
  backupId,
  completedAt,
  pinned: false,
  verified: false,
  ...flags,
});

describe('retention policy schema', () => {
  it('accepts the 004 plan', () => {
    const plan = { keepWithinDays: 30, monthly: 12, maxAgeDays: 366 };
    assert.deepEqual(retentionPolicySchema.parse(plan), plan);
  });

  it('rejects a policy that keeps nothing, even one with only a cap', () => {
    for (const policy of [{}, { maxAgeDays: 30 }]) {
      const result = retentionPolicySchema.safeParse(policy);
      assert.equal(result.success, false);
      assert.equal(
        formatIssues(result.error!),
        '(root): keeps nothing: set keepLast, keepWithinDays or a daily/weekly/monthly/yearly count',
      );
    }
  });

  it('rejects negative, zero and fractional counts and unknown keys, naming the field', () => {
    const cases: [unknown, RegExp][] = [
      [{ keepLast: -1 }, /^keepLast: /],
      [{ daily: 0 }, /^daily: /],
      [{ weekly: 1.5 }, /^weekly: /],
      [{ monthly: -12 }, /^monthly: /],
      [{ yearly: -3 }, /^yearly: /],
      [{ keepWithinDays: -30 }, /^keepWithinDays: /],
      [{ keepLast: 3, maxAgeDays: 0 }, /^maxAgeDays: /],
      [{ keepLast: 3, keeplast: 5 }, /keeplast/],
    ];
    for (const [policy, message] of cases) {
      const result = retentionPolicySchema.safeParse(policy);
      assert.equal(result.success, false, JSON.stringify(policy));
      assert.match(formatIssues(result.error!), message);
    }
  });

  it('applyRetention refuses an invalid policy rather than deleting by it', () => {
    assert.throws(() => applyRetention(history(), {} as RetentionPolicy, NOW), /invalid retention policy: \(root\): keeps nothing/);
    assert.throws(() => applyRetention([], { keepLast: -1 }, NOW), /invalid retention policy: keepLast: /);
  });
});

describe('applyRetention on a 400-day history', () => {
  const sets = history();

  it('has the history it claims', () => {
    assert.equal(sets.length, 400 * 6 + IRREGULAR.length);
  });

  it('keepLast keeps the N newest, plus pinned, newest verified and future sets', () => {
    const expected = survivors(sets, judged(sets).sort(newestFirst).slice(0, 5).map((set) => set.backupId));
    assert.deepEqual(keptIds(sets, { keepLast: 5 }), expected);
    assert.deepEqual(stamps(sets, expected), [
      '2026-11-23T13:20:00.000Z', // from the future
      '2026-11-23T10:07:00.000Z',
      '2026-11-23T06:07:00.000Z',
      '2026-11-23T02:07:00.000Z',
      '2026-11-22T22:07:00.000Z',
      '2026-11-22T18:07:00.000Z',
      '2026-11-20T02:07:00.000Z', // newest verified
      '2024-06-01T02:07:00.000Z', // pinned
    ]);
  });

  it('daily 7 keeps the newest set of each of the last 7 days', () => {
    const expected = survivors(sets, newestPerPeriod(judged(sets), day, 7));
    assert.deepEqual(keptIds(sets, { daily: 7 }), expected);
    assert.deepEqual(expected, [
      '20261123T130000Z-skewed',
      backupIdFor(at('2026-11-23T10:00:00Z'), workflowIds.backup('shop', at('2026-11-23T10:00:00Z'))),
      backupIdFor(at('2026-11-22T22:00:00Z'), workflowIds.backup('shop', at('2026-11-22T22:00:00Z'))),
      '20261121T232000Z-aaaaaa',
      '20261120T235000Z-manual',
      backupIdFor(at('2026-11-20T02:00:00Z'), workflowIds.backup('shop', at('2026-11-20T02:00:00Z'))),
      backupIdFor(at('2026-11-19T22:00:00Z'), workflowIds.backup('shop', at('2026-11-19T22:00:00Z'))),
      backupIdFor(at('2026-11-18T22:00:00Z'), workflowIds.backup('shop', at('2026-11-18T22:00:00Z'))),
      backupIdFor(at('2026-11-17T22:00:00Z'), workflowIds.backup('shop', at('2026-11-17T22:00:00Z'))),
      '20240601T020000Z-pinned',
    ]);
  });

  it('weekly 4 keeps the newest set of each of the last 4 weeks', () => {
    const expected = survivors(sets, newestPerPeriod(judged(sets), mondayOf, 4));
    const decisions = applyRetention(sets, { weekly: 4 }, NOW);
    assert.deepEqual(summarizeRetention(decisions).keep, expected);
    assert.deepEqual(
      decisions.flatMap((decision) => decision.reasons.filter((reason) => reason.startsWith('weekly'))),
      ['weekly 2026-W48', 'weekly 2026-W47', 'weekly 2026-W46', 'weekly 2026-W45'],
    );
  });

  it('monthly 12 and yearly 3 keep month and year ends, reaching back to the pinned 2024 set', () => {
    const past = judged(sets);
    const expected = survivors(sets, [...newestPerPeriod(past, month, 12), ...newestPerPeriod(past, year, 3)]);
    const decisions = applyRetention(sets, { monthly: 12, yearly: 3 }, NOW);
    assert.deepEqual(summarizeRetention(decisions).keep, expected);
    const reasonsOf = reasonsByStamp(sets, decisions);
    assert.deepEqual(reasonsOf('2026-11-23T10:07:00.000Z'), ['monthly 2026-11', 'yearly 2026']);
    assert.deepEqual(reasonsOf('2026-10-31T22:07:00.000Z'), ['monthly 2026-10']);
    assert.deepEqual(reasonsOf('2025-12-31T22:07:00.000Z'), ['monthly 2025-12', 'yearly 2025']);
    // 2025-11 is a thirteenth month: no rule reaches it.
    assert.deepEqual(reasonsOf('2025-11-30T22:07:00.000Z'), ['no rule keeps it']);
    assert.deepEqual(reasonsOf('2024-06-01T02:07:00.000Z'), ['pinned', 'yearly 2024']);
  });

  it('the 004 plan keeps 30 days of sets, then month ends up to a year, and nothing older', () => {
    const policy = { keepWithinDays: 30, monthly: 12, maxAgeDays: 366 };
    const past = judged(sets);
    const within = past.filter((set) => time(set) > NOW.getTime() - 30 * DAY).map((set) => set.backupId);
    const tooOld = new Set(past.filter((set) => time(set) < NOW.getTime() - 366 * DAY).map((set) => set.backupId));
    const expected = survivors(sets, [...within, ...newestPerPeriod(past, month, 12)].filter((id) => !tooOld.has(id)));
    const decisions = applyRetention(sets, policy, NOW);
    assert.deepEqual(summarizeRetention(decisions).keep, expected);

    const olderThan30Days = expected.filter((id) => time(sets.find((set) => set.backupId === id)!) <= NOW.getTime() - 30 * DAY);
    assert.deepEqual(stamps(sets, olderThan30Days), [
      '2026-09-30T22:07:00.000Z',
      '2026-08-31T22:07:00.000Z',
      '2026-07-31T22:07:00.000Z',
      '2026-06-30T22:07:00.000Z',
      '2026-05-31T22:07:00.000Z',
      '2026-04-30T22:07:00.000Z',
      '2026-03-31T22:07:00.000Z',
      '2026-02-28T22:07:00.000Z',
      '2026-01-31T22:07:00.000Z',
      '2025-12-31T22:07:00.000Z',
      '2024-06-01T02:07:00.000Z',
    ]);
    // 30 days of 6 sets a day (the window opens at 12:30, after that day's 10:07), plus the 3 irregular ones in it.
    assert.equal(within.length, 30 * 6 + 3);

    const reasonsOf = reasonsByStamp(sets, decisions);
    assert.deepEqual(reasonsOf('2026-10-31T22:07:00.000Z'), ['within 30 days', 'monthly 2026-10']);
    assert.deepEqual(reasonsOf('2026-11-20T02:07:00.000Z'), ['newest verified', 'within 30 days']);
    assert.deepEqual(reasonsOf('2026-10-24T10:07:00.000Z'), ['no rule keeps it']);
    assert.deepEqual(reasonsOf('2025-10-20T02:07:00.000Z'), ['older than 366 days']);
    assert.deepEqual(reasonsOf('2024-06-01T02:07:00.000Z'), ['pinned']);
    assert.deepEqual(reasonsOf('2026-11-23T13:20:00.000Z'), ['newer than now']);
  });

  it('is deterministic: input order does not matter, equal times go by backup ID', () => {
    const policy = { keepLast: 10, daily: 7, weekly: 4, monthly: 12, yearly: 3, maxAgeDays: 366 };
    const reference = applyRetention(sets, policy, NOW);
    const shuffled = sets.map((set, i) => ({ set, key: (i * 7919) % sets.length })).sort((a, b) => a.key - b.key).map(({ set }) => set);
    assert.deepEqual(applyRetention(shuffled, policy, NOW), reference);
    assert.deepEqual(applyRetention([...sets].reverse(), policy, NOW), reference);
    const ties = reference.map((d) => d.backupId).filter((id) => id.startsWith('20261121T232000Z'));
    assert.deepEqual(ties, ['20261121T232000Z-aaaaaa', '20261121T232000Z-bbbbbb']);
  });
});

describe('applyRetention on small cases', () => {
  it('keepLast only', () => {
    const sets = [
      candidate('c', '2026-11-21T02:07:00Z'),
      candidate('e', '2026-11-23T02:07:00Z'),
      candidate('a', '2026-11-19T02:07:00Z'),
      candidate('d', '2026-11-22T02:07:00Z'),
      candidate('b', '2026-11-20T02:07:00Z'),
    ];
    assert.deepEqual(applyRetention(sets, { keepLast: 2 }, NOW), [
      { backupId: 'e', keep: true, reasons: ['newest (none verified)', 'last 2'] },
      { backupId: 'd', keep: true, reasons: ['last 2'] },
      { backupId: 'c', keep: false, reasons: ['no rule keeps it'] },
      { backupId: 'b', keep: false, reasons: ['no rule keeps it'] },
      { backupId: 'a', keep: false, reasons: ['no rule keeps it'] },
    ]);
  });

  it('weekly 4 across a year boundary: 2026-12-31 and 2027-01-01 share ISO week 2026-W53', () => {
    const sets = [
      candidate('sun-2026-12-20', '2026-12-20T02:00:00Z'),
      candidate('mon-2026-12-21', '2026-12-21T02:00:00Z'),
      candidate('sun-2026-12-27', '2026-12-27T23:00:00Z'),
      candidate('mon-2026-12-28', '2026-12-28T02:00:00Z'),
      candidate('thu-2026-12-31', '2026-12-31T02:00:00Z'),
      candidate('fri-2027-01-01', '2027-01-01T02:00:00Z'),
      candidate('sun-2027-01-03', '2027-01-03T23:59:59Z'),
      candidate('mon-2027-01-04', '2027-01-04T00:00:00Z'),
      candidate('tue-2027-01-05', '2027-01-05T02:00:00Z', { verified: true }),
    ];
    assert.deepEqual(applyRetention(sets, { weekly: 4 }, new Date('2027-01-06T12:00:00Z')), [
      { backupId: 'tue-2027-01-05', keep: true, reasons: ['newest verified', 'weekly 2027-W01'] },
      { backupId: 'mon-2027-01-04', keep: false, reasons: ['no rule keeps it'] },
      { backupId: 'sun-2027-01-03', keep: true, reasons: ['weekly 2026-W53'] },
      { backupId: 'fri-2027-01-01', keep: false, reasons: ['no rule keeps it'] },
      { backupId: 'thu-2026-12-31', keep: false, reasons: ['no rule keeps it'] },
      { backupId: 'mon-2026-12-28', keep: false, reasons: ['no rule keeps it'] },
      { backupId: 'sun-2026-12-27', keep: true, reasons: ['weekly 2026-W52'] },
      { backupId: 'mon-2026-12-21', keep: false, reasons: ['no rule keeps it'] },
      { backupId: 'sun-2026-12-20', keep: true, reasons: ['weekly 2026-W51'] },
    ]);
  });

  it('ISO weeks belong to the year of their Thursday', () => {
    const sets = [
      candidate('sun-2021-01-03', '2021-01-03T12:00:00Z'),
      candidate('sun-2024-12-29', '2024-12-29T12:00:00Z'),
      candidate('mon-2024-12-30', '2024-12-30T12:00:00Z'),
    ];
    const decisions = applyRetention(sets, { weekly: 3 }, NOW);
    assert.deepEqual(
      decisions.map((d) => [d.backupId, d.reasons.at(-1)]),
      [
        ['mon-2024-12-30', 'weekly 2025-W01'],
        ['sun-2024-12-29', 'weekly 2024-W52'],
        ['sun-2021-01-03', 'weekly 2020-W53'],
      ],
    );
  });

  it('a pinned set survives maxAgeDays; an unpinned one of the same age does not', () => {
    const sets = [
      candidate('old', '2025-07-01T02:07:00Z'),
      candidate('old-pinned', '2025-07-01T02:07:00Z', { pinned: true }),
      candidate('recent', '2026-11-22T02:07:00Z', { verified: true }),
    ];
    assert.deepEqual(applyRetention(sets, { keepLast: 10, maxAgeDays: 366 }, NOW), [
      { backupId: 'recent', keep: true, reasons: ['newest verified', 'last 10'] },
      { backupId: 'old', keep: false, reasons: ['older than 366 days'] },
      { backupId: 'old-pinned', keep: true, reasons: ['pinned'] },
    ]);
  });

  it('the newest verified set survives everything, even past maxAgeDays; older verified ones do not', () => {
    const sets = [
      candidate('verified-older', '2025-06-01T02:07:00Z', { verified: true }),
      candidate('verified', '2025-10-01T02:07:00Z', { verified: true }),
      candidate('unverified-1', '2026-11-13T02:07:00Z'),
      candidate('unverified-2', '2026-11-22T02:07:00Z'),
    ];
    assert.deepEqual(applyRetention(sets, { keepLast: 1, maxAgeDays: 30 }, NOW), [
      { backupId: 'unverified-2', keep: true, reasons: ['last 1'] },
      { backupId: 'unverified-1', keep: false, reasons: ['no rule keeps it'] },
      { backupId: 'verified', keep: true, reasons: ['newest verified'] },
      { backupId: 'verified-older', keep: false, reasons: ['older than 30 days'] },
    ]);
  });

  it('with no verified set the newest is kept, so retention never deletes everything', () => {
    const sets = [
      candidate('a', '2026-09-01T02:07:00Z'),
      candidate('b', '2026-09-02T02:07:00Z'),
      candidate('c', '2026-09-03T02:07:00Z'),
    ];
    assert.deepEqual(applyRetention(sets, { keepWithinDays: 7, maxAgeDays: 30 }, NOW), [
      { backupId: 'c', keep: true, reasons: ['newest (none verified)'] },
      { backupId: 'b', keep: false, reasons: ['older than 30 days'] },
      { backupId: 'a', keep: false, reasons: ['older than 30 days'] },
    ]);
  });

  it('a set from the future is kept and takes no rule’s place', () => {
    const sets = [
      candidate('past-2', '2026-11-23T10:30:00Z'),
      candidate('future', '2026-11-23T13:30:00Z', { verified: true }),
      candidate('past-1', '2026-11-23T11:30:00Z'),
    ];
    assert.deepEqual(applyRetention(sets, { keepLast: 1 }, NOW), [
      { backupId: 'future', keep: true, reasons: ['newer than now'] },
      { backupId: 'past-1', keep: true, reasons: ['newest (none verified)', 'last 1'] },
      { backupId: 'past-2', keep: false, reasons: ['no rule keeps it'] },
    ]);
  });

  it('keepWithinDays keeps sets newer than the window, not one exactly at its edge', () => {
    const sets = [
      candidate('edge', new Date(NOW.getTime() - 2 * DAY).toISOString()),
      candidate('inside', new Date(NOW.getTime() - 2 * DAY + 1).toISOString(), { verified: true }),
    ];
    assert.deepEqual(summarizeRetention(applyRetention(sets, { keepWithinDays: 2 }, NOW)), { keep: ['inside'], delete: ['edge'] });
  });

  it('empty input gives no decisions', () => {
    assert.deepEqual(applyRetention([], { keepLast: 3 }, NOW), []);
    assert.deepEqual(summarizeRetention([]), { keep: [], delete: [] });
  });

  it('refuses sets it cannot date or tell apart', () => {
    assert.throws(
      () => applyRetention([candidate('a', '2026-11-23T02:07:00')], { keepLast: 1 }, NOW),
      /backup set a: completedAt "2026-11-23T02:07:00" is not a timestamp with a time zone/,
    );
    assert.throws(() => applyRetention([candidate('a', 'yesterday')], { keepLast: 1 }, NOW), /not a timestamp with a time zone/);
    assert.throws(() => applyRetention([candidate('a', '2026-13-45T02:07:00Z')], { keepLast: 1 }, NOW), /backup set a: .* is not a date/);
    assert.throws(
      () => applyRetention([candidate('a', '2026-11-23T02:07:00Z'), candidate('a', '2026-11-22T02:07:00Z')], { keepLast: 1 }, NOW),
      /backup set a is listed twice/,
    );
  });
});
