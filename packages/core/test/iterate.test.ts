import { describe, expect, it } from "vitest";
import { flattenPages, paginate } from "../src/index.js";

describe("flattenPages", () => {
  it("yields every item of every page in order, skipping empty pages", async () => {
    async function* pages() {
      yield [1, 2];
      yield [];
      yield [3];
    }
    const out: number[] = [];
    for await (const x of flattenPages(pages())) out.push(x);
    expect(out).toEqual([1, 2, 3]);
  });

  it("closes the source when the consumer stops early", async () => {
    let closed = false;
    async function* pages() {
      try {
        for (let i = 0; ; i++) yield [i, i];
      } finally {
        closed = true;
      }
    }
    for await (const x of flattenPages(pages())) if (x === 3) break;
    expect(closed).toBe(true);
  });

  it("passes a failure of the source to the consumer", async () => {
    async function* pages(): AsyncGenerator<number[]> {
      yield [1];
      throw new Error("range unreadable");
    }
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const x of flattenPages(pages())) seen.push(x);
      })(),
    ).rejects.toThrow("range unreadable");
    expect(seen).toEqual([1]);
  });
});

describe("paginate", () => {
  it("groups items into pages of the given size", async () => {
    async function* items() {
      for (let i = 0; i < 7; i++) yield i;
    }
    const pages: number[][] = [];
    for await (const p of paginate(items(), 3)) pages.push(p);
    expect(pages).toEqual([[0, 1, 2], [3, 4, 5], [6]]);
  });
});
