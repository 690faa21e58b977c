/**
 * Which backup sets to keep and which to delete, in the manner of restic
 * `forget --keep-*` and pgBackRest/WAL-G retention. Pure and deterministic: the
 * same sets, policy and clock give the same decisions whatever the input order
 * or the host's time zone, so the plan can be computed, shown with its reasons,
 * and only then carried out.
 *
 * Safety comes before policy. Whatever the rules say, these are kept: a pinned
 * set; the newest verified set (the one restore known to work), or the newest
 * set when none is verified, so retention never deletes everything; and a set
 * dated after `now`, which means a skewed clock rather than a set to judge.
 */
import { z } from 'zod';
import { formatIssues } from './validation.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

const KEEP_RULES = ['keepLast', 'keepWithinDays', 'daily', 'weekly', 'monthly', 'yearly'] as const;

/**
 * Keep rules add up: a set stays if any rule keeps it; `maxAgeDays` then caps
 * them all. The calendar rules (daily … yearly) work on UTC and, as in restic,
 * count only periods that have a set: `daily: 7` keeps seven sets even if a
 * day was missed.
 *
 * The plan "daily full at 02:00 UTC and every 4 h, retention 30 days standard
 * and 1 year archive" is `{ keepWithinDays: 30, monthly: 12, maxAgeDays: 366 }`:
 * every set of the last 30 days, then the newest of each month up to a year,
 * and nothing older than a year (366 days, so a leap year still fits).
 */
export const retentionPolicySchema = z
  .strictObject({
    /** The N newest sets. */
    keepLast: z.int().min(1).optional(),
    /** Every set completed less than this many days ago. */
    keepWithinDays: z.number().positive().optional(),
    /** The newest set of each of the N most recent days that have one. */
    daily: z.int().min(1).optional(),
    /** The newest set of each of the N most recent ISO weeks (Monday to Sunday) that have one. */
    weekly: z.int().min(1).optional(),
    /** The newest set of each of the N most recent months that have one. */
    monthly: z.int().min(1).optional(),
    /** The newest set of each of the N most recent years that have one. */
    yearly: z.int().min(1).optional(),
    /** Hard cap: older sets go even if a rule keeps them (pinned and the protected newest set still stay). */
    maxAgeDays: z.number().positive().optional(),
  })
  .refine(
    (policy) => KEEP_RULES.some((rule) => policy[rule] !== undefined),
    'keeps nothing: set keepLast, keepWithinDays or a daily/weekly/monthly/yearly count',
  );
export type RetentionPolicy = z.infer<typeof retentionPolicySchema>;

export interface RetentionCandidate {
  backupId: string;
  /** A Date, or an ISO 8601 timestamp with a zone (as manifests record it). */
  completedAt: Date | string;
  pinned: boolean;
  verified: boolean;
}

export interface RetentionDecision {
  backupId: string;
  keep: boolean;
  /** Why: `pinned`, `last 3`, `monthly 2026-11` …, or `no rule keeps it`. */
  reasons: string[];
}

interface DatedSet {
  set: RetentionCandidate;
  at: number;
}

/** ISO 8601 week, e.g. `2026-W53`: weeks start on Monday and belong to the year of their Thursday. */
function isoWeek(at: Date): string {
  const daysSinceMonday = (at.getUTCDay() + 6) % 7;
  const thursday = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate() - daysSinceMonday + 3));
  const year = thursday.getUTCFullYear();
  const week = Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / (7 * DAY_MS)) + 1;
  return `${year}-W${String(week).padStart(2, '0')}`;
}

const CALENDAR_RULES: ReadonlyArray<readonly ['daily' | 'weekly' | 'monthly' | 'yearly', (at: Date) => string]> = [
  ['daily', (at) => at.toISOString().slice(0, 10)],
  ['weekly', isoWeek],
  ['monthly', (at) => at.toISOString().slice(0, 7)],
  ['yearly', (at) => at.toISOString().slice(0, 4)],
];

// Without a zone, JavaScript reads a timestamp in the host's local time: the same input would decide differently on another machine.
const ZONED_TIMESTAMP = /T.*(Z|[+-]\d{2}:?\d{2})$/i;

function dated(set: RetentionCandidate): DatedSet {
  const { backupId, completedAt } = set;
  if (typeof completedAt === 'string' && !ZONED_TIMESTAMP.test(completedAt)) {
    throw new Error(`backup set ${backupId}: completedAt "${completedAt}" is not a timestamp with a time zone`);
  }
  const at = new Date(completedAt).getTime();
  if (Number.isNaN(at)) throw new Error(`backup set ${backupId}: completedAt "${String(completedAt)}" is not a date`);
  return { set, at };
}

/** Newest first; equal times by backup ID, compared by code unit so no locale can reorder them. */
function newestFirst(a: DatedSet, b: DatedSet): number {
  if (a.at !== b.at) return b.at - a.at;
  return a.set.backupId < b.set.backupId ? -1 : a.set.backupId > b.set.backupId ? 1 : 0;
}

/** What each keep rule says about each set, before the age cap and the safety rules. */
function ruleReasons(sets: DatedSet[], policy: RetentionPolicy, now: number): Map<DatedSet, string[]> {
  const reasons = new Map(sets.map((set) => [set, [] as string[]]));
  const keep = (set: DatedSet, reason: string) => reasons.get(set)?.push(reason);

  if (policy.keepLast !== undefined) {
    for (const set of sets.slice(0, policy.keepLast)) keep(set, `last ${policy.keepLast}`);
  }
  if (policy.keepWithinDays !== undefined) {
    for (const set of sets) if (now - set.at < policy.keepWithinDays * DAY_MS) keep(set, `within ${policy.keepWithinDays} days`);
  }
  for (const [rule, periodOf] of CALENDAR_RULES) {
    const count = policy[rule];
    if (count === undefined) continue;
    // Sets come newest first, so the first one seen in a period is that period's newest.
    const periods = new Set<string>();
    for (const set of sets) {
      const period = periodOf(new Date(set.at));
      if (periods.has(period)) continue;
      if (periods.size === count) break;
      periods.add(period);
      keep(set, `${rule} ${period}`);
    }
  }
  return reasons;
}

/** Decides every set, newest first. Throws on an invalid policy, an undated set or a repeated backup ID. */
export function applyRetention(sets: RetentionCandidate[], policy: RetentionPolicy, now: Date): RetentionDecision[] {
  const parsed = retentionPolicySchema.safeParse(policy);
  if (!parsed.success) throw new Error(`invalid retention policy: ${formatIssues(parsed.error)}`);
  const rules = parsed.data;
  const nowMs = now.getTime();
  if (Number.isNaN(nowMs)) throw new Error('retention: now is not a valid date');

  const ids = new Set<string>();
  for (const { backupId } of sets) {
    if (ids.has(backupId)) throw new Error(`backup set ${backupId} is listed twice`);
    ids.add(backupId);
  }

  const all = sets.map(dated).sort(newestFirst);
  // Future sets are kept aside and do not take a rule's place, so a skewed clock cannot push out real sets.
  const judged = all.filter((set) => set.at <= nowMs);
  const newestVerified = judged.find((set) => set.set.verified);
  const protectedSet = newestVerified ?? judged[0];
  const protectionReason = newestVerified ? 'newest verified' : 'newest (none verified)';
  const byRule = ruleReasons(judged, rules, nowMs);

  return all.map((entry) => {
    const { backupId, pinned } = entry.set;
    const kept = (reasons: string[]): RetentionDecision => ({ backupId, keep: true, reasons });
    const deleted = (reason: string): RetentionDecision => ({ backupId, keep: false, reasons: [reason] });

    const safety = [...(pinned ? ['pinned'] : []), ...(entry === protectedSet ? [protectionReason] : [])];
    if (entry.at > nowMs) return kept([...safety, 'newer than now']);
    if (rules.maxAgeDays !== undefined && nowMs - entry.at > rules.maxAgeDays * DAY_MS) {
      return safety.length > 0 ? kept(safety) : deleted(`older than ${rules.maxAgeDays} days`);
    }
    const reasons = [...safety, ...(byRule.get(entry) ?? [])];
    return reasons.length > 0 ? kept(reasons) : deleted('no rule keeps it');
  });
}

/** The backup IDs to keep and to delete, each newest first. */
export function summarizeRetention(decisions: RetentionDecision[]): { keep: string[]; delete: string[] } {
  return {
    keep: decisions.filter((decision) => decision.keep).map((decision) => decision.backupId),
    delete: decisions.filter((decision) => !decision.keep).map((decision) => decision.backupId),
  };
}
