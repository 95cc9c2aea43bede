import { compareKeys } from "../engine.js";
import type { Entry } from "../model.js";
import type { Metarange } from "./format.js";
import type { TreeStore } from "./tree-store.js";

const PREFETCH = 16;

/** Index of the first range whose last path is greater than `after` (or ≥ `from`). */
function firstRange(metarange: Metarange, key: string, inclusive: boolean): number {
  let lo = 0;
  let hi = metarange.ranges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareKeys(metarange.ranges[mid]!.last, key);
    if (inclusive ? c < 0 : c <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function firstEntry(entries: Entry[], key: string, inclusive: boolean): number {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareKeys(entries[mid]!.path, key);
    if (inclusive ? c < 0 : c <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export interface IterateOptions {
  /** Only paths starting with this. */
  prefix?: string;
  /** Only paths strictly after this one. */
  after?: string;
}

/** Entries of a tree in path order. */
export async function* iterateTree(
  trees: TreeStore,
  metarange: Metarange,
  options: IterateOptions = {},
): AsyncGenerator<Entry> {
  for await (const page of iterateTreePages(trees, metarange, options)) yield* page;
}

/**
 * Entries of a tree in path order, a range's worth at a time. Fetches ranges ahead of the consumer, a few
 * at a time, and parses each when the consumer reaches it, so a listing runs at the speed of parsing rather
 * than of round trips, in memory of a few ranges.
 */
export async function* iterateTreePages(
  trees: TreeStore,
  metarange: Metarange,
  options: IterateOptions = {},
): AsyncGenerator<Entry[]> {
  const prefix = options.prefix ?? "";
  let start = prefix;
  let inclusive = true;
  if (options.after !== undefined && compareKeys(options.after, prefix) >= 0) {
    start = options.after;
    inclusive = false;
  }
  const { ranges } = metarange;
  let i = firstRange(metarange, start, inclusive);
  const queue: Promise<Buffer>[] = [];
  let next = i;
  const fill = () => {
    while (queue.length < PREFETCH && next < ranges.length) {
      const r = ranges[next++]!;
      if (prefix && compareKeys(r.first, prefix) > 0 && !r.first.startsWith(prefix)) break;
      const p = trees.fetchRange(r.id);
      p.catch(() => {});
      queue.push(p);
    }
  };
  let first = true;
  for (; i < ranges.length; i++) {
    fill();
    const load = queue.shift();
    if (!load) return;
    const entries = trees.parseRange(ranges[i]!.id, await load);
    let j = first ? firstEntry(entries, start, inclusive) : 0;
    first = false;
    let k = entries.length;
    if (prefix) {
      while (j < k && !entries[j]!.path.startsWith(prefix) && compareKeys(entries[j]!.path, prefix) < 0) j++;
      // Entries with the prefix are contiguous: find where they end.
      let end = j;
      while (end < k && entries[end]!.path.startsWith(prefix)) end++;
      if (end < k) {
        if (end > j) yield entries.slice(j, end);
        return;
      }
      k = end;
    }
    if (j < k) yield j === 0 ? entries : entries.slice(j, k);
  }
}

/** The entry at `path`, or `undefined`. */
export async function lookup(
  trees: TreeStore,
  metarange: Metarange,
  path: string,
): Promise<Entry | undefined> {
  const i = firstRange(metarange, path, true);
  const range = metarange.ranges[i];
  if (!range || compareKeys(range.first, path) > 0) return undefined;
  const entries = await trees.readRange(range.id);
  const j = firstEntry(entries, path, true);
  const e = entries[j];
  return e && e.path === path ? e : undefined;
}
