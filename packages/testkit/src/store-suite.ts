import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { compareKeys, hasCode, type ObjectInfo, type ObjectStore } from "@cairn/core";
import { describe, expect, it, onTestFinished } from "vitest";
import { expectBytes, pseudoRandomBytes, utf8 } from "./bytes.js";
import { collect } from "./helpers.js";

/** How {@link describeStore} reaches the store under test. */
export interface StoreSuiteOptions {
  /**
   * Opens a store rooted at a fresh, empty location (a new folder, bucket prefix or container) every time it
   * is called, through the store's real URL path. The suite closes every store it opened.
   */
  open: () => Promise<ObjectStore>;
  /**
   * Whether the service enforces create-only writes atomically, so that of several concurrent create-only puts
   * exactly one wins. Set `false` only for an emulator known not to (s3rver ignores `If-None-Match`), and say
   * why in the test file: the race test is then skipped, the sequential create-only tests still run.
   * @default true
   */
  atomicCreateOnly?: boolean;
  /**
   * Whether the service discards an object whose one-request upload ends before its body does, as S3, MinIO,
   * R2 and Azure do. Set `false` only for an emulator known to keep what it received (s3rver writes objects in
   * place), and say why in the test file: a store that sends a reopenable body in one request is then checked
   * for its error and for not sending the body again, but not for leaving nothing behind.
   * @default true
   */
  discardsCutUploads?: boolean;
  /**
   * Time limit of each test, in milliseconds.
   * @default 60000
   */
  timeout?: number;
}

const MiB = 1024 * 1024;

/** Keys whose byte order differs from the order of a directory walk that sorts names (`a.txt`, `a/b`, `a0`). */
const LIST_KEYS: readonly string[] = [
  "a-b",
  "a.txt",
  "a/b",
  "a/c/d",
  "a/c/e.txt",
  "a/c.d",
  "a0",
  "ab/c",
  "b",
  "z/z/z",
  "é/x",
  "\ufffd.txt",
  "\uffff/x",
  "😀.txt",
  "😀/x",
];

const LIST_PREFIXES: readonly string[] = [
  "",
  "a",
  "a/",
  "a/c",
  "a/c/",
  "a.",
  "ab",
  "é",
  "😀",
  "\uffff",
  "nothing/",
  "a/c/d/e",
];
const LIST_AFTERS: readonly string[] = [
  "",
  "a",
  "a-b",
  "a/",
  "a/b",
  "a/c",
  "a/c/d",
  "a0",
  "aa",
  "b",
  "zz",
  "😀",
  "\uffff/x",
];

/** Keys with characters that URL, XML and path encodings tend to get wrong. */
const TRICKY_KEYS: readonly string[] = [
  "with space.txt",
  "folder with space/file name.bin",
  "ünïcödé/日本語.bin",
  "emoji/😀 party.txt",
  "astral/𝄞/\u{10ffff}",
  "nfd/e\u0301.txt",
  "special/+&=?#;,@!$'()*[]{}~^`|.txt",
  "percent%20literal/%2F%25",
  "quotes/\"double\" and 'single'",
  "x/<tag>&amp;",
  // Entity text that a listing's XML carries escaped, and that must not be decoded twice.
  "entities/&#x27; &lt; &nbsp;",
];

const INVALID_KEYS: readonly string[] = [
  "",
  "/a",
  "/",
  "a/",
  "a//b",
  "..",
  "../a",
  "a/..",
  "a/../b",
  ".",
  "./a",
  "a/./b",
];

const sorted = (keys: Iterable<string>): string[] => [...keys].sort(compareKeys);
const keysOf = (infos: readonly ObjectInfo[]): string[] => infos.map((i) => i.key);

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

async function getBytes(
  store: ObjectStore,
  key: string,
  range?: { start: number; end?: number },
): Promise<Buffer> {
  const reader = await store.get(key, range ? { range } : undefined);
  return readAll(reader.body);
}

async function expectCode(promise: Promise<unknown>, code: Parameters<typeof hasCode>[1], what: string) {
  let error: unknown;
  try {
    await promise;
  } catch (e) {
    error = e;
  }
  if (error === undefined) expect.fail(`${what}: expected an error with code ${code}, but it succeeded`);
  if (!hasCode(error, code)) {
    const got =
      error instanceof Error
        ? `${(error as { code?: unknown }).code ?? error.name}: ${error.message}`
        : String(error);
    expect.fail(`${what}: expected code ${code}, got ${got}`);
  }
  expect((error as Error).message.length, `${what}: the error has a message`).toBeGreaterThan(0);
}

async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}

async function* chunks(parts: readonly Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) {
    await new Promise((resolve) => setImmediate(resolve));
    yield part;
  }
}

async function* failingBody(bytesBeforeFailure: number): AsyncGenerator<Uint8Array> {
  const chunk = 256 * 1024;
  for (let sent = 0; sent < bytesBeforeFailure; sent += chunk) {
    await new Promise((resolve) => setImmediate(resolve));
    yield randomBytes(chunk);
  }
  throw new Error("the body failed on purpose");
}

/**
 * The conformance suite of the {@link ObjectStore} contract. Every store's test file calls it with a way to
 * open an empty store through the store's URL; a store is done when it passes the whole suite.
 *
 * @example
 * ```ts
 * describeStore("fs", { open: async () => factory.open(pathToFileURL(await tempDir("cairn-fs-")).href) });
 * ```
 */
export function describeStore(name: string, options: StoreSuiteOptions): void {
  const timeout = options.timeout ?? 60_000;
  const atomicCreateOnly = options.atomicCreateOnly ?? true;
  const discardsCutUploads = options.discardsCutUploads ?? true;

  /** A fresh, empty store, closed when the current test finishes. */
  async function connect(): Promise<ObjectStore> {
    const store = await options.open();
    onTestFinished(async () => {
      await store.close();
    });
    return store;
  }

  describe(`ObjectStore conformance: ${name}`, () => {
    it("names its kind and a URL without secrets", { timeout }, async () => {
      const store = await connect();
      expect(typeof store.kind).toBe("string");
      expect(store.kind.length).toBeGreaterThan(0);
      expect(store.url).toMatch(/^[a-z][a-z0-9+.-]*:/i);
      expect(store.url).not.toMatch(/:\/\/[^/@:]*:[^/@*]+@/);
    });

    it("starts empty", { timeout }, async () => {
      const store = await connect();
      expect(await collect(store.list(""))).toEqual([]);
    });

    describe("put, get and head", () => {
      it("writes and reads bytes, and reports size and etag", { timeout }, async () => {
        const store = await connect();
        const bytes = randomBytes(10_000);
        const info = await store.put("dir/object.bin", bytes, { contentType: "application/octet-stream" });
        expect(info.key).toBe("dir/object.bin");
        expect(info.size).toBe(10_000);
        expect(typeof info.etag).toBe("string");
        expect(info.etag.length).toBeGreaterThan(0);

        const head = await store.head("dir/object.bin");
        expect(head?.key).toBe("dir/object.bin");
        expect(head?.size).toBe(10_000);
        expect(head?.etag).toBe(info.etag);
        if (head?.lastModified !== undefined) expect(head.lastModified).toBeInstanceOf(Date);
        expect((await store.head("dir/object.bin"))?.etag).toBe(info.etag);

        const reader = await store.get("dir/object.bin");
        expect(reader.key).toBe("dir/object.bin");
        expect(reader.size).toBe(10_000);
        expect(reader.etag).toBe(info.etag);
        expectBytes(await readAll(reader.body), bytes);
      });

      it("writes from a Readable", { timeout }, async () => {
        const store = await connect();
        const parts = [randomBytes(1000), randomBytes(70_000), randomBytes(1)];
        const info = await store.put("readable", Readable.from(parts));
        expect(info.size).toBe(71_001);
        expectBytes(await getBytes(store, "readable"), Buffer.concat(parts));
      });

      it("writes from an AsyncIterable of Uint8Array", { timeout }, async () => {
        const store = await connect();
        const parts = [utf8("hello, "), new Uint8Array(0), utf8("world"), randomBytes(100_000)];
        const info = await store.put("iterable", chunks(parts));
        expect(info.size).toBe(12 + 100_000);
        expectBytes(await getBytes(store, "iterable"), Buffer.concat(parts));
      });

      it("reads the same bytes and info when the caller checks them itself (verify: false)", {
        timeout,
      }, async () => {
        const store = await connect();
        const bytes = randomBytes(200_000);
        const put = await store.put("checked", bytes);
        const reader = await store.get("checked", { verify: false });
        expect({ key: reader.key, size: reader.size, etag: reader.etag }).toEqual({
          key: "checked",
          size: bytes.length,
          etag: put.etag,
        });
        expectBytes(await readAll(reader.body), bytes);
        const empty = await store.put("checked-empty", new Uint8Array(0));
        const none = await store.get("checked-empty", { verify: false });
        expect(none.etag).toBe(empty.etag);
        expect((await readAll(none.body)).length).toBe(0);
      });

      it("keeps an empty object", { timeout }, async () => {
        const store = await connect();
        expect((await store.put("empty", new Uint8Array(0))).size).toBe(0);
        expect((await store.put("empty-stream", chunks([]))).size).toBe(0);
        expect((await store.head("empty"))?.size).toBe(0);
        expectBytes(await getBytes(store, "empty"), new Uint8Array(0));
        expectBytes(await getBytes(store, "empty-stream"), new Uint8Array(0));
        expect(keysOf(await collect(store.list("")))).toEqual(["empty", "empty-stream"]);
      });

      it("answers head of an absent key with undefined and get with NOT_FOUND", { timeout }, async () => {
        const store = await connect();
        expect(await store.head("absent")).toBeUndefined();
        expect(await store.head("absent/deeper/key")).toBeUndefined();
        await expectCode(store.get("absent"), "NOT_FOUND", "get absent");
        await expectCode(store.get("absent/deeper/key"), "NOT_FOUND", "get absent/deeper/key");
        await store.put("dir/file", utf8("x"));
        expect(await store.head("dir")).toBeUndefined();
        await expectCode(store.get("dir"), "NOT_FOUND", "get of a key that is only a prefix of others");
        expect(await store.head("dir/file/below")).toBeUndefined();
        await expectCode(store.get("dir/file/below"), "NOT_FOUND", "get below an object");
      });

      it("reads byte ranges", { timeout }, async () => {
        const store = await connect();
        const bytes = randomBytes(1000);
        await store.put("ranged", bytes);
        expectBytes(await getBytes(store, "ranged", { start: 0 }), bytes, "start 0");
        expectBytes(await getBytes(store, "ranged", { start: 10 }), bytes.subarray(10), "start only");
        expectBytes(
          await getBytes(store, "ranged", { start: 10, end: 19 }),
          bytes.subarray(10, 20),
          "start and end",
        );
        expectBytes(
          await getBytes(store, "ranged", { start: 0, end: 0 }),
          bytes.subarray(0, 1),
          "first byte",
        );
        expectBytes(
          await getBytes(store, "ranged", { start: 999 }),
          bytes.subarray(999),
          "last byte, start only",
        );
        expectBytes(
          await getBytes(store, "ranged", { start: 999, end: 999 }),
          bytes.subarray(999),
          "last byte",
        );
        expectBytes(await getBytes(store, "ranged", { start: 0, end: 999 }), bytes, "whole object");
      });

      it("keeps keys with unicode, spaces and URL-special characters", { timeout }, async () => {
        const store = await connect();
        for (const key of TRICKY_KEYS) {
          const info = await store.put(key, utf8(`content of ${key}`));
          expect(info.key).toBe(key);
        }
        for (const key of TRICKY_KEYS) {
          expectBytes(await getBytes(store, key), utf8(`content of ${key}`), key);
          expect((await store.head(key))?.key, key).toBe(key);
        }
        expect(keysOf(await collect(store.list("")))).toEqual(sorted(TRICKY_KEYS));
        expect(await store.head("nfd/é.txt")).toBeUndefined();
        for (const key of TRICKY_KEYS) await store.delete(key);
        expect(await collect(store.list(""))).toEqual([]);
      });

      it("overwrites an object, with a new etag", { timeout }, async () => {
        const store = await connect();
        const first = await store.put("k", utf8("first version"));
        const second = await store.put("k", utf8("second, longer version"));
        expect(second.size).toBe(22);
        expect(second.etag).not.toBe(first.etag);
        expect((await store.head("k"))?.etag).toBe(second.etag);
        expectBytes(await getBytes(store, "k"), utf8("second, longer version"));
        const third = await store.put("k", utf8("third, sized version!!"));
        expect(third.etag).not.toBe(second.etag);
        expectBytes(await getBytes(store, "k"), utf8("third, sized version!!"));
        expect(keysOf(await collect(store.list("")))).toEqual(["k"]);
      });

      it("never shows a reader a partial object while it is overwritten", { timeout }, async () => {
        const store = await connect();
        const a = new Uint8Array(MiB).fill(0x61);
        const b = new Uint8Array(MiB + MiB / 2).fill(0x62);
        await store.put("hot", a);
        let writing = true;
        const writer = (async () => {
          try {
            for (let i = 0; i < 10; i++)
              await store.put("hot", chunks(i % 2 ? [a] : [b.subarray(0, MiB), b.subarray(MiB)]));
          } finally {
            writing = false;
          }
        })();
        let reads = 0;
        const readers = Array.from({ length: 3 }, async () => {
          while (writing || reads < 3) {
            const got = await getBytes(store, "hot");
            reads++;
            const whole = Buffer.compare(got, a) === 0 || Buffer.compare(got, b) === 0;
            expect(whole, `read ${got.length} bytes that are neither version`).toBe(true);
          }
        });
        await Promise.all([writer, ...readers]);
      });

      it("streams a 64 MiB object in and out", { timeout }, async () => {
        const store = await connect();
        const size = 64 * MiB;
        const hash = createHash("sha256");
        let tail: Uint8Array = new Uint8Array(0);
        async function* generate(): AsyncGenerator<Uint8Array> {
          for (let i = 0; i < 64; i++) {
            const chunk = randomBytes(MiB);
            hash.update(chunk);
            tail = chunk.subarray(MiB - 10);
            yield chunk;
          }
        }
        const info = await store.put("big/object", generate(), { size });
        const written = hash.digest("hex");
        expect(info.size).toBe(size);
        expect((await store.head("big/object"))?.size).toBe(size);

        const reader = await store.get("big/object");
        const readHash = createHash("sha256");
        let read = 0;
        for await (const chunk of reader.body) {
          readHash.update(chunk as Uint8Array);
          read += (chunk as Uint8Array).length;
        }
        expect(read).toBe(size);
        expect(readHash.digest("hex")).toBe(written);
        expectBytes(await getBytes(store, "big/object", { start: size - 10 }), tail, "last 10 bytes");
      });

      it("lets a reader stop early by destroying the body", { timeout }, async () => {
        const store = await connect();
        await store.put("k", pseudoRandomBytes(4 * MiB, 1));
        const reader = await store.get("k");
        reader.body.destroy();
        await store.put("k", utf8("replaced"));
        expectBytes(await getBytes(store, "k"), utf8("replaced"));
        await store.delete("k");
        expect(await store.head("k")).toBeUndefined();
      });
    });

    describe("a failed put", () => {
      it("leaves no object when an AsyncIterable body fails midway", { timeout }, async () => {
        const store = await connect();
        await expect(store.put("broken/object", failingBody(MiB))).rejects.toThrow();
        expect(await store.head("broken/object")).toBeUndefined();
        await expectCode(store.get("broken/object"), "NOT_FOUND", "get after a failed put");
        expect(await collect(store.list(""))).toEqual([]);
        await store.put("broken/object", utf8("fine"));
        expectBytes(await getBytes(store, "broken/object"), utf8("fine"));
      });

      it("leaves no object when a Readable body errors midway", { timeout }, async () => {
        const store = await connect();
        let pushed = 0;
        const body = new Readable({
          read() {
            if (pushed < 4) {
              pushed++;
              this.push(randomBytes(128 * 1024));
            } else {
              this.destroy(new Error("the stream failed on purpose"));
            }
          },
        });
        await expect(store.put("broken", body)).rejects.toThrow();
        expect(await store.head("broken")).toBeUndefined();
        expect(await collect(store.list(""))).toEqual([]);
      });

      it("keeps the previous version when an overwrite fails midway", { timeout }, async () => {
        const store = await connect();
        const old = randomBytes(5000);
        const info = await store.put("k", old);
        await expect(store.put("k", failingBody(MiB))).rejects.toThrow();
        expect((await store.head("k"))?.etag).toBe(info.etag);
        expectBytes(await getBytes(store, "k"), old);
        await expect(store.put("k", failingBody(MiB), { createOnly: true })).rejects.toThrow();
        expectBytes(await getBytes(store, "k"), old);
        expect(keysOf(await collect(store.list("")))).toEqual(["k"]);
      });
    });

    describe("a body the store may reopen", () => {
      const size = 20 * MiB;
      const bytes = pseudoRandomBytes(size, 7);
      const stream = () => Readable.from(chunks([bytes.subarray(0, size / 2), bytes.subarray(size / 2)]));

      it("is stored whole, and every stream reopened is read or destroyed", { timeout }, async () => {
        const store = await connect();
        const reopened: Readable[] = [];
        const reopen = () => {
          const s = stream();
          reopened.push(s);
          return s;
        };
        const info = await store.put("again", stream(), { size, reopen });
        expect(info.size).toBe(size);
        await store.put("again-once", stream(), { size, reopen, createOnly: true });
        await expectCode(
          store.put("again-once", stream(), { size, reopen, createOnly: true }),
          "ALREADY_EXISTS",
          "a second create-only put with reopen",
        );
        for (const key of ["again", "again-once"]) expectBytes(await getBytes(store, key), bytes, key);
        for (const s of reopened) expect(s.destroyed || s.readableEnded).toBe(true);
      });

      it("is not sent again when it fails itself: the failure is the caller's", { timeout }, async () => {
        const store = await connect();
        let reopens = 0;
        const reopen = () => {
          reopens++;
          return failingBody(MiB);
        };
        await expect(store.put("broken", failingBody(MiB), { size, reopen })).rejects.toThrow();
        expect(reopens).toBe(0);
        if (!discardsCutUploads) return;
        expect(await store.head("broken")).toBeUndefined();
        expect(await collect(store.list(""))).toEqual([]);
      });
    });

    describe("createOnly", () => {
      it("creates an absent object, and refuses an existing one with ALREADY_EXISTS, keeping it", {
        timeout,
      }, async () => {
        const store = await connect();
        const info = await store.put("once", utf8("first"), { createOnly: true });
        expect(info.size).toBe(5);
        await expectCode(
          store.put("once", utf8("second"), { createOnly: true }),
          "ALREADY_EXISTS",
          "second create",
        );
        await expectCode(
          store.put("once", chunks([utf8("third")]), { createOnly: true }),
          "ALREADY_EXISTS",
          "create from a stream",
        );
        expectBytes(await getBytes(store, "once"), utf8("first"));
        expect((await store.head("once"))?.etag).toBe(info.etag);
        expect(keysOf(await collect(store.list("")))).toEqual(["once"]);
        await store.delete("once");
        await store.put("once", utf8("again"), { createOnly: true });
        expectBytes(await getBytes(store, "once"), utf8("again"));
      });

      it.skipIf(!atomicCreateOnly)("lets exactly one of 8 concurrent creates win", { timeout }, async () => {
        const store = await connect();
        const bodies = Array.from({ length: 8 }, (_, i) => pseudoRandomBytes(64 * 1024 + i, i + 1));
        const results = await Promise.allSettled(
          bodies.map((body, i) => store.put("race", i % 2 ? chunks([body]) : body, { createOnly: true })),
        );
        const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
        expect(winners.length).toBe(1);
        for (const r of results)
          if (r.status === "rejected") expect(hasCode(r.reason, "ALREADY_EXISTS")).toBe(true);
        expectBytes(await getBytes(store, "race"), bodies[winners[0]!]!, "the winner's bytes");
        expect(keysOf(await collect(store.list("")))).toEqual(["race"]);
      });
    });

    describe("list", () => {
      it("lists in byte order of keys, not in the order of a directory walk", { timeout }, async () => {
        const store = await connect();
        for (const key of [...LIST_KEYS].reverse()) await store.put(key, utf8(key));
        const expected = sorted(LIST_KEYS);
        const infos = await collect(store.list(""));
        expect(keysOf(infos)).toEqual(expected);
        for (const info of infos) {
          expect(info.size, info.key).toBe(Buffer.byteLength(info.key));
          expect(typeof info.etag).toBe("string");
        }
      });

      it("restricts to a prefix, which need not end at a `/`", { timeout }, async () => {
        const store = await connect();
        await mapLimit(LIST_KEYS, 8, (key) => store.put(key, utf8(key)));
        for (const prefix of LIST_PREFIXES) {
          const expected = sorted(LIST_KEYS.filter((k) => k.startsWith(prefix)));
          expect(keysOf(await collect(store.list(prefix))), `prefix ${JSON.stringify(prefix)}`).toEqual(
            expected,
          );
        }
      });

      it("starts strictly after `after`, with or without a prefix", { timeout }, async () => {
        const store = await connect();
        await mapLimit(LIST_KEYS, 8, (key) => store.put(key, utf8(key)));
        for (const prefix of LIST_PREFIXES) {
          for (const after of LIST_AFTERS) {
            const expected = sorted(
              LIST_KEYS.filter((k) => k.startsWith(prefix) && compareKeys(k, after) > 0),
            );
            const got = keysOf(await collect(store.list(prefix, { after })));
            expect(got, `prefix ${JSON.stringify(prefix)} after ${JSON.stringify(after)}`).toEqual(expected);
          }
        }
      });

      it("pages through 1,500 keys", { timeout }, async () => {
        const store = await connect();
        const keys = Array.from({ length: 1500 }, (_, i) => {
          const n = String(i).padStart(4, "0");
          return i % 3 === 0 ? `top-${n}` : `dir/${i % 7}/${n}${i % 5 === 0 ? ".x" : ""}`;
        });
        await mapLimit(keys, 16, (key, i) => store.put(key, utf8(String(i))));
        const all = sorted(keys);
        const infos = await collect(store.list(""));
        expect(infos.length).toBe(1500);
        expect(keysOf(infos)).toEqual(all);
        expect(keysOf(await collect(store.list("", { after: all[700]! })))).toEqual(all.slice(701));
        expect(keysOf(await collect(store.list("dir/")))).toEqual(all.filter((k) => k.startsWith("dir/")));
        expect(keysOf(await collect(store.list("dir/3/", { after: "dir/3/0500" })))).toEqual(
          all.filter((k) => k.startsWith("dir/3/") && compareKeys(k, "dir/3/0500") > 0),
        );
      });

      it("yields every object exactly once while the caller deletes what it lists", { timeout }, async () => {
        const store = await connect();
        const keys = Array.from(
          { length: 300 },
          (_, i) => `d${i % 4}/${i % 3 ? "sub/" : ""}${String(i).padStart(4, "0")}`,
        );
        await mapLimit(keys, 16, (key) => store.put(key, utf8(key)));
        const seen: string[] = [];
        for await (const info of store.list("")) {
          seen.push(info.key);
          await store.delete(info.key);
        }
        expect(seen).toEqual(sorted(keys));
        expect(await collect(store.list(""))).toEqual([]);
      });

      it("yields every object present for the whole listing exactly once while others change", {
        timeout,
      }, async () => {
        const store = await connect();
        const keys = sorted(
          Array.from(
            { length: 300 },
            (_, i) => `d${i % 4}/${i % 3 ? "sub/" : ""}${String(i).padStart(4, "0")}`,
          ),
        );
        await mapLimit(keys, 16, (key) => store.put(key, utf8(key)));
        const stable = new Set(keys.filter((_, i) => i % 2 === 0));
        const added = new Set<string>();
        const seen: string[] = [];
        for await (const info of store.list("")) {
          seen.push(info.key);
          if (seen.length > 10 * keys.length) expect.fail("the listing does not end");
          const i = keys.indexOf(info.key);
          if (i < 0) continue;
          // Delete an unstable key ahead of the listing, and add keys behind it, ahead of it and in new folders.
          const ahead = keys[Math.min(keys.length - 1, i + 1 + (i % 9))]!;
          if (!stable.has(ahead)) await store.delete(ahead);
          const fresh = i % 2 ? `${keys[Math.min(keys.length - 1, i + 5)]}-new` : `d${i % 5}/new/${i}`;
          added.add(fresh);
          await store.put(fresh, utf8("new"));
        }
        for (let i = 1; i < seen.length; i++) expect(compareKeys(seen[i - 1]!, seen[i]!)).toBeLessThan(0);
        for (const key of stable) expect(seen.includes(key), `stable ${key} listed`).toBe(true);
        for (const key of seen) expect(keys.includes(key) || added.has(key), `unknown ${key}`).toBe(true);
      });
    });

    describe("copy", () => {
      it("copies an object, leaving the source", { timeout }, async () => {
        const store = await connect();
        const bytes = randomBytes(3000);
        await store.put("src/object", bytes);
        const info = await store.copy("src/object", "dst/ünï 😀/copy");
        expect(info.key).toBe("dst/ünï 😀/copy");
        expect(info.size).toBe(3000);
        expectBytes(await getBytes(store, "dst/ünï 😀/copy"), bytes, "copy");
        expectBytes(await getBytes(store, "src/object"), bytes, "source");
        expect((await store.head("dst/ünï 😀/copy"))?.etag).toBe(info.etag);
        expect(keysOf(await collect(store.list("")))).toEqual(["dst/ünï 😀/copy", "src/object"]);
      });

      it("overwrites an existing target unless createOnly, which fails with ALREADY_EXISTS", {
        timeout,
      }, async () => {
        const store = await connect();
        await store.put("a", utf8("from a"));
        await store.put("b", utf8("from b"));
        await store.put("c", utf8("from c"));
        await store.copy("a", "b");
        expectBytes(await getBytes(store, "b"), utf8("from a"));
        await expectCode(
          store.copy("a", "c", { createOnly: true }),
          "ALREADY_EXISTS",
          "copy createOnly onto c",
        );
        expectBytes(await getBytes(store, "c"), utf8("from c"));
        await store.copy("a", "d", { createOnly: true });
        expectBytes(await getBytes(store, "d"), utf8("from a"));
        expect(keysOf(await collect(store.list("")))).toEqual(["a", "b", "c", "d"]);
      });

      it("fails with NOT_FOUND when the source is absent, creating nothing", { timeout }, async () => {
        const store = await connect();
        await expectCode(store.copy("absent", "target"), "NOT_FOUND", "copy of an absent source");
        await expectCode(
          store.copy("absent", "target", { createOnly: true }),
          "NOT_FOUND",
          "createOnly copy",
        );
        expect(await store.head("target")).toBeUndefined();
        expect(await collect(store.list(""))).toEqual([]);
      });
    });

    describe("delete", () => {
      it("removes an object, and removing an absent one is not an error", { timeout }, async () => {
        const store = await connect();
        await store.put("keep", utf8("keep"));
        await store.put("gone/deep/object", utf8("gone"));
        await store.delete("gone/deep/object");
        expect(await store.head("gone/deep/object")).toBeUndefined();
        await expectCode(store.get("gone/deep/object"), "NOT_FOUND", "get after delete");
        expect(keysOf(await collect(store.list("")))).toEqual(["keep"]);
        await store.delete("gone/deep/object");
        await store.delete("never");
        await store.delete("never/deeper");
        expectBytes(await getBytes(store, "keep"), utf8("keep"));
      });

      it("leaves nothing behind that blocks other keys", { timeout }, async () => {
        const store = await connect();
        await store.put("x/y/z", utf8("1"));
        await store.delete("x/y/z");
        await store.put("x/y", utf8("2"));
        await store.delete("x/y");
        await store.put("x", utf8("3"));
        expect(keysOf(await collect(store.list("")))).toEqual(["x"]);
        expectBytes(await getBytes(store, "x"), utf8("3"));
      });
    });

    describe("keys", () => {
      it("rejects a key with a leading `/`, an empty segment, `.` or `..` with INVALID_ARGUMENT", {
        timeout,
      }, async () => {
        const store = await connect();
        await store.put("valid", utf8("v"));
        for (const key of INVALID_KEYS) {
          const k = JSON.stringify(key);
          await expectCode(store.put(key, utf8("x")), "INVALID_ARGUMENT", `put ${k}`);
          await expectCode(
            store.put(key, utf8("x"), { createOnly: true }),
            "INVALID_ARGUMENT",
            `create ${k}`,
          );
          await expectCode(store.get(key), "INVALID_ARGUMENT", `get ${k}`);
          await expectCode(store.head(key), "INVALID_ARGUMENT", `head ${k}`);
          await expectCode(store.delete(key), "INVALID_ARGUMENT", `delete ${k}`);
          await expectCode(store.copy("valid", key), "INVALID_ARGUMENT", `copy to ${k}`);
          await expectCode(store.copy(key, "valid2"), "INVALID_ARGUMENT", `copy from ${k}`);
        }
        expect(keysOf(await collect(store.list("")))).toEqual(["valid"]);
      });
    });

    describe("close", () => {
      it("is idempotent", { timeout }, async () => {
        const store = await connect();
        await store.put("k", utf8("v"));
        await store.close();
        await store.close();
      });
    });
  });
}
