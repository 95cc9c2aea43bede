import { compareKeys } from "../engine.js";
import { InvalidArgumentError } from "../errors.js";
import { type Change, type Entry, sameEntry } from "../model.js";
import { isBoundary, MAX_RANGE_BYTES, MAX_RANGE_ENTRIES, MIN_RANGE_ENTRIES } from "./chunking.js";
import type { Metarange, RangeRef } from "./format.js";
import type { TreeStore } from "./tree-store.js";

export interface ApplyResult {
  metarange: Metarange;
  /** Ranges written anew by this call. */
  rangesWritten: number;
  /** Ranges of the base tree kept without reading them. */
  rangesReused: number;
}

const WRITE_CONCURRENCY = 8;

/**
 * Builds the tree `base` + `changes` and writes what is new of it. `changes` must be sorted by path in byte
 * order, one per path. Ranges of `base` that no change touches are reused without being read, so the cost
 * follows the size of the change, not of the tree. Memory holds at most a few ranges.
 */
export async function applyChanges(
  trees: TreeStore,
  base: Metarange | null,
  changes: AsyncIterable<Change>,
): Promise<ApplyResult> {
  const baseRanges = base?.ranges ?? [];
  const known = new Set(baseRanges.map((r) => r.id));
  const out: Array<RangeRef | Promise<RangeRef & { written: boolean }>> = [];
  const inflight: Promise<unknown>[] = [];
  let rangesReused = 0;
  let pending: Entry[] = [];
  let pendingBytes = 0;

  const flush = async () => {
    if (pending.length === 0) return;
    const entries = pending;
    pending = [];
    pendingBytes = 0;
    const write = trees.writeRange(entries, known);
    // Rejections surface through Promise.all below; this keeps them from counting as unhandled meanwhile.
    write.catch(() => {});
    out.push(write);
    inflight.push(write);
    if (inflight.length >= WRITE_CONCURRENCY) await inflight.shift();
  };
  const push = async (entry: Entry) => {
    pending.push(entry);
    pendingBytes += entry.path.length + entry.address.length + 160;
    if (
      (pending.length >= MIN_RANGE_ENTRIES && isBoundary(entry.path)) ||
      pending.length >= MAX_RANGE_ENTRIES ||
      pendingBytes >= MAX_RANGE_BYTES
    ) {
      await flush();
    }
  };

  const it = changes[Symbol.asyncIterator]();
  let change: Change | undefined;
  let lastPath: string | undefined;
  const next = async () => {
    const r = await it.next();
    change = r.done ? undefined : r.value;
    if (change) {
      if (lastPath !== undefined && compareKeys(lastPath, change.path) >= 0) {
        throw new InvalidArgumentError(
          `Changes are not sorted by path: ${JSON.stringify(change.path)} comes after ${JSON.stringify(lastPath)}.`,
        );
      }
      lastPath = change.path;
    }
  };
  await next();

  for (const range of baseRanges) {
    while (change && compareKeys(change.path, range.first) < 0) {
      if (change.entry) await push(change.entry);
      await next();
    }
    if (pending.length === 0 && (!change || compareKeys(change.path, range.last) > 0)) {
      out.push(range);
      rangesReused++;
      continue;
    }
    for (const entry of await trees.readRange(range.id)) {
      while (change && compareKeys(change.path, entry.path) < 0) {
        if (change.entry) await push(change.entry);
        await next();
      }
      if (change && change.path === entry.path) {
        // Re-staging an object unchanged keeps the committed entry, so the range stays byte-identical.
        if (change.entry) await push(sameEntry(change.entry, entry) ? entry : change.entry);
        await next();
      } else {
        await push(entry);
      }
    }
  }
  while (change) {
    if (change.entry) await push(change.entry);
    await next();
  }
  await flush();

  const ranges: RangeRef[] = [];
  let rangesWritten = 0;
  for (const r of await Promise.all(out)) {
    if ("written" in r) {
      if (r.written) rangesWritten++;
      ranges.push({ id: r.id, first: r.first, last: r.last, count: r.count, bytes: r.bytes });
    } else {
      ranges.push(r);
    }
  }
  return { metarange: await trees.writeMetarange(ranges), rangesWritten, rangesReused };
}
