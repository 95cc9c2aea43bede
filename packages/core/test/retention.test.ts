import { describe, expect, it } from "vitest";
import {
  applyRetention,
  type Dated,
  DEFAULT_META_RETENTION,
  formatDuration,
  hasCode,
  isEmptyPolicy,
  parseDuration,
  type RetentionPolicy,
} from "../src/index.js";

// restic's `forget` rules, on hand-picked calendars. The property tests (union of rules, counts) run with
// fast-check in packages/engine-sqlite/test/backup-maintenance.test.ts.

const HOUR = 3600_000;
const DAY = 24 * HOUR;

const item = (iso: string): Dated => ({ id: iso, time: new Date(iso) });
const items = (...isos: string[]) => isos.map(item);

/** The kept ids with their reasons, newest first, as `applyRetention` returns them. */
const kept = (list: Dated[], policy: RetentionPolicy) =>
  applyRetention(list, policy).keep.map((k) => [k.item.id, k.reasons.join("+")]);

const invalid = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    expect(hasCode(e, "INVALID_ARGUMENT"), String(e)).toBe(true);
    return (e as Error).message;
  }
  return expect.fail("expected INVALID_ARGUMENT");
};

describe("applyRetention", () => {
  const week = items(
    "2026-03-01T08:00:00Z",
    "2026-03-01T20:00:00Z",
    "2026-03-02T09:00:00Z",
    "2026-03-04T09:00:00Z",
    "2026-03-04T09:30:00Z",
    "2026-03-07T23:59:59Z",
  );

  it("keeps the N newest with last, whatever order they come in", () => {
    expect(kept([...week].reverse(), { last: 2 })).toEqual([
      ["2026-03-07T23:59:59Z", "last"],
      ["2026-03-04T09:30:00Z", "last"],
    ]);
    expect(applyRetention(week, { last: 2 }).remove.map((i) => i.id)).toEqual([
      "2026-03-04T09:00:00Z",
      "2026-03-02T09:00:00Z",
      "2026-03-01T20:00:00Z",
      "2026-03-01T08:00:00Z",
    ]);
    expect(kept(week, { last: 99 })).toHaveLength(week.length);
  });

  it("keeps the newest of each of the last N days that have a snapshot, skipping empty days", () => {
    expect(kept(week, { daily: 3 })).toEqual([
      ["2026-03-07T23:59:59Z", "daily"],
      ["2026-03-04T09:30:00Z", "daily"],
      ["2026-03-02T09:00:00Z", "daily"],
    ]);
  });

  it("counts hours, months and years as calendar buckets in UTC", () => {
    expect(kept(week, { hourly: 2 }).map(([id]) => id)).toEqual([
      "2026-03-07T23:59:59Z",
      "2026-03-04T09:30:00Z",
    ]);
    const months = items(
      "2025-11-30T23:00:00Z",
      "2025-12-01T00:00:00Z",
      "2025-12-31T23:59:59Z",
      "2026-01-01T00:00:00Z",
    );
    expect(kept(months, { monthly: 3 }).map(([id]) => id)).toEqual([
      "2026-01-01T00:00:00Z",
      "2025-12-31T23:59:59Z",
      "2025-11-30T23:00:00Z",
    ]);
    expect(kept(months, { yearly: 5 }).map(([id]) => id)).toEqual([
      "2026-01-01T00:00:00Z",
      "2025-12-31T23:59:59Z",
    ]);
  });

  it("uses ISO weeks: Monday to Sunday, the week of a year's first Thursday is week 1", () => {
    // 2026-01-01 is a Thursday: 2025-12-29 (Mon) … 2026-01-04 (Sun) is 2026-W01.
    const list = items(
      "2025-12-28T12:00:00Z", // Sunday, 2025-W52
      "2025-12-29T12:00:00Z", // Monday, 2026-W01
      "2026-01-04T12:00:00Z", // Sunday, 2026-W01
      "2026-01-05T12:00:00Z", // Monday, 2026-W02
    );
    expect(kept(list, { weekly: 10 }).map(([id]) => id)).toEqual([
      "2026-01-05T12:00:00Z",
      "2026-01-04T12:00:00Z",
      "2025-12-28T12:00:00Z",
    ]);
  });

  it("keeps everything younger than within, counted back from the newest snapshot, not from now", () => {
    const list = items(
      "2020-01-10T00:00:00Z",
      "2020-01-09T00:00:00Z",
      "2020-01-08T00:00:00Z",
      "2020-01-07T12:00:00Z",
    );
    expect(kept(list, { within: 2 * DAY })).toEqual([
      ["2020-01-10T00:00:00Z", "within 2d"],
      ["2020-01-09T00:00:00Z", "within 2d"],
      ["2020-01-08T00:00:00Z", "within 2d"],
    ]);
    expect(kept(list, { within: 36 * HOUR }).map(([, why]) => why)).toEqual(["within 1d12h", "within 1d12h"]);
  });

  it("ORs the rules and gives every reason that keeps a snapshot", () => {
    expect(kept(week, { last: 1, daily: 2, weekly: 1 })).toEqual([
      ["2026-03-07T23:59:59Z", "last+daily+weekly"],
      ["2026-03-04T09:30:00Z", "daily"],
    ]);
  });

  it("keeps one per bucket for ever with an unlimited count", () => {
    const years = Array.from({ length: 30 }, (_, i) => item(`${1990 + i}-06-01T00:00:00Z`));
    expect(kept(years, { yearly: Number.POSITIVE_INFINITY })).toHaveLength(30);
    expect(kept(years, { last: Number.POSITIVE_INFINITY })).toHaveLength(30);
  });

  it("breaks ties between snapshots of the same time by id, the same way every run", () => {
    const same = [
      { id: "b", time: new Date("2026-01-01T00:00:00Z") },
      { id: "a", time: new Date("2026-01-01T00:00:00Z") },
    ];
    expect(kept(same, { last: 1 })).toEqual([["b", "last"]]);
    expect(kept([...same].reverse(), { last: 1 })).toEqual([["b", "last"]]);
  });

  it("keeps nothing of nothing", () => {
    expect(applyRetention([], { last: 3 })).toEqual({ keep: [], remove: [] });
  });

  it("refuses an empty policy, which would remove every snapshot", () => {
    for (const policy of [{}, { last: 0 }, { daily: 0, within: undefined }] as RetentionPolicy[]) {
      expect(isEmptyPolicy(policy)).toBe(true);
      expect(invalid(() => applyRetention(week, policy))).toMatch(/empty.*at least one --keep-\* rule/);
    }
    expect(isEmptyPolicy({ last: 0, monthly: 1 })).toBe(false);
  });

  it("refuses counts that are not whole numbers ≥ 0, naming the rule", () => {
    expect(invalid(() => applyRetention(week, { last: -1 }))).toContain("last");
    expect(invalid(() => applyRetention(week, { daily: 1.5 }))).toContain("daily");
    expect(invalid(() => applyRetention(week, { weekly: Number.NaN }))).toContain("weekly");
    expect(invalid(() => applyRetention(week, { within: Number.POSITIVE_INFINITY }))).toContain("within");
  });

  it("has JuiceFS's default for scheduled metadata dumps", () => {
    expect(DEFAULT_META_RETENTION).toEqual({
      within: 2 * DAY,
      daily: 14,
      weekly: 9,
      monthly: Number.POSITIVE_INFINITY,
    });
    expect(Object.isFrozen(DEFAULT_META_RETENTION)).toBe(true);
  });
});

describe("parseDuration and formatDuration", () => {
  it("read and write restic-like durations", () => {
    expect(parseDuration("90s")).toBe(90_000);
    expect(parseDuration("15m")).toBe(15 * 60_000);
    expect(parseDuration("30d")).toBe(30 * DAY);
    expect(parseDuration("2w")).toBe(14 * DAY);
    expect(parseDuration("1y")).toBe(365 * DAY);
    expect(parseDuration(" 1d12h ")).toBe(36 * HOUR);
    expect(formatDuration(36 * HOUR)).toBe("1d12h");
    expect(formatDuration(90_000)).toBe("1m30s");
    expect(formatDuration(0)).toBe("0s");
    for (const ms of [1000, 61_000, DAY + 1000, 400 * DAY])
      expect(parseDuration(formatDuration(ms))).toBe(ms);
  });

  it("refuse what is not a duration, naming the option", () => {
    for (const bad of ["3 days", "1.5d", "d", "-1d", "10", ""]) {
      const message = invalid(() => parseDuration(bad, "--keep-within"));
      expect(message).toContain("--keep-within");
      expect(message).toContain(`"${bad}"`);
    }
    expect(invalid(() => parseDuration("0d", "--keep-within"))).toContain("zero");
  });
});
