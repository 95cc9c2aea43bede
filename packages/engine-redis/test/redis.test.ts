import { collect, expectCode, randomName } from "@cairn/testkit";
import { freePort } from "@cairn/testkit/servers";
import { Redis } from "ioredis";
import { afterAll, describe, expect, inject, it } from "vitest";
import { createRedisEngine, factory, keyLayout, parseRedisUrl, partitionTag } from "../src/index.js";
import { removeKeys } from "./global-setup.js";

const base = inject("redisUrl");
const runPrefix = inject("runPrefix");
const utf8 = (s: string) => new TextEncoder().encode(s);
const admin = new Redis(base, { lazyConnect: true });
afterAll(() => admin.quit());

/** A new prefix under this run's prefix, and the URL that opens it. */
function fresh(label = "t"): { prefix: string; url: string } {
  const prefix = `${runPrefix}${randomName(label)}:`;
  return { prefix, url: `${base}?prefix=${encodeURIComponent(prefix)}` };
}

/** Every Redis key under `prefix`. */
async function keysUnder(prefix: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await admin.scan(
      cursor,
      "MATCH",
      `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`,
      "COUNT",
      1000,
    );
    out.push(...keys);
    cursor = next;
  } while (cursor !== "0");
  return out.sort();
}

/** The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key without one. */
function slotOf(key: string): number {
  let bytes = Buffer.from(key, "utf8");
  const open = bytes.indexOf("{");
  if (open >= 0) {
    const close = bytes.indexOf("}", open + 1);
    if (close > open + 1) bytes = bytes.subarray(open + 1, close);
  }
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

describe("redis URLs", () => {
  it("reads host, port, database, credentials, TLS and parameters", () => {
    expect(parseRedisUrl("redis://127.0.0.1:6380/2?prefix=app%3Acairn%3A&connectTimeout=250")).toEqual({
      location: "redis://127.0.0.1:6380/2?prefix=app%3Acairn%3A&connectTimeout=250",
      host: "127.0.0.1",
      port: 6380,
      db: 2,
      prefix: "app:cairn:",
      connectTimeout: 250,
    });
    const tls = parseRedisUrl(
      "rediss://alice:p%40ss%3Aword@cache.example.com/0?commandTimeout=9000&pageSize=50",
    );
    expect(tls).toMatchObject({
      host: "cache.example.com",
      db: 0,
      username: "alice",
      password: "p@ss:word",
      tls: true,
      commandTimeout: 9000,
      pageSize: 50,
    });
    expect(tls.location).toBe("rediss://alice:***@cache.example.com/0?commandTimeout=9000&pageSize=50");
    expect(tls.port).toBeUndefined();
    expect(parseRedisUrl("redis://:secret@[::1]:7000")).toMatchObject({
      host: "::1",
      port: 7000,
      password: "secret",
    });
    expect(parseRedisUrl("redis://localhost")).toEqual({ location: "redis://localhost", host: "localhost" });
    expect(factory.schemes).toEqual(["redis", "rediss"]);
  });

  it("refuses bad URLs with INVALID_ARGUMENT naming the URL without its password", async () => {
    for (const url of [
      "redis://:hunter2@localhost:6379/0?cache=yes",
      "redis://:hunter2@localhost:6379/zero",
      "redis://:hunter2@localhost:6379/0/1",
      "redis://:hunter2@localhost:6379/0?prefix=a{b}",
      "redis://:hunter2@localhost:6379/0?connectTimeout=0",
      "redis://:hunter2@localhost:6379/0?connectTimeout=soon",
      "redis://:hunter2@localhost:6379/0?pageSize=100000",
      "redis://:hunter2@localhost:6379/0#frag",
      "redis://:hunter2@localhost:99999/0",
      "redis://alice@localhost:6379/0",
      "redis:localhost",
      "mysql://:hunter2@localhost/db",
    ]) {
      const error = await expectCode(factory.open(url), "INVALID_ARGUMENT");
      expect(error.message, url).not.toContain("hunter2");
      if (url.includes(":hunter2@") && url.startsWith("redis://"))
        expect(error.message, url).toContain("***");
      expect(error.message.split("\n")).toHaveLength(1);
    }
  });
});

describe("redis engine", () => {
  it("fails fast with UNAVAILABLE naming the URL when nothing listens", async () => {
    const port = await freePort();
    const url = `redis://:hunter2@127.0.0.1:${port}/0?connectTimeout=2000`;
    const started = Date.now();
    const error = await expectCode(factory.open(url), "UNAVAILABLE");
    expect(Date.now() - started).toBeLessThan(5000);
    expect(error.message).toContain(`redis://:***@127.0.0.1:${port}/0`);
    expect(error.message).toMatch(/ECONNREFUSED/);
    expect(error.message).not.toContain("hunter2");
    expect(error.message.split("\n")).toHaveLength(1);
  });

  it("gives up on a TLS handshake the server never answers after connectTimeout, with UNAVAILABLE", async () => {
    // The test server speaks plain TCP, so a rediss:// client waits for a TLS answer that never comes.
    const hostPort = base.replace(/^redis:\/\//, "").replace(/\/.*$/, "");
    const started = Date.now();
    const error = await expectCode(factory.open(`rediss://${hostPort}/0?connectTimeout=1000`), "UNAVAILABLE");
    expect(Date.now() - started).toBeLessThan(5000);
    expect(error.message).toContain(`rediss://${hostPort}/0`);
  });

  it("fails with PERMISSION_DENIED and Redis's reason when the credentials are refused", async () => {
    const { prefix } = fresh();
    const hostPort = base.replace(/^redis:\/\//, "").replace(/\/.*$/, "");
    for (const [url, reason] of [
      [`redis://nobody:hunter2@${hostPort}/0?prefix=${prefix}`, /WRONGPASS/],
      [`redis://:hunter2@${hostPort}/0?prefix=${prefix}`, /AUTH|password/],
    ] as const) {
      const error = await expectCode(factory.open(url), "PERMISSION_DENIED");
      expect(error.message).toMatch(reason);
      expect(error.message).toContain("***@");
      expect(error.message).not.toContain("hunter2");
      expect(error.message.split("\n")).toHaveLength(1);
    }
    expect(await keysUnder(prefix)).toEqual([]);
  });

  it("refuses a database number the server does not have", async () => {
    const error = await expectCode(factory.open(`${base.replace(/\/\d*$/, "")}/9999`), "INVALID_ARGUMENT");
    expect(error.message).toMatch(/out of range/);
    expect(error.message).toContain("/9999");
  });

  it("refuses a prefix that holds other keys, and leaves them alone", async () => {
    const { prefix, url } = fresh("foreign");
    await admin.set(`${prefix}session:42`, "someone else's");
    const error = await expectCode(factory.open(url), "PRECONDITION_FAILED");
    expect(error.message).toContain(JSON.stringify(prefix));
    expect(error.message).toContain("session:42");
    expect(await keysUnder(prefix)).toEqual([`${prefix}session:42`]);
    expect(await admin.get(`${prefix}session:42`)).toBe("someone else's");
  });

  it("never lists, changes or deletes keys under its prefix that it did not write", async () => {
    const { prefix, url } = fresh("mixed");
    const engine = await factory.open(url);
    try {
      await engine.set("p", "k", utf8("v"));
      // Keys another application wrote under the prefix after cairn claimed it.
      await admin.set(`${prefix}other`, "x");
      await admin.zadd(`${prefix}{zz}k`, 0, "not cairn's");
      expect(await collect(engine.partitions())).toEqual(["p"]);
      await engine.writeBatch([{ partition: "p", key: "k", value: null }]);
      expect(await collect(engine.partitions())).toEqual([]);
      expect(await admin.get(`${prefix}other`)).toBe("x");
      expect(await admin.zrange(`${prefix}{zz}k`, 0, -1)).toEqual(["not cairn's"]);
    } finally {
      await engine.close();
    }
  });

  it("refuses a layout written by a newer version, and a marker that is not cairn's", async () => {
    const { prefix, url } = fresh("newer");
    const engine = await factory.open(url);
    await engine.set("p", "k", utf8("v"));
    await engine.close();
    await admin.hset(`${prefix}meta`, "schema", "2");
    const error = await expectCode(factory.open(url), "UNSUPPORTED");
    expect(error.message).toContain("schema version 2");
    expect(error.message).toContain(JSON.stringify(prefix));

    const other = fresh("marker");
    await admin.set(`${other.prefix}meta`, "mine");
    await expectCode(factory.open(other.url), "PRECONDITION_FAILED");
    expect(await admin.get(`${other.prefix}meta`)).toBe("mine");
  });

  it("reports a key of the wrong type under its layout as CORRUPT", async () => {
    const { prefix, url } = fresh("wrongtype");
    const engine = await factory.open(url);
    try {
      await admin.set(keyLayout(prefix).values("p"), "a string, not a hash");
      const error = await expectCode(engine.get("p", "k"), "CORRUPT");
      expect(error.message).toContain("WRONGTYPE");
      await expectCode(engine.writeBatch([{ partition: "p", key: "k", value: utf8("v") }]), "CORRUPT");
    } finally {
      await engine.close();
    }
  });

  it("keeps each partition under one hash tag, so one Redis Cluster slot", async () => {
    const { prefix, url } = fresh("layout");
    const engine = await factory.open(url);
    const names = ["repo-1", "a}b{c", "{x}", "nul\u0000", "😀", "é".repeat(100)];
    try {
      for (const name of names) {
        await engine.set(name, "k", utf8("v"));
        await engine.writeBatch([{ partition: name, key: "k2", value: utf8("v") }]);
      }
      const layout = keyLayout(prefix);
      const expected = [layout.meta, layout.partitionIndex, layout.registered];
      for (const name of names) {
        const tag = partitionTag(name);
        expect(tag).toBe(`{${Buffer.from(name, "utf8").toString("hex")}}`);
        expect(layout.keys(name)).toBe(`${prefix}${tag}k`);
        expect(layout.values(name)).toBe(`${prefix}${tag}v`);
        expect(slotOf(layout.keys(name))).toBe(slotOf(layout.values(name)));
        expected.push(layout.keys(name), layout.values(name));
      }
      expect(slotOf(layout.partitionIndex)).toBe(slotOf(layout.registered));
      expect(await keysUnder(prefix)).toEqual(expected.sort());
      expect(await admin.type(layout.keys("😀"))).toBe("zset");
      expect(await admin.type(layout.values("😀"))).toBe("hash");
      expect(await admin.zrange(layout.partitionIndex, 0, -1)).toEqual(
        [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
      );
    } finally {
      await engine.close();
    }
  });

  it("sends every script and transaction to the keys of one slot", async () => {
    const { url } = fresh("slots");
    const monitor = await admin.duplicate().monitor();
    const seen: Array<{ source: string; args: string[] }> = [];
    monitor.on("monitor", (_time: string, args: string[], source: string) => {
      const name = args[0]!.toLowerCase();
      if (name === "multi" || name === "exec" || args.some((a) => a.includes(runPrefix)))
        seen.push({ source, args });
    });
    const engine = await factory.open(url);
    try {
      const q = "q}{";
      await engine.set("p", "a", utf8("1"));
      await engine.setIf("p", "a", utf8("2"), utf8("1"));
      await engine.setIf(q, "new", utf8("1"), null);
      await engine.delete("p", "a");
      await engine.writeBatch([
        { partition: "p", key: "b", value: utf8("1") },
        { partition: q, key: "c", value: utf8("1") },
        { partition: "p", key: "b", value: null },
      ]);
      await collect(engine.scan(q));
      await collect(engine.partitions());
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      await engine.close();
      monitor.disconnect();
    }
    let scripts = 0;
    let transactions = 0;
    const open = new Map<string, string[]>();
    for (const { source, args } of seen) {
      const keysInTransaction = open.get(source);
      const name = args[0]!.toLowerCase();
      if (name === "evalsha" || name === "eval") {
        const keys = args.slice(3, 3 + Number(args[2]));
        expect(new Set(keys.map(slotOf)).size, args.join(" ")).toBe(1);
        scripts++;
      } else if (name === "multi") {
        open.set(source, []);
      } else if (name === "exec") {
        open.delete(source);
        if (!keysInTransaction?.length) continue;
        expect(new Set(keysInTransaction.map(slotOf)).size, keysInTransaction.join(" ")).toBe(1);
        transactions++;
      } else if (keysInTransaction) {
        keysInTransaction.push(args[1]!);
      }
    }
    expect(scripts).toBeGreaterThanOrEqual(5);
    expect(transactions).toBeGreaterThanOrEqual(2);
  });

  it("leaves no key of an emptied partition behind, and drops its name from the index after the grace period", async () => {
    const { prefix } = fresh("cleanup");
    const engine = await createRedisEngine({ ...parseRedisUrl(base), prefix, indexGrace: 0 });
    const layout = keyLayout(prefix);
    try {
      await engine.writeBatch(
        Array.from({ length: 2500 }, (_, i) => ({ partition: "gone", key: `k${i}`, value: utf8("v") })),
      );
      await engine.set("kept", "k", utf8("v"));
      await engine.writeBatch(
        Array.from({ length: 2500 }, (_, i) => ({ partition: "gone", key: `k${i}`, value: null })),
      );
      expect(await admin.exists(layout.keys("gone"), layout.values("gone"))).toBe(0);
      expect(await collect(engine.partitions())).toEqual(["kept"]);
      // Listing dropped the emptied partition's name from the index.
      expect(await admin.zrange(layout.partitionIndex, 0, -1)).toEqual(["kept"]);
      expect(await admin.hkeys(layout.registered)).toEqual(["kept"]);
      // A partition written again is listed again.
      await engine.set("gone", "back", utf8("v"));
      expect(await collect(engine.partitions())).toEqual(["gone", "kept"]);
    } finally {
      await engine.close();
    }
  });

  it("keeps an emptied partition's name during the grace period, but never lists it", async () => {
    const { prefix, url } = fresh("grace");
    const engine = await factory.open(url);
    try {
      await engine.set("p", "k", utf8("v"));
      await engine.delete("p", "k");
      expect(await collect(engine.partitions())).toEqual([]);
      expect(await admin.zrange(keyLayout(prefix).partitionIndex, 0, -1)).toEqual(["p"]);
    } finally {
      await engine.close();
    }
  });

  it("pages a scan of large values in bounded slices, while keys are deleted", async () => {
    const { url } = fresh("large");
    const engine = await factory.open(`${url}&pageSize=3`);
    try {
      const big = new Uint8Array(6 * 1024 * 1024).fill(7);
      await engine.writeBatch(
        ["a", "b", "c", "d", "e", "f", "g"].map((key) => ({ partition: "p", key, value: big })),
      );
      const seen: string[] = [];
      for await (const entry of engine.scan("p")) {
        seen.push(entry.key);
        expect(entry.value.length).toBe(big.length);
        if (entry.key === "a") await engine.delete("p", "f");
      }
      expect(seen).toEqual(["a", "b", "c", "d", "e", "g"]);
      expect((await collect(engine.scan("p", { limit: 4 }))).map((e) => e.key)).toEqual(["a", "b", "c", "d"]);
    } finally {
      await engine.close();
    }
  });

  it("hands out a scan in non-empty pages that together hold what scan yields, within every bound", async () => {
    const { url } = fresh("pages");
    const engine = await factory.open(`${url}&pageSize=4`);
    try {
      const keys = Array.from({ length: 23 }, (_, i) => `k/${String(i).padStart(2, "0")}-é`);
      await engine.writeBatch(keys.map((key) => ({ partition: "p", key, value: utf8(`v${key}`) })));
      await engine.set("p", "other", utf8("o"));
      const ranges = [
        {},
        { prefix: "k/" },
        { prefix: "k/", limit: 9 },
        { after: "k/05-é", before: "k/17" },
        { from: "k/05-é", limit: 1 },
        { from: "k/30" },
      ];
      for (const options of ranges) {
        const pages = await collect(engine.scanPages!("p", options));
        for (const page of pages) expect(page.length).toBeGreaterThan(0);
        const flat = pages.flat().map((e) => [e.key, Buffer.from(e.value).toString()]);
        const scanned = (await collect(engine.scan("p", options))).map((e) => [
          e.key,
          Buffer.from(e.value).toString(),
        ]);
        expect(flat).toEqual(scanned);
      }
      const seen: string[] = [];
      for await (const page of engine.scanPages!("p", { prefix: "k/" })) {
        for (const { key } of page) seen.push(key);
        if (seen.length === 4) for (const key of keys.slice(4, 10)) await engine.delete("p", key);
      }
      // Keys deleted during the scan may still be handed out (a page read ahead), the others are, once each.
      expect(seen.filter((key) => !keys.slice(4, 10).includes(key))).toEqual([
        ...keys.slice(0, 4),
        ...keys.slice(10),
      ]);
      expect(new Set(seen).size).toBe(seen.length);
    } finally {
      await engine.close();
    }
  });

  it("keeps pages of large values to a bounded size", async () => {
    const { url } = fresh("large-pages");
    const engine = await factory.open(url);
    try {
      const big = new Uint8Array(3 * 1024 * 1024).fill(1);
      await engine.writeBatch(
        Array.from({ length: 40 }, (_, i) => ({
          partition: "p",
          key: `k${String(i).padStart(2, "0")}`,
          value: big,
        })),
      );
      // The first page is read before any size is known; later ones stay within 16 MiB of values.
      const sizes: number[] = [];
      for await (const page of engine.scanPages!("p")) sizes.push(page.length);
      expect(sizes.reduce((a, b) => a + b)).toBe(40);
      for (const n of sizes.slice(1)) expect(n * big.length).toBeLessThanOrEqual(16 * 1024 * 1024);
    } finally {
      await engine.close();
    }
  });

  it("checks every key of a batch before writing any of it", async () => {
    const { url } = fresh("batch-keys");
    const engine = await factory.open(url);
    try {
      const longest = `${"€".repeat(1365)}x`;
      expect(Buffer.byteLength(longest)).toBe(4096);
      for (const bad of [`${longest}y`, "a\ud800", ""]) {
        await expectCode(
          engine.writeBatch([
            { partition: "p", key: "first", value: utf8("1") },
            { partition: "p", key: bad, value: utf8("2") },
          ]),
          "INVALID_ARGUMENT",
        );
      }
      expect(await collect(engine.scan("p"))).toEqual([]);
      await engine.writeBatch([{ partition: "p", key: longest, value: utf8("1") }]);
      expect((await collect(engine.scan("p"))).map((e) => e.key)).toEqual([longest]);
    } finally {
      await engine.close();
    }
  });

  it("is closed for good after close(): every call rejects with UNAVAILABLE naming the URL", async () => {
    const { url } = fresh("closed");
    const engine = await factory.open(url);
    await engine.close();
    await engine.close();
    const error = await expectCode(engine.get("p", "k"), "UNAVAILABLE");
    expect(error.message).toContain("closed");
    expect(error.message).toContain(engine.location);
    await expectCode(collect(engine.scan("p")), "UNAVAILABLE");
    await expectCode(collect(engine.partitions()), "UNAVAILABLE");
    await expectCode(engine.writeBatch([]), "UNAVAILABLE");
  });

  it("uses an injected client and leaves it open on close", async () => {
    const { prefix } = fresh("injected");
    const client = admin.duplicate();
    const engine = await createRedisEngine({ client, prefix });
    await engine.set("p", "k", utf8("v"));
    await engine.close();
    expect(await client.hget(keyLayout(prefix).values("p"), "k")).toBe("v");
    await client.quit();
  });

  it("removes what it wrote when its prefix is cleared", async () => {
    const { prefix, url } = fresh("clear");
    const engine = await factory.open(url);
    await engine.set("p", "k", utf8("v"));
    await engine.close();
    expect((await keysUnder(prefix)).length).toBeGreaterThan(0);
    await removeKeys(admin, prefix);
    expect(await keysUnder(prefix)).toEqual([]);
  });
});
