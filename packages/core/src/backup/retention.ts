import { InvalidArgumentError } from "../errors.js";

/**
 * Which snapshots to keep, with restic's semantics: `last` keeps the N newest; `hourly` … `yearly` keep the
 * newest snapshot of each of the last N hours, days, ISO weeks, months or years that have one; `within` keeps
 * every snapshot younger than that many milliseconds (measured from the newest snapshot, as restic does, so
 * that an old backup location is not emptied by a prune run long after its last backup). A count of
 * `Infinity` keeps one per bucket for ever. Rules are OR-ed. Calendar buckets are in UTC.
 */
export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
  within?: number;
}

/**
 * JuiceFS's automatic-backup policy, the default of scheduled metadata backups: every dump of the last two
 * days, one a day for two weeks, one a week for two months, then one a month.
 */
export const DEFAULT_META_RETENTION: Readonly<RetentionPolicy> = Object.freeze({
  within: 2 * 24 * 3600 * 1000,
  daily: 14,
  weekly: 9,
  monthly: Number.POSITIVE_INFINITY,
});

const BUCKETS = ["hourly", "daily", "weekly", "monthly", "yearly"] as const;
type Bucket = (typeof BUCKETS)[number];

export interface Dated {
  id: string;
  time: Date;
}

export interface RetentionDecision<T extends Dated> {
  /** Kept items, newest first, each with the rules that keep it (`"last"`, `"daily"`, `"within 2d"` …). */
  keep: { item: T; reasons: string[] }[];
  /** Items no rule keeps, newest first. */
  remove: T[];
}

/** Whether the policy has at least one rule; an empty policy would remove everything and is refused. */
export function isEmptyPolicy(policy: RetentionPolicy): boolean {
  return Object.values(policy).every((v) => v === undefined || v === 0);
}

/** Applies `policy` to `items` (any order). Refuses an empty policy. */
export function applyRetention<T extends Dated>(
  items: readonly T[],
  policy: RetentionPolicy,
): RetentionDecision<T> {
  checkPolicy(policy);
  const sorted = [...items].sort((a, b) => b.time.getTime() - a.time.getTime() || (a.id < b.id ? 1 : -1));
  const reasons = new Map<T, string[]>();
  const keep = (item: T, why: string) => {
    const list = reasons.get(item);
    if (list) list.push(why);
    else reasons.set(item, [why]);
  };
  if (policy.last) for (const item of sorted.slice(0, policy.last)) keep(item, "last");
  for (const bucket of BUCKETS) {
    let left = policy[bucket] ?? 0;
    let previous: string | undefined;
    for (const item of sorted) {
      if (left <= 0) break;
      const key = bucketOf(item.time, bucket);
      if (key === previous) continue;
      previous = key;
      keep(item, bucket);
      left--;
    }
  }
  if (policy.within !== undefined && policy.within > 0 && sorted.length > 0) {
    const newest = sorted[0]!.time.getTime();
    for (const item of sorted) {
      if (newest - item.time.getTime() > policy.within) break;
      keep(item, `within ${formatDuration(policy.within)}`);
    }
  }
  return {
    keep: sorted.filter((item) => reasons.has(item)).map((item) => ({ item, reasons: reasons.get(item)! })),
    remove: sorted.filter((item) => !reasons.has(item)),
  };
}

function checkPolicy(policy: RetentionPolicy): void {
  for (const [name, value] of Object.entries(policy)) {
    if (value === undefined) continue;
    const ok =
      name === "within"
        ? Number.isFinite(value) && value >= 0
        : value === Number.POSITIVE_INFINITY || (Number.isInteger(value) && value >= 0);
    if (!ok)
      throw new InvalidArgumentError(`The retention rule ${name} must be a whole number ≥ 0, got ${value}.`);
  }
  if (isEmptyPolicy(policy)) {
    throw new InvalidArgumentError(
      "The retention policy is empty, so it would remove every snapshot; give at least one --keep-* rule.",
    );
  }
}

/** The calendar bucket of `time`: `2026-11-25T23` for hourly, `2026-W48` for weekly, … (UTC). */
function bucketOf(time: Date, bucket: Bucket): string {
  const y = time.getUTCFullYear();
  const m = String(time.getUTCMonth() + 1).padStart(2, "0");
  const d = String(time.getUTCDate()).padStart(2, "0");
  switch (bucket) {
    case "hourly":
      return `${y}-${m}-${d}T${String(time.getUTCHours()).padStart(2, "0")}`;
    case "daily":
      return `${y}-${m}-${d}`;
    case "weekly": {
      const { year, week } = isoWeek(time);
      return `${year}-W${String(week).padStart(2, "0")}`;
    }
    case "monthly":
      return `${y}-${m}`;
    case "yearly":
      return String(y);
  }
}

/** ISO 8601 week-numbering year and week of `time` (UTC). */
function isoWeek(time: Date): { year: number; week: number } {
  const date = new Date(Date.UTC(time.getUTCFullYear(), time.getUTCMonth(), time.getUTCDate()));
  const day = date.getUTCDay() || 7;
  // The Thursday of this week decides the year.
  date.setUTCDate(date.getUTCDate() + 4 - day);
  const yearStart = Date.UTC(date.getUTCFullYear(), 0, 1);
  return {
    year: date.getUTCFullYear(),
    week: Math.ceil(((date.getTime() - yearStart) / 86_400_000 + 1) / 7),
  };
}

const UNITS: Record<string, number> = {
  s: 1000,
  m: 60 * 1000,
  h: 3600 * 1000,
  d: 24 * 3600 * 1000,
  w: 7 * 24 * 3600 * 1000,
  y: 365 * 24 * 3600 * 1000,
};

/**
 * Parses a duration such as `90s`, `15m`, `12h`, `30d`, `2w`, `1y`, or a sum like `1d12h`, into milliseconds.
 * `what` names the option in the error.
 */
export function parseDuration(text: string, what = "duration"): number {
  const trimmed = text.trim();
  if (!/^(\d+[smhdwy])+$/.test(trimmed)) {
    throw new InvalidArgumentError(
      `The ${what} "${text}" is not a duration; write it like 90s, 15m, 12h, 30d, 2w, 1y or 1d12h.`,
    );
  }
  let ms = 0;
  for (const [, n, unit] of trimmed.matchAll(/(\d+)([smhdwy])/g)) ms += Number(n) * UNITS[unit!]!;
  if (ms === 0) throw new InvalidArgumentError(`The ${what} "${text}" is zero.`);
  return ms;
}

/** The shortest way to write `ms` with the units of {@link parseDuration}: `2d`, `1h30m`. */
export function formatDuration(ms: number): string {
  let left = Math.round(ms / 1000);
  if (left === 0) return "0s";
  let out = "";
  for (const [unit, size] of [
    ["d", 86_400],
    ["h", 3600],
    ["m", 60],
    ["s", 1],
  ] as const) {
    const n = Math.floor(left / size);
    if (n > 0) out += `${n}${unit}`;
    left -= n * size;
  }
  return out;
}
