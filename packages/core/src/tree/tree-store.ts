import { sha256Hex } from "../codec.js";
import { CorruptError, hasCode } from "../errors.js";
import type { Entry } from "../model.js";
import type { ObjectStore } from "../store.js";
import {
  type Metarange,
  metarangeKey,
  parseMetarange,
  parseRange,
  type RangeRef,
  rangeKey,
  serializeMetarange,
  serializeRange,
} from "./format.js";

export interface TreeStoreOptions {
  /**
   * Bytes of range objects kept parsed in memory. Trees are immutable, so the cache never goes stale.
   * @default 16 MiB
   */
  cacheBytes?: number;
}

/** Reads and writes the content-addressed range and metarange objects of one storage namespace. */
export class TreeStore {
  readonly store: ObjectStore;
  readonly #cacheBytes: number;
  // Insertion order of a Map is its LRU order: a hit is deleted and re-inserted.
  readonly #ranges = new Map<string, { entries: Entry[]; bytes: number }>();
  #cached = 0;
  readonly #metaranges = new Map<string, Metarange>();
  readonly #inflight = new Map<string, Promise<Entry[]>>();

  constructor(store: ObjectStore, options: TreeStoreOptions = {}) {
    this.store = store;
    this.#cacheBytes = options.cacheBytes ?? 16 * 1024 * 1024;
  }

  /** The entries of a range, from the cache or the store. */
  async readRange(id: string): Promise<Entry[]> {
    const hit = this.#ranges.get(id);
    if (hit) {
      this.#ranges.delete(id);
      this.#ranges.set(id, hit);
      return hit.entries;
    }
    const pending = this.#inflight.get(id);
    if (pending) return pending;
    const load = (async () => {
      const bytes = await this.fetchRange(id);
      const entries = this.parseRange(id, bytes);
      this.#remember(id, entries, bytes.length);
      return entries;
    })();
    this.#inflight.set(id, load);
    try {
      return await load;
    } finally {
      this.#inflight.delete(id);
    }
  }

  /**
   * The verified bytes of a range, bypassing the cache: full scans fetch ahead with this and parse each range
   * only when they reach it, so parsed entries live briefly and the cache is not churned.
   */
  async fetchRange(id: string): Promise<Buffer> {
    return this.#readVerified(rangeKey(id), id, "range");
  }

  parseRange(id: string, bytes: Buffer): Entry[] {
    return parseRange(bytes, this.#where(rangeKey(id)));
  }

  async readMetarange(id: string): Promise<Metarange> {
    const hit = this.#metaranges.get(id);
    if (hit) return hit;
    const key = metarangeKey(id);
    const bytes = await this.#readVerified(key, id, "metarange");
    const metarange = { id, ranges: parseMetarange(bytes.toString("utf8"), this.#where(key)) };
    if (this.#metaranges.size >= 8) this.#metaranges.delete(this.#metaranges.keys().next().value!);
    this.#metaranges.set(id, metarange);
    return metarange;
  }

  /** Writes a range (unless `known` says it exists already) and returns its reference. */
  async writeRange(entries: Entry[], known?: ReadonlySet<string>): Promise<RangeRef & { written: boolean }> {
    const bytes = serializeRange(entries);
    const id = sha256Hex(bytes);
    const ref = {
      id,
      first: entries[0]!.path,
      last: entries.at(-1)!.path,
      count: entries.length,
      bytes: bytes.length,
    };
    if (known?.has(id)) return { ...ref, written: false };
    await this.#putImmutable(rangeKey(id), bytes);
    this.#remember(id, entries, bytes.length);
    return { ...ref, written: true };
  }

  async writeMetarange(ranges: RangeRef[]): Promise<Metarange> {
    const bytes = Buffer.from(serializeMetarange(ranges), "utf8");
    const id = sha256Hex(bytes);
    await this.#putImmutable(metarangeKey(id), bytes);
    const metarange = { id, ranges };
    this.#metaranges.set(id, metarange);
    return metarange;
  }

  async #putImmutable(key: string, bytes: Buffer): Promise<void> {
    try {
      await this.store.put(key, bytes, {
        createOnly: true,
        contentType: "application/json",
        size: bytes.length,
      });
    } catch (e) {
      // Content-addressed: an existing object with this name has these very bytes.
      if (!hasCode(e, "ALREADY_EXISTS")) throw e;
    }
  }

  async #readVerified(key: string, id: string, what: string): Promise<Buffer> {
    let bytes: Buffer;
    try {
      const reader = await this.store.get(key);
      const chunks: Buffer[] = [];
      for await (const chunk of reader.body) chunks.push(chunk as Buffer);
      bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    } catch (e) {
      if (hasCode(e, "NOT_FOUND")) {
        throw new CorruptError(`The ${what} ${this.#where(key)} is missing from the storage namespace.`, {
          cause: e,
        });
      }
      throw e;
    }
    if (sha256Hex(bytes) !== id) {
      throw new CorruptError(
        `The ${what} ${this.#where(key)} is corrupted: its content does not match its SHA-256 name.`,
      );
    }
    return bytes;
  }

  #where(key: string): string {
    return `${this.store.url.replace(/\/$/, "")}/${key}`;
  }

  #remember(id: string, entries: Entry[], bytes: number): void {
    if (bytes > this.#cacheBytes / 4 || this.#ranges.has(id)) return;
    this.#ranges.set(id, { entries, bytes });
    this.#cached += bytes;
    while (this.#cached > this.#cacheBytes) {
      const [oldest, value] = this.#ranges.entries().next().value!;
      this.#ranges.delete(oldest);
      this.#cached -= value.bytes;
    }
  }
}
