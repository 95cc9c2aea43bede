import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { HeldObjects } from "../src/backup/objects.js";
import { DigestSet } from "../src/digest-set.js";

const digest = (i: number) => createHash("sha256").update(String(i)).digest("hex");

describe("DigestSet", () => {
  it("answers as a Set of the same strings would, through many growths", () => {
    const set = new DigestSet(2);
    const reference = new Set<string>();
    // Digests, repeats, upper-case hex and strings that are not digests at all, kept apart as strings.
    const values = [
      ...Array.from({ length: 20_000 }, (_, i) => digest(i)),
      ...Array.from({ length: 500 }, (_, i) => digest(i)),
      digest(1).toUpperCase(),
      "not-a-digest",
      "",
      digest(2).slice(0, 63),
    ];
    for (const value of values) {
      set.add(value);
      reference.add(value);
    }
    expect(set.size).toBe(reference.size);
    for (let i = 0; i < 40_000; i++) expect(set.has(digest(i))).toBe(reference.has(digest(i)));
    for (const value of ["not-a-digest", "", digest(1).toUpperCase(), digest(2).slice(0, 63), "other"]) {
      expect(set.has(value), value).toBe(reference.has(value));
    }
    expect([...set.values()].sort()).toEqual([...reference].sort());
  });
});

describe("HeldObjects", () => {
  it("holds an object at its size only", () => {
    const held = new HeldObjects();
    const sizes = [0, 1, 65_536, 2 ** 32 + 7, Number.MAX_SAFE_INTEGER];
    for (let i = 0; i < 1000; i++) held.add(digest(i), sizes[i % sizes.length]!);
    for (let i = 0; i < 1000; i++) {
      const size = sizes[i % sizes.length]!;
      expect(held.has(digest(i), size)).toBe(true);
      expect(held.has(digest(i), size + 1)).toBe(false);
      expect(held.has(digest(i), size === 0 ? 1 : size - 1)).toBe(false);
      expect(held.has(digest(i + 1000), size)).toBe(false);
    }
    held.add("not-a-digest", 5);
    expect(held.has("not-a-digest", 5)).toBe(true);
    expect(held.has("not-a-digest", 6)).toBe(false);
  });
});
