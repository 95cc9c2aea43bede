import { compareKeys, type KvEntry, type MetadataEngine, type ScanOptions, type WriteOp } from "@cairn/core";

/**
 * A reference engine in memory, to check the suite itself: `open()` returns a new connection to one shared map.
 * It yields to the event loop on every call so that concurrent callers interleave as they would over a network.
 */
export function memoryEngine(data = new Map<string, Map<string, Uint8Array>>()): {
  open: () => Promise<MetadataEngine>;
  partitionCount: () => number;
} {
  const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

  return {
    partitionCount: () => data.size,
    async open(): Promise<MetadataEngine> {
      let closed = false;
      const check = () => {
        if (closed) throw Object.assign(new Error("closed"), { code: "UNAVAILABLE" });
      };
      const put = (p: string, k: string, v: Uint8Array | null) => {
        let partition = data.get(p);
        if (v === null) {
          partition?.delete(k);
          if (partition?.size === 0) data.delete(p);
          return;
        }
        if (!partition) {
          partition = new Map();
          data.set(p, partition);
        }
        partition.set(k, v.slice());
      };
      return {
        kind: "memory",
        capabilities: { atomicBatch: true, consistency: "snapshot" },
        async snapshot() {
          await tick();
          check();
          // A copy of the maps at this moment (values are copied on write, so sharing them is safe).
          const copy = new Map([...data].map(([p, m]) => [p, new Map(m)]));
          const view = await memoryEngine(copy).open();
          return {
            get: (p, k) => view.get(p, k),
            scan: (p, o) => view.scan(p, o),
            partitions: () => view.partitions(),
            release: () => view.close(),
          };
        },
        async get(p, k) {
          await tick();
          check();
          return data.get(p)?.get(k)?.slice();
        },
        async set(p, k, v) {
          await tick();
          check();
          put(p, k, v);
        },
        async setIf(p, k, v, expected) {
          await tick();
          check();
          const current = data.get(p)?.get(k);
          const ok =
            expected === null
              ? current === undefined
              : current !== undefined && Buffer.compare(current, expected) === 0;
          if (ok) put(p, k, v);
          return ok;
        },
        async delete(p, k) {
          await tick();
          check();
          put(p, k, null);
        },
        async *scan(p, options: ScanOptions = {}): AsyncGenerator<KvEntry> {
          const { prefix = "", limit = Number.POSITIVE_INFINITY } = options;
          let cursor = options.after;
          let remaining = limit;
          while (remaining > 0) {
            await tick();
            check();
            const page = [...(data.get(p)?.keys() ?? [])]
              .filter(
                (k) =>
                  k.startsWith(prefix) &&
                  (cursor === undefined || compareKeys(k, cursor) > 0) &&
                  (options.from === undefined || compareKeys(k, options.from) >= 0) &&
                  (options.before === undefined || compareKeys(k, options.before) < 0),
              )
              .sort(compareKeys)
              .slice(0, Math.min(100, remaining));
            if (page.length === 0) return;
            for (const key of page) {
              const value = data.get(p)?.get(key);
              if (value) yield { key, value: value.slice() };
            }
            remaining -= page.length;
            cursor = page[page.length - 1];
          }
        },
        async writeBatch(ops: readonly WriteOp[]) {
          await tick();
          check();
          for (const op of ops) put(op.partition, op.key, op.value);
        },
        async *partitions() {
          await tick();
          check();
          yield* [...data.keys()].sort(compareKeys);
        },
        async close() {
          closed = true;
        },
      };
    },
  };
}
