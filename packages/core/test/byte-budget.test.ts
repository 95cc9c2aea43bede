import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ByteBudget } from "../src/byte-budget.js";

const settled = () => new Promise((resolve) => setImmediate(resolve));

describe("ByteBudget", () => {
  it("hands out bytes while they last, then serves waiting requests in order as bytes come back", async () => {
    const budget = new ByteBudget(100);
    const a = await budget.take(60);
    const started: string[] = [];
    const b = budget.take(50).then((give) => {
      started.push("b");
      return give;
    });
    // Fits, but waits behind b: first come, first served, so a large request is never starved.
    const c = budget.take(10).then((give) => {
      started.push("c");
      return give;
    });
    await settled();
    expect(started).toEqual([]);
    expect(budget.free).toBe(40);
    a();
    a(); // giving back twice gives back once
    const giveB = await b;
    const giveC = await c;
    expect(started).toEqual(["b", "c"]);
    expect(budget.free).toBe(40);
    giveB();
    giveC();
    expect(budget.free).toBe(100);
  });

  it("runs a request larger than the whole budget alone", async () => {
    const budget = new ByteBudget(100);
    const small = await budget.take(1);
    let big = false;
    const giveBig = budget.take(1_000).then((give) => {
      big = true;
      return give;
    });
    await settled();
    expect(big).toBe(false);
    small();
    (await giveBig)();
    expect(big).toBe(true);
    expect(budget.free).toBe(100);
  });

  it("never hands out more than its limit, and ends with all of it back, whatever the requests", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ bytes: fc.integer({ min: 0, max: 150 }), hold: fc.nat(3) }), { maxLength: 30 }),
        async (requests) => {
          const budget = new ByteBudget(100);
          let held = 0;
          let most = 0;
          await Promise.all(
            requests.map(async ({ bytes, hold }) => {
              const give = await budget.take(bytes);
              held += Math.min(bytes, 100);
              most = Math.max(most, held);
              for (let i = 0; i < hold; i++) await settled();
              held -= Math.min(bytes, 100);
              give();
            }),
          );
          expect(most).toBeLessThanOrEqual(100);
          expect(budget.free).toBe(100);
        },
      ),
    );
  });

  it("refuses a limit that is not a positive whole number of bytes", () => {
    for (const limit of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => new ByteBudget(limit)).toThrow(RangeError);
    }
  });
});
