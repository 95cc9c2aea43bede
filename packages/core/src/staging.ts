import { decodeJson } from "./codec.js";
import { compareKeys, type MetadataEngine } from "./engine.js";
import type { Change, Entry } from "./model.js";

/** A staged value: the new entry, or a tombstone for a deletion. */
export type StagedValue = { entry: Entry } | { deleted: true; path: string };

export const stagedKey = (token: string, path: string): string => `staged/${token}/${path}`;

/** The staged changes of one staging token, in path order. */
export async function* scanStaging(
  engine: MetadataEngine,
  partition: string,
  token: string,
  options: { prefix?: string; after?: string } = {},
): AsyncGenerator<Change> {
  const base = `staged/${token}/`;
  const scan = engine.scan(partition, {
    prefix: base + (options.prefix ?? ""),
    ...(options.after !== undefined ? { after: base + options.after } : {}),
  });
  for await (const { key, value } of scan) {
    const v = decodeJson<StagedValue>(value, `${partition}/${key}`);
    const path = key.slice(base.length);
    yield "entry" in v ? { path, entry: v.entry } : { path, entry: null };
  }
}

/**
 * Merges sorted change streams into one: for each path the first source (in the order given) that has it
 * wins. This is how the staging token, the sealed tokens and the committed tree stack up in a branch's view.
 */
export async function* mergeChanges(sources: AsyncIterable<Change>[]): AsyncGenerator<Change> {
  const its = sources.map((s) => s[Symbol.asyncIterator]());
  const heads: (Change | undefined)[] = await Promise.all(its.map(async (it) => (await it.next()).value));
  for (;;) {
    const live = heads.filter((h) => h !== undefined).length;
    if (live === 1) {
      // The common case of a branch without staged changes: hand the rest of the one source straight through.
      const i = heads.findIndex((h) => h !== undefined);
      yield heads[i]!;
      for (let r = await its[i]!.next(); !r.done; r = await its[i]!.next()) yield r.value;
      return;
    }
    let min: string | undefined;
    let winner = -1;
    for (let i = 0; i < heads.length; i++) {
      const h = heads[i];
      if (h && (min === undefined || compareKeys(h.path, min) < 0)) {
        min = h.path;
        winner = i;
      }
    }
    if (winner < 0) return;
    const out = heads[winner]!;
    for (let i = 0; i < heads.length; i++) {
      const h = heads[i];
      if (h && h.path === min) {
        const r = await its[i]!.next();
        heads[i] = r.done ? undefined : r.value;
      }
    }
    yield out;
  }
}

export async function* entriesAsChanges(entries: AsyncIterable<Entry>): AsyncGenerator<Change> {
  for await (const entry of entries) yield { path: entry.path, entry };
}
