import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  acquireLease,
  dumpEngine,
  type EngineFactory,
  type ErrorCode,
  encodeJson,
  GLOBAL_PARTITION,
  hasCode,
  holdsLease,
  leaseKey,
  type MetadataEngine,
  readLease,
  releaseLease,
  renewLease,
} from "../src/index.js";

// A real engine: the embedded SQLite engine, loaded from its build (core cannot depend on it: it depends on core).
const sqlite = (await import(new URL("../../engine-sqlite/dist/index.js", import.meta.url).href)) as {
  factory: EngineFactory;
};

const dir = await mkdtemp(join(tmpdir(), "cairn-lease-"));
const opened: MetadataEngine[] = [];
afterAll(async () => {
  for (const e of opened) await e.close();
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
/** A new engine file, and a function that opens another connection to it. */
async function engineFile(): Promise<{ engine: MetadataEngine; connect: () => Promise<MetadataEngine> }> {
  const url = `sqlite://${join(dir, `meta-${++n}.db`)}`;
  const connect = async () => {
    const e = await sqlite.factory.open(url);
    opened.push(e);
    return e;
  };
  return { engine: await connect(), connect };
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof Error)) return expect.fail(`expected ${code}, but it succeeded`);
  expect(hasCode(error, code), `${(error as { code?: string }).code}: ${error.message}`).toBe(true);
  return error;
}

/** A clock that stands still until moved. */
function clock(start = Date.parse("2026-11-25T23:15:00Z")) {
  let t = start;
  return {
    now: () => new Date(t),
    advance: (ms: number) => {
      t += ms;
    },
  };
}

describe("leases", () => {
  it("gives a free lease to one holder at a time, with a token that grows on every acquisition", async () => {
    const { engine } = await engineFile();
    const c = clock();
    const a = await acquireLease(engine, "job", "host-a", 60_000, c);
    expect(a).toMatchObject({ name: "job", holder: "host-a", token: 1 });
    expect(a!.expiresAt.getTime() - c.now().getTime()).toBe(60_000);
    expect(await acquireLease(engine, "job", "host-b", 60_000, c)).toBeUndefined();
    // Another name is another lease.
    expect(await acquireLease(engine, "other", "host-b", 60_000, c)).toMatchObject({ token: 1 });

    expect(await releaseLease(engine, a!)).toBe(true);
    const b = await acquireLease(engine, "job", "host-b", 60_000, c);
    expect(b).toMatchObject({ holder: "host-b", token: 2 });
    // Released records stay, so a token is never handed out twice.
    expect(await releaseLease(engine, b!)).toBe(true);
    expect((await readLease(engine, "job"))!.expiresAt.getTime()).toBe(0);
    expect(await acquireLease(engine, "job", "host-a", 60_000, c)).toMatchObject({ token: 3 });
  });

  it("lets another holder take an expired lease, and fences the old holder out", async () => {
    const { engine } = await engineFile();
    const c = clock();
    const a = (await acquireLease(engine, "job", "host-a", 1000, c))!;
    c.advance(999);
    expect(await acquireLease(engine, "job", "host-b", 1000, c)).toBeUndefined();
    c.advance(1);
    const b = (await acquireLease(engine, "job", "host-b", 1000, c))!;
    expect(b.token).toBeGreaterThan(a.token);
    // The old holder notices it lost the lease, and cannot renew or release the new holder's lease.
    expect(await holdsLease(engine, a)).toBe(false);
    expect(await renewLease(engine, a, 1000, c)).toBeUndefined();
    expect(await releaseLease(engine, a)).toBe(false);
    expect(await holdsLease(engine, b)).toBe(true);
    expect((await readLease(engine, "job"))!.holder).toBe("host-b");
  });

  it("renews a lease that nobody took over, even after it expired", async () => {
    const { engine } = await engineFile();
    const c = clock();
    const a = (await acquireLease(engine, "job", "host-a", 1000, c))!;
    c.advance(5000);
    const renewed = (await renewLease(engine, a, 1000, c))!;
    expect(renewed.token).toBe(a.token);
    expect(renewed.expiresAt.getTime()).toBe(c.now().getTime() + 1000);
    expect(await acquireLease(engine, "job", "host-b", 1000, c)).toBeUndefined();
  });

  it("gives a contested lease to exactly one of many connections", async () => {
    const { engine, connect } = await engineFile();
    const others = await Promise.all([connect(), connect(), connect()]);
    const engines = [engine, ...others];
    for (let round = 0; round < 5; round++) {
      const results = await Promise.all(
        engines.flatMap((e, i) => [
          acquireLease(e, "job", `host-${i}-a`, 60_000),
          acquireLease(e, "job", `host-${i}-b`, 60_000),
        ]),
      );
      const winners = results.filter((r) => r !== undefined);
      expect(winners).toHaveLength(1);
      expect(winners[0]!.token).toBe(round + 1);
      expect(await releaseLease(engine, winners[0]!)).toBe(true);
    }
  });

  it("is an engine record of the global partition, carried by whole-engine dumps", async () => {
    const { engine } = await engineFile();
    await acquireLease(engine, "backup-meta/abc", "host-a", 60_000);
    const records: Record<string, unknown>[] = [];
    await dumpEngine(engine, {
      write: async (r) => void records.push(r),
      writeLines: async (_type, lines) => void records.push(...lines.map((l) => JSON.parse(l))),
    });
    const lease = records.find((r) => r.type === "engine-record" && r.key === leaseKey("backup-meta/abc"));
    expect(lease).toMatchObject({ partition: GLOBAL_PARTITION });
    expect(JSON.parse(Buffer.from(lease!.value as string, "base64").toString())).toMatchObject({
      holder: "host-a",
      token: 1,
    });
  });

  it("refuses bad arguments and reports a corrupt record by its key", async () => {
    const { engine } = await engineFile();
    expect((await expectCode(acquireLease(engine, "job", "h", 0), "INVALID_ARGUMENT")).message).toMatch(
      /time to live/,
    );
    await expectCode(acquireLease(engine, "job", "h", Number.NaN), "INVALID_ARGUMENT");
    await expectCode(acquireLease(engine, "", "h", 1000), "INVALID_ARGUMENT");
    await expectCode(acquireLease(engine, "job", "", 1000), "INVALID_ARGUMENT");
    await engine.set(GLOBAL_PARTITION, leaseKey("broken"), encodeJson("x").subarray(1));
    const error = await expectCode(acquireLease(engine, "broken", "h", 1000), "CORRUPT");
    expect(error.message).toContain("cairn/lease/broken");
  });
});
