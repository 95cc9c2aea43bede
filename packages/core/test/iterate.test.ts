import { describe, expect, it } from "vitest";
import { flattenPages, pagesAhead, paginate } from "../src/index.js";

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

describe("pagesAhead", () => {
  /** A listing of `count` numbers served `size` at a time, recording each request and when it was made. */
  function listing(count: number) {
    const requests: { token: string | undefined; size: number }[] = [];
    const fetch = async (token: string | undefined, size: number) => {
      requests.push({ token, size });
      const from = Number(token ?? 0);
      const to = Math.min(count, from + size);
      const items = Array.from({ length: to - from }, (_, i) => from + i);
      return { items, next: to < count ? String(to) : undefined };
    };
    return { requests, fetch };
  }

  it("asks for a short first page, then full ones, and yields every entry once, in order", async () => {
    const { requests, fetch } = listing(23);
    const out: number[] = [];
    for await (const page of pagesAhead(fetch, { first: 3, size: 10 })) out.push(...page);
    expect(out).toEqual(Array.from({ length: 23 }, (_, i) => i));
    expect(requests).toEqual([
      { token: undefined, size: 3 },
      { token: "3", size: 10 },
      { token: "13", size: 10 },
    ]);
  });

  it("asks for nothing until read, then for the next page while the reader has the one before", async () => {
    const { requests, fetch } = listing(30);
    const pages = pagesAhead(fetch, { first: 10, size: 10 });
    expect(requests).toHaveLength(0);
    const first = await pages.next();
    expect(first.value).toHaveLength(10);
    // The reader holds the first page; the second is on its way, the third not yet.
    expect(requests.map((r) => r.token)).toEqual([undefined, "10"]);
    await pages.next();
    expect(requests.map((r) => r.token)).toEqual([undefined, "10", "20"]);
    await pages.return(undefined);
  });

  it("gives a page's failure when the reader gets to it", async () => {
    const fetch = async (token: string | undefined) => {
      if (token) throw new Error("listing refused");
      return { items: [1, 2], next: "2" };
    };
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const page of pagesAhead(fetch, { first: 2, size: 2 })) seen.push(...page);
      })(),
    ).rejects.toThrow("listing refused");
    expect(seen).toEqual([1, 2]);
  });

  it("drops the failure of a page asked for ahead when the reader stops before it", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const fetch = async (token: string | undefined) => {
        if (token) throw new Error("listing refused");
        return { items: [1, 2], next: "2" };
      };
      for await (const page of pagesAhead(fetch, { first: 2, size: 2 })) {
        expect(page).toEqual([1, 2]);
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
