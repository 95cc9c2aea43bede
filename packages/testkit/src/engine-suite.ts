import { randomBytes } from "node:crypto";
import { compareKeys, type KvEntry, type MetadataEngine, type ScanOptions, type WriteOp } from "@cairn/core";
import { describe, expect, it, onTestFinished } from "vitest";
import { expectBytes, fromUtf8, utf8 } from "./bytes.js";
import { collect, randomName } from "./helpers.js";

/** How {@link describeEngine} reaches the engine under test. */
export interface EngineSuiteOptions {
  /**
   * Opens a new connection to the same database every time it is called, through the engine's real URL path
   * (e.g. `factory.open(url)`). The suite opens several at once to test compare-and-swap under contention,
   * closes every connection it opened, and uses fresh random partitions in every test, so runs can repeat
   * and overlap on one database.
   */
  open: () => Promise<MetadataEngine>;
  /**
   * Time limit of each test, in milliseconds.
   * @default 60000
   */
  timeout?: number;
}

/** Keys whose UTF-8 byte order differs from JavaScript's string order, plus control and combining characters. */
const UNICODE_KEYS: readonly string[] = [
  "a",
  "A",
  "a b",
  "a/b",
  "a\u0000b",
  "a\u0001",
  "a\u007f",
  "a\u0080",
  "é",
  "e\u0301",
  "ß",
  "\u00ff",
  "\u0100",
  "\u07ff",
  "\u0800",
  "中文",
  "日本語",
  "\ud7ff",
  "\ue000",
  "\uf8ff",
  "\ufb01",
  "\ufffd",
  "\uffff",
  "😀",
  "𝄞",
  "\u{10000}",
  "\u{10ffff}",
  "a😀",
  "a\uffff",
  "a\ufffd",
];

/** Keys for prefix and `after` tests: prefixes whose naive upper bound (`prefix + "\uffff"`) misses astral keys. */
const RANGE_KEYS: readonly string[] = [
  "a",
  "a\u0000",
  "a/",
  "a/b",
  "ab",
  "ab\u0000",
  "abc",
  "abd",
  "ab\uffff",
  "ab😀",
  "ab😀z",
  "ab\ufffd",
  "ac",
  "b",
  "é",
  "éa",
  "😀",
  "😀a",
  "\uffff",
  "\uffffz",
];

const RANGE_PREFIXES: readonly string[] = [
  "",
  "a",
  "a/",
  "ab",
  "ab\uffff",
  "ab😀",
  "é",
  "😀",
  "\uffff",
  "x",
  "abcd",
];
const RANGE_AFTERS: readonly string[] = [
  "",
  "a",
  "a\u0000",
  "aa",
  "ab",
  "ab\uffff",
  "ab😀",
  "ac",
  "zz",
  "😀",
  "\uffff",
];

const sorted = (keys: Iterable<string>): string[] => [...keys].sort(compareKeys);

function expectAscending(keys: readonly string[]): void {
  for (let i = 1; i < keys.length; i++) {
    if (compareKeys(keys[i - 1]!, keys[i]!) >= 0) {
      expect.fail(
        `keys out of byte order or repeated at ${i}: ${JSON.stringify(keys[i - 1])}, ${JSON.stringify(keys[i])}`,
      );
    }
  }
}

const keysOf = (entries: readonly KvEntry[]): string[] => entries.map((e) => e.key);

async function setAll(
  engine: MetadataEngine,
  partition: string,
  keys: readonly string[],
  chunk = 1000,
): Promise<void> {
  for (let i = 0; i < keys.length; i += chunk) {
    await engine.writeBatch(
      keys.slice(i, i + chunk).map((key) => ({ partition, key, value: utf8(`v:${key}`) })),
    );
  }
}

async function increment(engine: MetadataEngine, partition: string, key: string): Promise<number> {
  for (let attempt = 1; attempt <= 100_000; attempt++) {
    const current = await engine.get(partition, key);
    const n = current === undefined ? 0 : Number(fromUtf8(current));
    if (await engine.setIf(partition, key, utf8(String(n + 1)), current ?? null)) return attempt;
  }
  throw new Error(`no progress incrementing ${key} after 100,000 attempts`);
}

/**
 * The conformance suite of the {@link MetadataEngine} contract. Every engine's test file calls it with a way to
 * open a connection through the engine's URL; an engine is done when it passes the whole suite.
 *
 * @example
 * ```ts
 * describeEngine("sqlite", { open: () => factory.open(`sqlite://${file}`) });
 * ```
 */
export function describeEngine(name: string, options: EngineSuiteOptions): void {
  const timeout = options.timeout ?? 60_000;

  /** A new connection, closed when the current test finishes. */
  async function connect(): Promise<MetadataEngine> {
    const engine = await options.open();
    onTestFinished(async () => {
      await engine.close();
    });
    return engine;
  }

  /** Registers `name` to be emptied when the current test finishes, so runs leave no data behind. */
  function own(name: string): string {
    onTestFinished(async () => {
      // Best effort on a fresh connection: a cleanup failure must not hide the test's own result.
      try {
        const engine = await options.open();
        try {
          for (let round = 0; round < 100; round++) {
            const keys = keysOf(await collect(engine.scan(name, { limit: 1000 })));
            if (keys.length === 0) break;
            await engine.writeBatch(keys.map((key) => ({ partition: name, key, value: null })));
          }
        } finally {
          await engine.close();
        }
      } catch {
        // Left for the next run to ignore: every test uses new random partitions.
      }
    });
    return name;
  }

  /** A new random partition, emptied after the test. */
  const partition = (label = "p") => own(randomName(`cairn-${label}`));

  describe(`MetadataEngine conformance: ${name}`, () => {
    it("names its kind and capabilities", { timeout }, async () => {
      const engine = await connect();
      expect(typeof engine.kind).toBe("string");
      expect(engine.kind.length).toBeGreaterThan(0);
      expect(typeof engine.capabilities.atomicBatch).toBe("boolean");
      expect(["snapshot", "none"]).toContain(engine.capabilities.consistency);
    });

    describe("get and set", () => {
      it("returns undefined for an absent key, also in a partition that never existed", {
        timeout,
      }, async () => {
        const engine = await connect();
        const p = partition();
        expect(await engine.get(p, "absent")).toBeUndefined();
        await engine.set(p, "present", utf8("x"));
        expect(await engine.get(p, "absent")).toBeUndefined();
        expect(await engine.get(partition("never"), "present")).toBeUndefined();
      });

      it("returns the value last set", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        await engine.set(p, "k", utf8("one"));
        expectBytes(await engine.get(p, "k"), utf8("one"));
        await engine.set(p, "k", utf8("two, longer"));
        expectBytes(await engine.get(p, "k"), utf8("two, longer"));
        await engine.set(p, "k", utf8("3"));
        expectBytes(await engine.get(p, "k"), utf8("3"));
      });

      it("keeps an empty value as present and empty", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        await engine.set(p, "empty", new Uint8Array(0));
        expectBytes(await engine.get(p, "empty"), new Uint8Array(0));
        const entries = await collect(engine.scan(p));
        expect(keysOf(entries)).toEqual(["empty"]);
        expectBytes(entries[0]!.value, new Uint8Array(0));
      });

      it("keeps every byte value", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        const all = Uint8Array.from({ length: 256 }, (_, i) => i);
        const reversed = all.slice().reverse();
        const zeros = new Uint8Array(1000);
        const highs = new Uint8Array(1000).fill(0xff);
        const notUtf8 = Uint8Array.from([
          0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x28, 0x8c, 0xbc, 0x00,
        ]);
        await engine.set(p, "all", all);
        await engine.set(p, "reversed", reversed);
        await engine.set(p, "zeros", zeros);
        await engine.set(p, "highs", highs);
        await engine.set(p, "not-utf8", notUtf8);
        expectBytes(await engine.get(p, "all"), all, "all");
        expectBytes(await engine.get(p, "reversed"), reversed, "reversed");
        expectBytes(await engine.get(p, "zeros"), zeros, "zeros");
        expectBytes(await engine.get(p, "highs"), highs, "highs");
        expectBytes(await engine.get(p, "not-utf8"), notUtf8, "not-utf8");
        // Bytes that a text decoding would turn into U+FFFD of the same length, and U+FFFD itself.
        const surrogate = Uint8Array.from([0xed, 0xa0, 0x80]);
        const replacement = new TextEncoder().encode("\uFFFD");
        await engine.set(p, "surrogate", surrogate);
        await engine.set(p, "replacement", replacement);
        const byKey = new Map((await collect(engine.scan(p))).map((e) => [e.key, e.value]));
        const expected = { all, reversed, zeros, highs, "not-utf8": notUtf8, surrogate, replacement };
        for (const [key, value] of Object.entries(expected))
          expectBytes(byKey.get(key), value, `scanned ${key}`);
      });

      it("keeps values of several MiB", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        const big = randomBytes(5 * 1024 * 1024 + 7);
        await engine.set(p, "big", big);
        expectBytes(await engine.get(p, "big"), big, "big");
        const bigger = randomBytes(6 * 1024 * 1024);
        expect(await engine.setIf(p, "big", bigger, big)).toBe(true);
        expectBytes(await engine.get(p, "big"), bigger, "after setIf");
        await engine.writeBatch([{ partition: p, key: "batched", value: big }]);
        const entries = await collect(engine.scan(p));
        expect(keysOf(entries)).toEqual(["batched", "big"]);
        expectBytes(entries[0]!.value, big, "scanned batched");
        expectBytes(entries[1]!.value, bigger, "scanned big");
      });

      it("keeps keys with unicode, astral-plane and control characters apart", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        for (const key of UNICODE_KEYS) await engine.set(p, key, utf8(`value of ${key}`));
        for (const key of UNICODE_KEYS) expectBytes(await engine.get(p, key), utf8(`value of ${key}`), key);
        expect(await engine.get(p, "a\u0000")).toBeUndefined();
        expect(await engine.get(p, "e")).toBeUndefined();
      });

      it("accepts keys of 4,096 bytes and partition names of 255 bytes", { timeout }, async () => {
        const engine = await connect();
        const p = `${partition()}-${"é".repeat(100)}`;
        const longPartition = own(p + "x".repeat(255 - Buffer.byteLength(p)));
        expect(Buffer.byteLength(longPartition)).toBe(255);
        const twoByte = `k${"é".repeat(2047)}x`;
        const fourByte = "😀".repeat(1024);
        expect(Buffer.byteLength(twoByte)).toBe(4096);
        expect(Buffer.byteLength(fourByte)).toBe(4096);
        await engine.set(longPartition, twoByte, utf8("2"));
        await engine.set(longPartition, fourByte, utf8("4"));
        expectBytes(await engine.get(longPartition, twoByte), utf8("2"));
        expectBytes(await engine.get(longPartition, fourByte), utf8("4"));
        expect(keysOf(await collect(engine.scan(longPartition)))).toEqual([twoByte, fourByte]);
        expect(await engine.setIf(longPartition, twoByte, utf8("22"), utf8("2"))).toBe(true);
        await engine.delete(longPartition, fourByte);
        expect(keysOf(await collect(engine.scan(longPartition)))).toEqual([twoByte]);
      });

      it("shares no buffers with the caller", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        const value = utf8("original");
        await engine.set(p, "k", value);
        value.fill(0);
        const read = await engine.get(p, "k");
        expectBytes(read, utf8("original"));
        read!.fill(0);
        expectBytes(await engine.get(p, "k"), utf8("original"));
      });

      it("keeps partitions apart, including ones whose names are prefixes of each other", {
        timeout,
      }, async () => {
        const engine = await connect();
        const p = partition();
        const names = [p, `${p}a`, `${p}/`, `${p}/x`, `${p}\u0000`, `${p}😀`].map(own);
        for (const name of names) {
          await engine.set(name, "k", utf8(name));
          await engine.set(name, `only in ${name}`, utf8("1"));
        }
        for (const name of names) {
          expectBytes(await engine.get(name, "k"), utf8(name), name);
          expect(keysOf(await collect(engine.scan(name)))).toEqual(sorted(["k", `only in ${name}`]));
        }
        await engine.delete(p, "k");
        expectBytes(await engine.get(`${p}a`, "k"), utf8(`${p}a`));
      });

      it("shows a write on one connection to every other connection", { timeout }, async () => {
        const a = await connect();
        const b = await connect();
        const p = partition();
        await a.set(p, "k", utf8("from a"));
        expectBytes(await b.get(p, "k"), utf8("from a"));
        expect(await b.setIf(p, "k", utf8("from b"), utf8("from a"))).toBe(true);
        expectBytes(await a.get(p, "k"), utf8("from b"));
        await a.delete(p, "k");
        expect(await b.get(p, "k")).toBeUndefined();
      });

      it("keeps data after every connection is closed", { timeout }, async () => {
        const p = partition();
        const first = await connect();
        await first.set(p, "k", utf8("durable"));
        await first.close();
        const second = await connect();
        expectBytes(await second.get(p, "k"), utf8("durable"));
      });
    });

    describe("scan", () => {
      it("yields keys in byte order of their UTF-8 encoding, not JavaScript's string order", {
        timeout,
      }, async () => {
        const engine = await connect();
        const p = partition();
        // Inserted in reverse so insertion order cannot pass for key order.
        for (const key of [...UNICODE_KEYS].reverse()) await engine.set(p, key, utf8(`value of ${key}`));
        const expected = sorted(UNICODE_KEYS);
        expect(expected).not.toEqual([...UNICODE_KEYS].sort());
        const entries = await collect(engine.scan(p));
        expect(keysOf(entries)).toEqual(expected);
        for (const entry of entries) expectBytes(entry.value, utf8(`value of ${entry.key}`), entry.key);
      });

      it("yields only keys that start with the prefix", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        await setAll(engine, p, RANGE_KEYS);
        for (const prefix of RANGE_PREFIXES) {
          const expected = sorted(RANGE_KEYS.filter((k) => k.startsWith(prefix)));
          const got = keysOf(await collect(engine.scan(p, { prefix })));
          expect(got, `prefix ${JSON.stringify(prefix)}`).toEqual(expected);
        }
      });

      it("starts strictly after `after`, whether or not that key exists", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        await setAll(engine, p, RANGE_KEYS);
        for (const after of RANGE_AFTERS) {
          const expected = sorted(RANGE_KEYS.filter((k) => compareKeys(k, after) > 0));
          const got = keysOf(await collect(engine.scan(p, { after })));
          expect(got, `after ${JSON.stringify(after)}`).toEqual(expected);
        }
      });

      it("combines prefix and after", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        await setAll(engine, p, RANGE_KEYS);
        for (const prefix of RANGE_PREFIXES) {
          for (const after of RANGE_AFTERS) {
            const expected = sorted(
              RANGE_KEYS.filter((k) => k.startsWith(prefix) && compareKeys(k, after) > 0),
            );
            const got = keysOf(await collect(engine.scan(p, { prefix, after })));
            expect(got, `prefix ${JSON.stringify(prefix)} after ${JSON.stringify(after)}`).toEqual(expected);
          }
        }
      });

      it("reads from `from` (inclusive) to `before` (exclusive), alone and with prefix and after", {
        timeout,
      }, async () => {
        const engine = await connect();
        const p = partition();
        await setAll(engine, p, RANGE_KEYS);
        const within = (k: string, o: ScanOptions) =>
          (o.prefix === undefined || k.startsWith(o.prefix)) &&
          (o.after === undefined || compareKeys(k, o.after) > 0) &&
          (o.from === undefined || compareKeys(k, o.from) >= 0) &&
          (o.before === undefined || compareKeys(k, o.before) < 0);
        const cases: ScanOptions[] = [];
        for (const from of RANGE_AFTERS) for (const before of RANGE_AFTERS) cases.push({ from, before });
        for (const prefix of RANGE_PREFIXES) {
          for (const bound of ["a", "ab", "ab😀", "é"]) {
            cases.push(
              { prefix, from: bound },
              { prefix, before: bound },
              { prefix, from: bound, after: bound },
            );
          }
        }
        for (const options of cases) {
          const expected = sorted(RANGE_KEYS.filter((k) => within(k, options)));
          const got = keysOf(await collect(engine.scan(p, options)));
          expect(got, JSON.stringify(options)).toEqual(expected);
        }
      });

      it("hands out, through scanPages where the engine has it, non-empty pages holding exactly what scan yields", {
        timeout,
      }, async () => {
        const engine = await connect();
        if (!engine.scanPages) return;
        const p = partition();
        await setAll(engine, p, RANGE_KEYS);
        const many = Array.from({ length: 2500 }, (_, i) => `page-${String(i).padStart(5, "0")}`);
        await engine.writeBatch(many.map((key) => ({ partition: p, key, value: utf8(key) })));
        const cases: ScanOptions[] = [
          {},
          { prefix: "ab" },
          { after: "a/b", limit: 7 },
          { from: "page-01000", before: "page-02000" },
          { prefix: "page-", limit: 1234 },
        ];
        for (const options of cases) {
          const pages = await collect(engine.scanPages(p, options));
          expect(
            pages.every((page) => page.length > 0),
            JSON.stringify(options),
          ).toBe(true);
          const paged = pages.flat();
          const scanned = await collect(engine.scan(p, options));
          expect(keysOf(paged), JSON.stringify(options)).toEqual(keysOf(scanned));
          for (const [i, entry] of paged.entries()) expectBytes(entry.value, scanned[i]!.value, entry.key);
        }
      });

      it("stops after `limit` entries", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        await setAll(engine, p, RANGE_KEYS);
        const all = sorted(RANGE_KEYS);
        for (const limit of [0, 1, 2, 5, all.length, all.length + 10]) {
          expect(keysOf(await collect(engine.scan(p, { limit }))), `limit ${limit}`).toEqual(
            all.slice(0, limit),
          );
        }
        const ab = all.filter((k) => k.startsWith("ab"));
        expect(keysOf(await collect(engine.scan(p, { prefix: "ab", after: "ab\u0000", limit: 3 })))).toEqual(
          ab.filter((k) => compareKeys(k, "ab\u0000") > 0).slice(0, 3),
        );
      });

      it("pages through 2,500 keys in order, with after, prefix and limit", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        const tails = ["z", "😀", "\uffff", "/x", ""];
        const keys = Array.from(
          { length: 2500 },
          (_, i) => `key-${String(Math.floor(i / 5)).padStart(3, "0")}-${tails[i % 5]}`,
        );
        expect(new Set(keys).size).toBe(2500);
        await setAll(engine, p, [...keys].reverse(), 500);
        const all = sorted(keys);

        const entries = await collect(engine.scan(p));
        expect(entries.length).toBe(2500);
        expect(keysOf(entries)).toEqual(all);
        for (const entry of entries) expectBytes(entry.value, utf8(`v:${entry.key}`), entry.key);

        expect(keysOf(await collect(engine.scan(p, { limit: 1234 })))).toEqual(all.slice(0, 1234));
        expect(keysOf(await collect(engine.scan(p, { after: all[1000]! })))).toEqual(all.slice(1001));
        expect(keysOf(await collect(engine.scan(p, { prefix: "key-1" })))).toEqual(
          all.filter((k) => k.startsWith("key-1")),
        );
        expect(
          keysOf(await collect(engine.scan(p, { prefix: "key-2", after: "key-250", limit: 1100 }))),
        ).toEqual(all.filter((k) => k.startsWith("key-2") && compareKeys(k, "key-250") > 0).slice(0, 1100));

        const paged: string[] = [];
        let after: string | undefined;
        for (;;) {
          const page = keysOf(await collect(engine.scan(p, { after, limit: 333 })));
          if (page.length === 0) break;
          expect(page.length).toBeLessThanOrEqual(333);
          paged.push(...page);
          after = page[page.length - 1];
        }
        expect(paged).toEqual(all);
      });

      it("yields nothing for a partition that is empty or never existed", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        expect(await collect(engine.scan(p))).toEqual([]);
        expect(await collect(engine.scan(p, { prefix: "a", after: "a", limit: 10 }))).toEqual([]);
        await engine.set(p, "k", utf8("v"));
        await engine.delete(p, "k");
        expect(await collect(engine.scan(p))).toEqual([]);
      });

      it("yields every key exactly once while the caller deletes each key it is given", {
        timeout,
      }, async () => {
        const engine = await connect();
        const p = partition();
        const keys = Array.from({ length: 1500 }, (_, i) => `k${String(i).padStart(5, "0")}`);
        await setAll(engine, p, keys);
        const seen: string[] = [];
        for await (const entry of engine.scan(p)) {
          seen.push(entry.key);
          await engine.delete(p, entry.key);
        }
        expect(seen).toEqual(keys);
        expect(await collect(engine.scan(p))).toEqual([]);
      });

      it("yields every key present for the whole scan exactly once while others are written and deleted", {
        timeout,
      }, async () => {
        const engine = await connect();
        const other = await connect();
        const p = partition();
        const keys = Array.from({ length: 1500 }, (_, i) => `k${String(i).padStart(5, "0")}`);
        await setAll(engine, p, keys);
        const stable = new Set(keys.filter((_, i) => i % 2 === 0));
        const original = new Set(keys);
        const added = new Set<string>();
        const seen: string[] = [];
        for await (const entry of engine.scan(p)) {
          seen.push(entry.key);
          if (seen.length > 10 * keys.length) expect.fail("the scan does not end");
          const i = keys.indexOf(entry.key);
          if (i < 0) continue;
          // Delete an unstable key ahead of the scan, add a key behind it and one ahead, overwrite a stable key.
          const ahead = keys[Math.min(keys.length - 1, i + 1 + ((i * 7) % 50))]!;
          if (!stable.has(ahead)) await other.delete(p, ahead);
          const behind = `${keys[Math.max(0, i - 1)]}-new`;
          const further = `${keys[Math.min(keys.length - 1, i + 10)]}-new`;
          added.add(behind);
          added.add(further);
          await other.writeBatch([
            { partition: p, key: behind, value: utf8("new") },
            { partition: p, key: further, value: utf8("new") },
          ]);
          const overwrite = keys[(i * 26) % keys.length]!;
          await other.set(p, overwrite, utf8(`v:${overwrite}`));
        }
        expectAscending(seen);
        const seenSet = new Set(seen);
        for (const key of stable) expect(seenSet.has(key), `stable key ${key} was not yielded`).toBe(true);
        for (const key of seen) expect(original.has(key) || added.has(key), `unknown key ${key}`).toBe(true);
      });
    });

    describe("setIf", () => {
      it("with null expected creates an absent key and refuses an existing one", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        expect(await engine.setIf(p, "k", utf8("first"), null)).toBe(true);
        expectBytes(await engine.get(p, "k"), utf8("first"));
        expect(await engine.setIf(p, "k", utf8("second"), null)).toBe(false);
        expectBytes(await engine.get(p, "k"), utf8("first"));
        await engine.delete(p, "k");
        expect(await engine.setIf(p, "k", utf8("third"), null)).toBe(true);
        expectBytes(await engine.get(p, "k"), utf8("third"));
      });

      it("with a value swaps only when the current value is equal byte for byte", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        await engine.set(p, "k", utf8("abc"));
        expect(await engine.setIf(p, "k", utf8("def"), utf8("abc"))).toBe(true);
        expectBytes(await engine.get(p, "k"), utf8("def"));
        for (const wrong of ["abc", "de", "defg", "DEF", "dEf", ""]) {
          expect(
            await engine.setIf(p, "k", utf8("wrong"), utf8(wrong)),
            `expected ${JSON.stringify(wrong)}`,
          ).toBe(false);
          expectBytes(await engine.get(p, "k"), utf8("def"));
        }
        const binary = Uint8Array.from({ length: 256 }, (_, i) => 255 - i);
        expect(await engine.setIf(p, "k", binary, utf8("def"))).toBe(true);
        const almost = binary.slice();
        almost[200] = 0;
        expect(await engine.setIf(p, "k", utf8("wrong"), almost)).toBe(false);
        expect(await engine.setIf(p, "k", utf8("ghi"), binary.slice())).toBe(true);
        expectBytes(await engine.get(p, "k"), utf8("ghi"));
      });

      it("with a value does not create an absent key", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        expect(await engine.setIf(p, "k", utf8("v"), utf8("anything"))).toBe(false);
        expect(await engine.setIf(p, "k", utf8("v"), new Uint8Array(0))).toBe(false);
        expect(await engine.get(p, "k")).toBeUndefined();
        expect(await collect(engine.scan(p))).toEqual([]);
      });

      it("tells an empty value from an absent key", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        await engine.set(p, "empty", new Uint8Array(0));
        expect(await engine.setIf(p, "empty", utf8("x"), null)).toBe(false);
        expect(await engine.setIf(p, "empty", utf8("x"), new Uint8Array(0))).toBe(true);
        expectBytes(await engine.get(p, "empty"), utf8("x"));
        expect(await engine.setIf(p, "empty", new Uint8Array(0), utf8("x"))).toBe(true);
        expectBytes(await engine.get(p, "empty"), new Uint8Array(0));
      });

      it("counts exactly under contention: 4 connections × 25 increments make 100", { timeout }, async () => {
        const connections = await Promise.all([connect(), connect(), connect(), connect()]);
        const p = partition();
        const attempts = await Promise.all(
          connections.map(async (engine) => {
            let total = 0;
            for (let i = 0; i < 25; i++) total += await increment(engine, p, "counter");
            return total;
          }),
        );
        expect(fromUtf8((await connections[0]!.get(p, "counter"))!)).toBe("100");
        expect(attempts.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(100);
      });

      it("lets exactly one of 8 connections create the same key", { timeout }, async () => {
        const connections = await Promise.all(Array.from({ length: 8 }, () => connect()));
        const p = partition();
        const results = await Promise.all(
          connections.map((engine, i) => engine.setIf(p, "lock", utf8(`owner ${i}`), null)),
        );
        expect(results.filter(Boolean).length).toBe(1);
        const winner = results.indexOf(true);
        expectBytes(await connections[0]!.get(p, "lock"), utf8(`owner ${winner}`));
      });
    });

    describe("delete", () => {
      it("removes a key, and removing an absent key is not an error", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        await engine.set(p, "a", utf8("1"));
        await engine.set(p, "b", utf8("2"));
        await engine.delete(p, "a");
        expect(await engine.get(p, "a")).toBeUndefined();
        expect(keysOf(await collect(engine.scan(p)))).toEqual(["b"]);
        await engine.delete(p, "a");
        await engine.delete(p, "never");
        await engine.delete(partition("never"), "never");
        expectBytes(await engine.get(p, "b"), utf8("2"));
      });
    });

    describe("writeBatch", () => {
      it("applies sets and deletes in order, across partitions", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        const q = partition("q");
        await engine.set(p, "x", utf8("old"));
        const ops: WriteOp[] = [
          { partition: p, key: "a", value: utf8("1") },
          { partition: p, key: "b", value: utf8("1") },
          { partition: p, key: "a", value: utf8("2") },
          { partition: p, key: "b", value: null },
          { partition: p, key: "x", value: null },
          { partition: p, key: "never", value: null },
          { partition: q, key: "c", value: utf8("1") },
          { partition: q, key: "c", value: null },
          { partition: q, key: "c", value: utf8("2") },
          { partition: q, key: "empty", value: new Uint8Array(0) },
          { partition: p, key: "😀", value: utf8("smile") },
        ];
        await engine.writeBatch(ops);
        const check = async () => {
          expectBytes(await engine.get(p, "a"), utf8("2"), "a");
          expect(await engine.get(p, "b")).toBeUndefined();
          expect(await engine.get(p, "x")).toBeUndefined();
          expect(await engine.get(p, "never")).toBeUndefined();
          expectBytes(await engine.get(q, "c"), utf8("2"), "c");
          expectBytes(await engine.get(q, "empty"), new Uint8Array(0), "empty");
          expect(keysOf(await collect(engine.scan(p)))).toEqual(["a", "😀"]);
          expect(keysOf(await collect(engine.scan(q)))).toEqual(["c", "empty"]);
        };
        await check();
        // Every op is idempotent, so a batch retried whole leaves the same state.
        await engine.writeBatch(ops);
        await check();
      });

      it("accepts an empty batch", { timeout }, async () => {
        const engine = await connect();
        await engine.writeBatch([]);
      });

      it("writes and deletes 10,000 keys in one batch", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        const q = partition("q");
        const keys = Array.from({ length: 5000 }, (_, i) => `k${String(i).padStart(5, "0")}`);
        const sets: WriteOp[] = keys.flatMap((key) => [
          { partition: p, key, value: utf8(`p:${key}`) },
          { partition: q, key, value: utf8(`q:${key}`) },
        ]);
        await engine.writeBatch(sets);
        const inP = await collect(engine.scan(p));
        expect(keysOf(inP)).toEqual(keys);
        for (const entry of inP) expectBytes(entry.value, utf8(`p:${entry.key}`), entry.key);
        expect((await collect(engine.scan(q))).length).toBe(5000);
        expectBytes(await engine.get(q, "k04999"), utf8("q:k04999"));

        await engine.writeBatch(sets.map((op) => ({ ...op, value: null })));
        expect(await collect(engine.scan(p))).toEqual([]);
        expect(await collect(engine.scan(q))).toEqual([]);
      });

      it("shows a batch to other connections once it resolves", { timeout }, async () => {
        const a = await connect();
        const b = await connect();
        const p = partition();
        await a.writeBatch(
          Array.from({ length: 100 }, (_, i) => ({ partition: p, key: `k${i}`, value: utf8("v") })),
        );
        expect((await collect(b.scan(p))).length).toBe(100);
      });
    });

    describe("partitions", () => {
      it("lists the partitions that hold keys, in byte order, once each", { timeout }, async () => {
        const engine = await connect();
        const base = partition();
        const names = [
          `${base}/b`,
          `${base}/a`,
          `${base}/a/`,
          `${base}/é`,
          `${base}/😀`,
          `${base}/\uffff`,
          `${base}/a\u0000`,
        ].map(own);
        for (const name of names) await engine.set(name, "k1", utf8("v"));
        for (const name of names) await engine.set(name, "k2", utf8("v"));
        await engine.set(`${base}/emptied`, "k", utf8("v"));
        await engine.delete(`${base}/emptied`, "k");
        await engine.writeBatch([
          { partition: `${base}/batched`, key: "k", value: utf8("v") },
          { partition: `${base}/batched`, key: "k", value: null },
        ]);

        const listed = await collect(engine.partitions());
        expectAscending(listed);
        expect(listed.filter((name) => name.startsWith(`${base}/`))).toEqual(sorted(names));

        for (const name of names) await engine.writeBatch([{ partition: name, key: "k1", value: null }]);
        for (const name of names.slice(0, 3)) await engine.delete(name, "k2");
        const after = (await collect(engine.partitions())).filter((name) => name.startsWith(`${base}/`));
        expect(after).toEqual(sorted(names.slice(3)));
      });
    });

    describe("snapshot", () => {
      it("is offered exactly when the engine claims snapshot consistency", { timeout }, async () => {
        const engine = await connect();
        expect(typeof engine.snapshot === "function").toBe(engine.capabilities.consistency === "snapshot");
      });

      it("sees the engine as it was, whatever other connections write afterwards", {
        timeout,
      }, async (ctx) => {
        const engine = await connect();
        if (!engine.snapshot) return ctx.skip();
        const writer = await connect();
        const p = partition();
        const q = partition();
        await setAll(engine, p, ["a", "b", "c"]);
        const snap = await engine.snapshot();
        try {
          await writer.set(p, "a", utf8("changed"));
          await writer.delete(p, "b");
          await writer.set(p, "d", utf8("new"));
          await writer.set(q, "x", utf8("new partition"));
          expectBytes(await snap.get(p, "a"), utf8("v:a"));
          expectBytes(await snap.get(p, "b"), utf8("v:b"));
          expect(await snap.get(p, "d")).toBeUndefined();
          expect(keysOf(await collect(snap.scan(p)))).toEqual(["a", "b", "c"]);
          expect(await collect(snap.partitions())).not.toContain(q);
          expect(keysOf(await collect(writer.scan(p)))).toEqual(["a", "c", "d"]);
        } finally {
          await snap.release();
        }
        await snap.release();
        await expect(snap.get(p, "a")).rejects.toThrow();
        expectBytes(await engine.get(p, "a"), utf8("changed"));
      });
    });

    describe("close", () => {
      it("is idempotent, and every later call rejects", { timeout }, async () => {
        const engine = await connect();
        const p = partition();
        await engine.set(p, "k", utf8("v"));
        await engine.close();
        await engine.close();
        await expect(engine.get(p, "k")).rejects.toThrow();
        await expect(engine.set(p, "k", utf8("v"))).rejects.toThrow();
        await expect(engine.setIf(p, "k", utf8("v"), null)).rejects.toThrow();
        await expect(engine.delete(p, "k")).rejects.toThrow();
        await expect(engine.writeBatch([{ partition: p, key: "k", value: null }])).rejects.toThrow();
        await expect(collect(engine.scan(p))).rejects.toThrow();
        await expect(collect(engine.partitions())).rejects.toThrow();
        await engine.close();
      });

      it("closing one connection leaves the others working", { timeout }, async () => {
        const a = await connect();
        const b = await connect();
        const p = partition();
        await a.set(p, "k", utf8("v"));
        await a.close();
        expectBytes(await b.get(p, "k"), utf8("v"));
        await b.set(p, "k2", utf8("v2"));
        expect(keysOf(await collect(b.scan(p)))).toEqual(["k", "k2"]);
      });
    });
  });
}
