/**
 * The metadata engine contract: a small ordered key-value store with partitions, as lakeFS's `kv.Store`.
 *
 * All of cairn's semantics (repositories, commits, merges, leases) are built in `core` on these methods, so
 * every engine behaves the same. Implementations must pass `describeEngine` of `@cairn/testkit`.
 *
 * Keys are non-empty strings of valid Unicode (no lone surrogates), at most 4096 bytes of UTF-8. Ordering is
 * always the byte order of the keys' UTF-8 encoding (which is *not* JavaScript's `<` on strings; use
 * {@link compareKeys}). Partitions are non-empty strings of at most 255 bytes of UTF-8. Values are opaque
 * bytes (possibly empty) of at most 16 MiB; `core` owns their encoding.
 */
export interface MetadataEngine {
  /** Short name of the engine kind, e.g. `"sqlite"`. */
  readonly kind: string;

  /** Value of `key`, or `undefined` when absent. */
  get(partition: string, key: string): Promise<Uint8Array | undefined>;

  /** Writes `value` whether or not `key` exists. */
  set(partition: string, key: string, value: Uint8Array): Promise<void>;

  /**
   * Compare-and-swap: writes `value` only if the current value equals `expected` byte for byte, or, when
   * `expected` is `null`, only if `key` is absent. Returns whether it wrote. Atomic with respect to every
   * other call on every connection to the same engine.
   */
  setIf(partition: string, key: string, value: Uint8Array, expected: Uint8Array | null): Promise<boolean>;

  /** Removes `key`; removing an absent key is not an error. */
  delete(partition: string, key: string): Promise<void>;

  /**
   * Entries of `partition` in byte order of key, restricted to keys starting with `prefix`, starting strictly
   * after `after`, at most `limit` of them. Pages internally: memory does not grow with the partition. Writes
   * made during a scan may or may not be seen, but every key present for the whole scan is yielded exactly
   * once, including when the caller deletes keys while iterating.
   */
  scan(partition: string, options?: ScanOptions): AsyncIterable<KvEntry>;

  /**
   * Optional: the entries of {@link scan}, a page at a time — for callers that go through many entries (a dump,
   * a listing), one step per page instead of one per entry. Pages are non-empty, and together hold exactly
   * what `scan` yields. Callers use {@link scanPages}, which falls back to grouping `scan`.
   */
  scanPages?(partition: string, options?: ScanOptions): AsyncIterable<readonly KvEntry[]>;

  /**
   * Applies `ops` in order. The fast path for bulk loads: engines batch them (one transaction, pipeline,
   * multi-row insert). Not atomic unless {@link EngineCapabilities.atomicBatch} says so; every op is
   * idempotent, so a failed batch can be retried whole.
   */
  writeBatch(ops: readonly WriteOp[]): Promise<void>;

  /** Names of the partitions that hold at least one key, in byte order. */
  partitions(): AsyncIterable<string>;

  /** What this engine guarantees beyond the contract. */
  readonly capabilities: EngineCapabilities;

  /**
   * Optional: a read-only view of the whole engine as it was at one point in time, for consistent dumps;
   * writes made after it was taken (on any connection) are not seen through it. Present exactly when
   * `capabilities.consistency` is `"snapshot"`. Release it promptly: it may hold back the engine's own
   * housekeeping (SQLite's WAL checkpoints, InnoDB's purge).
   */
  snapshot?(): Promise<EngineSnapshot>;

  /** Releases connections and files. Idempotent. Any later call rejects. */
  close(): Promise<void>;
}

/** A point-in-time, read-only view of an engine; see {@link MetadataEngine.snapshot}. */
export interface EngineSnapshot {
  get(partition: string, key: string): Promise<Uint8Array | undefined>;
  scan(partition: string, options?: ScanOptions): AsyncIterable<KvEntry>;
  scanPages?(partition: string, options?: ScanOptions): AsyncIterable<readonly KvEntry[]>;
  partitions(): AsyncIterable<string>;
  /** Ends the view. Idempotent; any later call rejects. */
  release(): Promise<void>;
}

export interface ScanOptions {
  /** Only keys that start with this string. */
  prefix?: string;
  /** Only keys strictly greater (in byte order) than this key. */
  after?: string;
  /** Only keys greater than or equal to (in byte order) this key. */
  from?: string;
  /** Only keys strictly less (in byte order) than this key. */
  before?: string;
  /** At most this many entries. */
  limit?: number;
}

export interface KvEntry {
  key: string;
  value: Uint8Array;
}

/**
 * An entry whose value an engine read as text — exactly, its bytes being valid UTF-8 — for callers that want the
 * text (a dump writes cairn's JSON records as they are): {@link entryText} reads it without encoding it to bytes
 * and decoding it again. `value` encodes it on first use.
 */
export class TextEntry implements KvEntry {
  #value: Uint8Array | undefined;
  constructor(
    readonly key: string,
    readonly text: string,
  ) {}
  get value(): Uint8Array {
    this.#value ??= Buffer.from(this.text, "utf8");
    return this.#value;
  }
}

/** The value of `entry` decoded as UTF-8 (as the engine read it, when it read it as text). */
export function entryText(entry: KvEntry): string {
  if (entry instanceof TextEntry) return entry.text;
  const { value } = entry;
  return (
    Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  ).toString("utf8");
}

/** `value: null` deletes the key. */
export interface WriteOp {
  partition: string;
  key: string;
  value: Uint8Array | null;
}

export interface EngineCapabilities {
  /** `writeBatch` applies all of its ops or none. */
  atomicBatch: boolean;
  /** How a dump of this engine is consistent: `"snapshot"` (one point in time) or `"none"` (key by key). */
  consistency: "snapshot" | "none";
}

/** Compares two keys in the byte order of their UTF-8 encoding, the order every engine must scan in. */
export function compareKeys(a: string, b: string): number {
  // UTF-16 order equals UTF-8 byte order except where a surrogate pair (U+10000..) meets U+E000..U+FFFF.
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      const xs = x <= 0xdfff;
      const ys = y <= 0xdfff;
      if (xs !== ys) return xs ? 1 : -1;
    }
    return x - y;
  }
  return a.length - b.length;
}

/** How many entries {@link scanPages} groups into one page when the engine does not page itself. */
const FALLBACK_PAGE = 1000;

/**
 * The entries of `source.scan(partition, options)` in pages: the engine's own pages when it has
 * {@link MetadataEngine.scanPages}, otherwise `scan`'s entries grouped a thousand at a time.
 */
export async function* scanPages(
  source: Pick<MetadataEngine, "scan" | "scanPages">,
  partition: string,
  options?: ScanOptions,
): AsyncGenerator<readonly KvEntry[]> {
  if (source.scanPages) {
    yield* source.scanPages(partition, options);
    return;
  }
  let page: KvEntry[] = [];
  for await (const entry of source.scan(partition, options)) {
    page.push(entry);
    if (page.length >= FALLBACK_PAGE) {
      yield page;
      page = [];
    }
  }
  if (page.length > 0) yield page;
}

/** Deletes every key of `partition` that starts with `prefix`, a thousand per batch. */
export async function clearKeys(engine: MetadataEngine, partition: string, prefix = ""): Promise<void> {
  for (;;) {
    const ops: WriteOp[] = [];
    for await (const { key } of engine.scan(partition, { prefix, limit: 1000 }))
      ops.push({ partition, key, value: null });
    if (ops.length === 0) return;
    await engine.writeBatch(ops);
  }
}
