import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { DigestSet } from "../src/backup/objects.js";

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
