import { compareKeys } from "../engine.js";
import type { Entry } from "../model.js";
import type { Metarange } from "./format.js";
import type { TreeStore } from "./tree-store.js";

const PREFETCH = 6;

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

/**
 * Entries of a tree in path order. Reads ranges ahead of the consumer, a few at a time, so a listing runs at
 * the speed of parsing rather than of round trips.
 */
export async function* iterateTree(
  trees: TreeStore,
  metarange: Metarange,
  options: IterateOptions = {},
): AsyncGenerator<Entry> {
  const prefix = options.prefix ?? "";
  let start = prefix;
  let inclusive = true;
  if (options.after !== undefined && compareKeys(options.after, prefix) >= 0) {
    start = options.after;
    inclusive = false;
  }
  const { ranges } = metarange;
  let i = firstRange(metarange, start, inclusive);
  const queue: Promise<Entry[]>[] = [];
  let next = i;
  const fill = () => {
    while (queue.length < PREFETCH && next < ranges.length) {
      const r = ranges[next++]!;
      if (prefix && compareKeys(r.first, prefix) > 0 && !r.first.startsWith(prefix)) break;
      const p = trees.readRange(r.id);
      p.catch(() => {});
      queue.push(p);
    }
  };
  let first = true;
  for (; i < ranges.length; i++) {
    fill();
    const load = queue.shift();
    if (!load) return;
    const entries = await load;
    let j = first ? firstEntry(entries, start, inclusive) : 0;
    first = false;
    for (; j < entries.length; j++) {
      const e = entries[j]!;
      if (prefix && !e.path.startsWith(prefix)) {
        if (compareKeys(e.path, prefix) > 0) return;
        continue;
      }
      yield e;
    }
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
