import { describe, expect, it } from "vitest";
import {
  canonicalJson,
  compareKeys,
  type Entry,
  hasCode,
  isBoundary,
  parseMetarange,
  parseRange,
  serializeMetarange,
  serializeRange,
} from "../src/index.js";
import { fnv1a32 } from "../src/tree/chunking.js";

const entry = (path: string, i = 0): Entry => ({
  path,
  address: `data/00/00/${String(i).padStart(64, "0")}`,
  size: i,
  sha256: String(i).padStart(64, "0"),
  contentType: "text/plain",
  mtime: "2026-11-25T00:00:00.000Z",
  metadata: i % 2 ? { k: `v${i}`, ключ: "значение" } : {},
});

describe("key order", () => {
  it("compares keys in the byte order of their UTF-8 encoding", () => {
    const keys = ["a", "b", "ab", "", "\uffff", "😀", "\ue000", "é", "a\u0000", "Z", "~", "\u07ff", "\u0800"];
    for (const x of keys) {
      for (const y of keys) {
        expect(Math.sign(compareKeys(x, y))).toBe(Math.sign(Buffer.compare(Buffer.from(x), Buffer.from(y))));
      }
    }
  });
});

describe("range format", () => {
  it("round-trips entries, including ones split across parse pieces", () => {
    const entries = Array.from({ length: 3000 }, (_, i) =>
      entry(`dir/${String(i).padStart(5, "0")}/ünïcode 😀`, i),
    );
    const bytes = serializeRange(entries);
    expect(bytes.length).toBeGreaterThan(128 * 1024);
    expect(parseRange(bytes, "r")).toEqual(entries);
    expect(parseRange(serializeRange([entries[0]!]), "r")).toEqual([entries[0]]);
  });

  it("reads a range another tool re-indented", () => {
    const entries = [entry("a", 1), entry("b", 2)];
    const doc = JSON.parse(serializeRange(entries).toString("utf8"));
    expect(parseRange(Buffer.from(JSON.stringify(doc, null, 2)), "r")).toEqual(entries);
  });

  it("refuses corrupted and future ranges with a message naming them", () => {
    const good = serializeRange([entry("a", 1)]);
    const broken = Buffer.from(good);
    broken[broken.length - 5] = 0x78; // the entry's closing bracket becomes "x"
    for (const [bytes, code] of [
      [broken, "CORRUPT"],
      [Buffer.from("not json"), "CORRUPT"],
      [Buffer.from('{"format":"cairn.range","version":2,"columns":[],"entries":[]}'), "UNSUPPORTED"],
      [Buffer.from('{"format":"other","version":1}'), "CORRUPT"],
    ] as const) {
      try {
        parseRange(bytes, "s3://b/_cairn/ranges/x");
        expect.unreachable();
      } catch (e) {
        expect(hasCode(e, code)).toBe(true);
        expect((e as Error).message).toContain("s3://b/_cairn/ranges/x");
      }
    }
  });

  it("round-trips metaranges", () => {
    const ranges = [
      { id: "a".repeat(64), first: "a", last: "m", count: 10, bytes: 100 },
      { id: "b".repeat(64), first: "n", last: "z", count: 5, bytes: 50 },
    ];
    expect(parseMetarange(serializeMetarange(ranges), "m")).toEqual(ranges);
    expect(parseMetarange(serializeMetarange([]), "m")).toEqual([]);
  });
});

describe("range boundaries", () => {
  it("hash paths with 32-bit FNV-1a over UTF-8, as documented", () => {
    expect(fnv1a32("")).toBe(0x811c9dc5);
    expect(fnv1a32("a")).toBe(0xe40c292c);
    expect(fnv1a32("foobar")).toBe(0xbf9cf968);
    const viaBytes = (s: string) => {
      let h = 0x811c9dc5;
      for (const b of Buffer.from(s)) h = Math.imul(h ^ b, 0x01000193);
      return h >>> 0;
    };
    for (const s of ["é", "😀/x", "\u0800abc", "mixed é 😀 \uffff"]) expect(fnv1a32(s)).toBe(viaBytes(s));
  });

  it("fall about once every 512 paths", () => {
    let n = 0;
    for (let i = 0; i < 200_000; i++) if (isBoundary(`p/${i}`)) n++;
    expect(n).toBeGreaterThan(200_000 / 512 / 1.5);
    expect(n).toBeLessThan((200_000 / 512) * 1.5);
  });
});

describe("canonical JSON", () => {
  it("sorts keys at every level and drops undefined", () => {
    expect(canonicalJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: undefined } })).toBe(
      '{"a":{"d":[{"y":2,"z":1}]},"b":1}',
    );
  });
});
