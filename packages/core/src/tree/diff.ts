import { compareKeys } from "../engine.js";
import { type DiffEntry, type Entry, sameEntry } from "../model.js";
import type { Metarange, RangeRef } from "./format.js";
import type { TreeStore } from "./tree-store.js";

class Cursor {
  i = 0;
  j = 0;
  entries: Entry[] | null = null;
  constructor(
    readonly trees: TreeStore,
    readonly ranges: RangeRef[],
  ) {}
  get done(): boolean {
    return this.i >= this.ranges.length;
  }
  get range(): RangeRef {
    return this.ranges[this.i]!;
  }
  head(): string {
    return this.entries ? this.entries[this.j]!.path : this.range.first;
  }
  entry(): Entry {
    return this.entries![this.j]!;
  }
  async load(): Promise<void> {
    this.entries = await this.trees.readRange(this.range.id);
    this.j = 0;
    if (this.entries.length === 0) this.skipRange();
  }
  advance(): void {
    if (++this.j >= this.entries!.length) this.skipRange();
  }
  skipRange(): void {
    this.entries = null;
    this.j = 0;
    this.i++;
  }
}

/**
 * Differences from tree `left` to tree `right`, in path order. Ranges that both trees share are skipped
 * without being read: the cost follows the size of the difference, not of the trees.
 */
export async function* diffTrees(
  trees: TreeStore,
  left: Metarange,
  right: Metarange,
  options: { prefix?: string } = {},
): AsyncGenerator<DiffEntry> {
  if (left.id === right.id) return;
  const prefix = options.prefix ?? "";
  const a = new Cursor(trees, left.ranges);
  const b = new Cursor(trees, right.ranges);
  const wanted = (path: string) => prefix === "" || path.startsWith(prefix);
  while (!a.done || !b.done) {
    if (!a.done && !b.done && !a.entries && !b.entries && a.range.id === b.range.id) {
      a.skipRange();
      b.skipRange();
      continue;
    }
    if (b.done) {
      if (!a.entries) await a.load();
      else {
        if (wanted(a.entry().path)) yield { path: a.entry().path, type: "removed", left: a.entry() };
        a.advance();
      }
      continue;
    }
    if (a.done) {
      if (!b.entries) await b.load();
      else {
        if (wanted(b.entry().path)) yield { path: b.entry().path, type: "added", right: b.entry() };
        b.advance();
      }
      continue;
    }
    const c = compareKeys(a.head(), b.head());
    if (!a.entries && c <= 0) {
      await a.load();
      continue;
    }
    if (!b.entries && c >= 0) {
      await b.load();
      continue;
    }
    if (c < 0) {
      const e = a.entry();
      if (wanted(e.path)) yield { path: e.path, type: "removed", left: e };
      a.advance();
    } else if (c > 0) {
      const e = b.entry();
      if (wanted(e.path)) yield { path: e.path, type: "added", right: e };
      b.advance();
    } else {
      const l = a.entry();
      const r = b.entry();
      if (!sameEntry(l, r) && wanted(l.path)) yield { path: l.path, type: "changed", left: l, right: r };
      a.advance();
      b.advance();
    }
  }
}
