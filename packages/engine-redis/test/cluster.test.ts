import { collect, expectCode, randomName } from "@cairn/testkit";
import { freePort, startRedisCluster, startRedisServer } from "@cairn/testkit/servers";
import { type Cluster, Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createRedisEngine, factory, keyLayout, keySlot, parseRedisUrl, partitionTag } from "../src/index.js";
import { clusterClient, removeClusterKeys } from "./global-setup.js";

const base = inject("redisClusterUrl");
const single = inject("redisUrl");
const runPrefix = inject("runPrefix");
const utf8 = (s: string) => new TextEncoder().encode(s);
const text = (bytes: Uint8Array | undefined) => (bytes ? Buffer.from(bytes).toString("utf8") : undefined);

let admin: Cluster;
beforeAll(async () => {
  admin = await clusterClient(base);
});
afterAll(() => admin.quit());

/** A new prefix under this run's prefix, and the cluster URL that opens it. */
function fresh(label = "t"): { prefix: string; url: string } {
  const prefix = `${runPrefix}${randomName(label)}:`;
  return { prefix, url: `${base}?prefix=${encodeURIComponent(prefix)}` };
}

/** The master serving `key`'s slot, as `host:port`. */
const ownerOf = (key: string): string => admin.slots[keySlot(key)]![0]!;

/** The connection to the master `host:port`. */
function master(hostPort: string): Redis {
  const node = admin.nodes("master").find((n) => `${n.options.host}:${n.options.port}` === hostPort);
  if (!node) throw new Error(`no master ${hostPort}`);
  return node;
}

/** Every key under `prefix` on every master. */
async function keysUnder(prefix: string): Promise<string[]> {
  const out: string[] = [];
  for (const node of admin.nodes("master")) {
    let cursor = "0";
    do {
      const [next, keys] = await node.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      out.push(...keys);
      cursor = next;
    } while (cursor !== "0");
  }
  return out.sort();
}

/** The port of the master of `cluster` serving partition `name` of `engine`. */
function ownerPort(cluster: Cluster, engine: { prefix: string }, name: string): number {
  return Number(cluster.slots[keySlot(keyLayout(engine.prefix).keys(name))]![0]!.split(":")[1]);
}

/** A key under `prefix` whose slot the master `hostPort` serves. */
function keyOn(prefix: string, hostPort: string): string {
  for (let i = 0; ; i++) if (ownerOf(`${prefix}other-${i}`) === hostPort) return `${prefix}other-${i}`;
}

describe("Redis Cluster URLs", () => {
  it("reads several comma-separated hosts as the seed nodes of a cluster", () => {
    expect(
      parseRedisUrl("redis://:p%40ss@10.0.0.1:7000,cache-2,[::1]:7002/3?prefix=app%3A&connectTimeout=250"),
    ).toEqual({
      location: "redis://:***@10.0.0.1:7000,cache-2,[::1]:7002/3?prefix=app%3A&connectTimeout=250",
      nodes: [{ host: "10.0.0.1", port: 7000 }, { host: "cache-2" }, { host: "::1", port: 7002 }],
      password: "p@ss",
      db: 3,
      prefix: "app:",
      connectTimeout: 250,
    });
    expect(parseRedisUrl("rediss://alice:s3cret@a:7000,b:7001?cluster=true")).toEqual({
      location: "rediss://alice:***@a:7000,b:7001?cluster=true",
      nodes: [
        { host: "a", port: 7000 },
        { host: "b", port: 7001 },
      ],
      username: "alice",
      password: "s3cret",
      tls: true,
    });
  });

  it("reads ?cluster=true as a single seed node, and ?cluster=false as a single server", () => {
    expect(parseRedisUrl("redis://cache:7000?cluster=true")).toEqual({
      location: "redis://cache:7000?cluster=true",
      host: "cache",
      port: 7000,
      cluster: true,
    });
    expect(parseRedisUrl("redis://cache/2?cluster=false")).toMatchObject({
      host: "cache",
      db: 2,
      cluster: false,
    });
  });

  it("refuses bad cluster URLs with INVALID_ARGUMENT naming the URL without its password", async () => {
    for (const url of [
      "redis://:hunter2@a:7000,,b:7001/0",
      "redis://:hunter2@a:7000,b:7001,/0",
      "redis://:hunter2@a:7000,b:99999/0",
      "redis://:hunter2@a:7000,b:x/0",
      "redis://:hunter2@a:7000,b:7001/zero",
      "redis://:hunter2@a:7000,b:7001/0?cluster=false",
      "redis://:hunter2@a:7000/0?cluster=yes",
      "redis://:hunter2@a:7000,b:7001/0?shards=2",
      "redis://alice@a:7000,b:7001/0",
    ]) {
      const error = await expectCode(factory.open(url), "INVALID_ARGUMENT");
      expect(error.message, url).not.toContain("hunter2");
      if (url.includes(":hunter2@")) expect(error.message, url).toContain("***");
      expect(error.message.split("\n")).toHaveLength(1);
    }
  });

  it("refuses options that contradict each other", async () => {
    const nodes = [{ host: "127.0.0.1", port: 7000 }];
    await expectCode(createRedisEngine({ nodes, host: "127.0.0.1" }), "INVALID_ARGUMENT");
    await expectCode(createRedisEngine({ nodes, cluster: false }), "INVALID_ARGUMENT");
    await expectCode(createRedisEngine({ nodes: [] }), "INVALID_ARGUMENT");
    await expectCode(createRedisEngine({ nodes, prefix: "a{b}" }), "INVALID_ARGUMENT");
  });
});

describe("redis engine on a cluster", () => {
  it("opens through every seed, through one seed with ?cluster=true, and through an injected Cluster", async () => {
    const { prefix, url } = fresh("forms");
    const first = base.replace(/^redis:\/\//, "").split(",")[0]!;
    const all = await factory.open(url);
    const one = await factory.open(`redis://${first}/0?cluster=true&prefix=${encodeURIComponent(prefix)}`);
    const client = await clusterClient(base);
    const injected = await createRedisEngine({ client, prefix });
    try {
      expect([all.cluster, one.cluster, injected.cluster]).toEqual([true, true, true]);
      expect(one.location).toBe(`redis://${first}/0?cluster=true&prefix=${encodeURIComponent(prefix)}`);
      for (const [i, engine] of [all, one, injected].entries()) await engine.set(`p${i}`, "k", utf8(`v${i}`));
      for (const engine of [all, one, injected]) {
        expect(await collect(engine.partitions())).toEqual(["p0", "p1", "p2"]);
        expect(text(await engine.get("p2", "k"))).toBe("v2");
      }
      await injected.close();
      // The injected client is its owner's: still open.
      expect(await client.hget(keyLayout(prefix).values("p0"), "k")).toBe("v0");
    } finally {
      await all.close();
      await one.close();
      await injected.close();
      await client.quit();
    }
  });

  it("puts dbN: before the prefix for a database number N ≥ 1, since a cluster has database 0 only", async () => {
    const { prefix } = fresh("db");
    const three = await factory.open(`${base}/3?prefix=${encodeURIComponent(prefix)}`);
    const zero = await factory.open(`${base}/0?prefix=${encodeURIComponent(prefix)}`);
    try {
      expect(three.prefix).toBe(`db3:${prefix}`);
      expect(zero.prefix).toBe(prefix);
      await three.set("p", "k", utf8("three"));
      await zero.set("p", "k", utf8("zero"));
      expect(text(await three.get("p", "k"))).toBe("three");
      expect(text(await zero.get("p", "k"))).toBe("zero");
      expect(await keysUnder(`db3:${prefix}`)).toContain(keyLayout(`db3:${prefix}`).values("p"));
    } finally {
      await three.close();
      await zero.close();
      await removeClusterKeys(admin, `db3:${prefix}`);
    }
  });

  it("keeps each partition's keys in one slot, as CLUSTER KEYSLOT says, and spreads partitions over the masters", async () => {
    const { prefix, url } = fresh("slots");
    const layout = keyLayout(prefix);
    const names = ["repo-1", "a}b{c", "{x}", "nul\u0000", "😀", "é".repeat(100)].concat(
      Array.from({ length: 24 }, (_, i) => `p-${i}`),
    );
    // The engine's slot function is Redis's, including keys whose braces do not make a hash tag.
    for (const key of [
      "",
      "a",
      "{}",
      "{}x",
      "a{",
      "{a",
      "x{}{b}",
      "{{a}}",
      "a{b}c{d}",
      "é{😀}",
      layout.meta,
    ]) {
      expect(keySlot(key), key).toBe(await admin.cluster("KEYSLOT", key));
    }
    const engine = await factory.open(url);
    try {
      await engine.writeBatch(names.map((name) => ({ partition: name, key: "k", value: utf8(name) })));
      const owners = new Set<string>();
      for (const name of names) {
        const slot = await admin.cluster("KEYSLOT", layout.keys(name));
        expect(await admin.cluster("KEYSLOT", layout.values(name)), name).toBe(slot);
        expect(keySlot(layout.keys(name))).toBe(slot);
        expect(layout.keys(name)).toBe(`${prefix}${partitionTag(name)}k`);
        // Both keys are on the master that serves the slot.
        const owner = master(ownerOf(layout.keys(name)));
        expect(await owner.exists(layout.keys(name), layout.values(name)), name).toBe(2);
        owners.add(ownerOf(layout.keys(name)));
      }
      expect(await admin.cluster("KEYSLOT", layout.partitionIndex)).toBe(
        await admin.cluster("KEYSLOT", layout.registered),
      );
      expect(owners.size).toBe(admin.nodes("master").length);
      expect(await collect(engine.partitions())).toEqual(
        [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
      );
      for (const name of names) expect(text(await engine.get(name, "k"))).toBe(name);
    } finally {
      await engine.close();
    }
  });

  it("writes one batch across every master, deletes part of it, and reads back exactly what remains", async () => {
    const { url } = fresh("batch");
    const engine = await factory.open(url);
    try {
      const partitions = Array.from({ length: 12 }, (_, i) => `part-${i}`);
      const key = (i: number) => `k/${String(i).padStart(5, "0")}`;
      await engine.writeBatch(
        Array.from({ length: 1000 }, (_, i) => i).flatMap((i) =>
          partitions.map((partition) => ({ partition, key: key(i), value: utf8(`${partition}:${i}`) })),
        ),
      );
      // Deletes of the odd keys, interleaved with rewrites of the multiples of ten, in one batch: runs of one op,
      // so hundreds of transactions per node, in many pipelines.
      await engine.writeBatch(
        Array.from({ length: 1000 }, (_, i) => i).flatMap((i) =>
          partitions.map((partition) =>
            i % 2 === 1
              ? { partition, key: key(i), value: null }
              : { partition, key: key(i), value: utf8(i % 10 === 0 ? "again" : `${partition}:${i}`) },
          ),
        ),
      );
      for (const partition of partitions) {
        const entries = await collect(engine.scan(partition));
        expect(entries.map((e) => e.key)).toEqual(Array.from({ length: 500 }, (_, i) => key(2 * i)));
        expect(text(entries[5]!.value)).toBe("again");
        expect(text(entries[1]!.value)).toBe(`${partition}:2`);
      }
      expect(await collect(engine.partitions())).toEqual([...partitions].sort());
    } finally {
      await engine.close();
    }
  });

  it("sends a batch again when the slot of its partition moved to another master", async () => {
    const { prefix, url } = fresh("moved");
    const engine = await factory.open(url);
    const layout = keyLayout(prefix);
    const slot = keySlot(layout.keys("moving"));
    const from = ownerOf(layout.keys("moving"));
    const to = admin.nodes("master").find((n) => `${n.options.host}:${n.options.port}` !== from)!;
    const idOf = async (node: Redis) => String(await node.cluster("MYID"));
    const move = async (source: Redis, target: Redis) => {
      // The slot is empty, so moving it is the documented procedure without MIGRATE.
      const [sourceId, targetId] = [await idOf(source), await idOf(target)];
      await target.cluster("SETSLOT", slot, "IMPORTING", sourceId);
      await source.cluster("SETSLOT", slot, "MIGRATING", targetId);
      for (const node of [target, source, ...admin.nodes("master")])
        await node.cluster("SETSLOT", slot, "NODE", targetId);
    };
    try {
      await engine.set("stays", "k", utf8("v"));
      // The engine learned the slot map when it connected; the slot moves behind its back.
      await move(master(from), to);
      await engine.writeBatch(
        Array.from({ length: 3000 }, (_, i) => ({ partition: "moving", key: `k${i}`, value: utf8(`${i}`) })),
      );
      expect(await to.zcard(layout.keys("moving"))).toBe(3000);
      expect((await collect(engine.scan("moving"))).length).toBe(3000);
      expect(await collect(engine.partitions())).toEqual(["moving", "stays"]);
      await engine.writeBatch(
        Array.from({ length: 3000 }, (_, i) => ({ partition: "moving", key: `k${i}`, value: null })),
      );
      expect(await to.exists(layout.keys("moving"), layout.values("moving"))).toBe(0);
    } finally {
      await engine.close();
      // Empty again: the slot goes back where it was.
      const target = master(from);
      const source = admin
        .nodes("master")
        .find((n) => `${n.options.host}:${n.options.port}` === ownerOf(layout.keys("moving")));
      if (source && source !== target) await move(source, target);
      await new Promise<void>((resolve) => admin.refreshSlotsCache(() => resolve()));
    }
  });

  it("refuses a prefix holding another application's key on any master, and leaves it alone", async () => {
    for (const node of admin.nodes("master")) {
      const hostPort = `${node.options.host}:${node.options.port}`;
      const { prefix, url } = fresh("foreign");
      const key = keyOn(prefix, hostPort);
      await node.set(key, "someone else's");
      const error = await expectCode(factory.open(url), "PRECONDITION_FAILED");
      expect(error.message).toContain(JSON.stringify(key));
      expect(await keysUnder(prefix)).toEqual([key]);
      expect(await node.get(key)).toBe("someone else's");
    }
  });

  it("never lists, changes or deletes keys under its prefix that it did not write", async () => {
    const { prefix, url } = fresh("mixed");
    const engine = await factory.open(url);
    try {
      await engine.set("p", "k", utf8("v"));
      const others = admin.nodes("master").map((n) => keyOn(prefix, `${n.options.host}:${n.options.port}`));
      for (const key of others) await admin.set(key, "x");
      await admin.zadd(`${prefix}{zz}k`, 0, "not cairn's");
      expect(await collect(engine.partitions())).toEqual(["p"]);
      await engine.writeBatch([{ partition: "p", key: "k", value: null }]);
      expect(await collect(engine.partitions())).toEqual([]);
      for (const key of others) expect(await admin.get(key)).toBe("x");
      expect(await admin.zrange(`${prefix}{zz}k`, 0, -1)).toEqual(["not cairn's"]);
    } finally {
      await engine.close();
    }
  });

  it("removes what it wrote when its prefix is cleared on every master", async () => {
    const { prefix, url } = fresh("clear");
    const engine = await factory.open(url);
    await engine.writeBatch(
      Array.from({ length: 20 }, (_, i) => ({ partition: `p${i}`, key: "k", value: utf8("v") })),
    );
    await engine.close();
    expect((await keysUnder(prefix)).length).toBe(2 * 20 + 3);
    expect(await removeClusterKeys(admin, prefix)).toBe(2 * 20 + 3);
    expect(await keysUnder(prefix)).toEqual([]);
  });
});

describe("redis engine on a cluster: errors", () => {
  it("fails in seconds with UNAVAILABLE naming the URL when no seed node answers", async () => {
    const [a, b] = [await freePort(), await freePort()];
    const url = `redis://:hunter2@127.0.0.1:${a},127.0.0.1:${b}/0?connectTimeout=2000`;
    const started = Date.now();
    const error = await expectCode(factory.open(url), "UNAVAILABLE");
    expect(Date.now() - started).toBeLessThan(5000);
    expect(error.message).toContain(`redis://:***@127.0.0.1:${a},127.0.0.1:${b}/0`);
    expect(error.message).toMatch(/ECONNREFUSED/);
    expect(error.message).not.toContain("hunter2");
    expect(error.message.split("\n")).toHaveLength(1);
  });

  it("fails in seconds with UNAVAILABLE when the cluster is down (cluster_state:fail)", async () => {
    // A cluster node that holds no slot: its cluster is not ok.
    const node = await startRedisServer({
      args: ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"].concat([
        "--cluster-port",
        String(await freePort()),
      ]),
    });
    try {
      const url = `${node.url}/0?cluster=true&connectTimeout=2000`;
      const started = Date.now();
      const error = await expectCode(factory.open(url), "UNAVAILABLE");
      expect(Date.now() - started).toBeLessThan(5000);
      expect(error.message).toContain(url);
      expect(error.message).toContain("cluster_state:fail");
      expect(error.message.split("\n")).toHaveLength(1);
    } finally {
      await node.stop();
    }
  });

  it("fails in seconds with UNAVAILABLE when a master stops, and at once when every node has stopped", async () => {
    const cluster = await startRedisCluster();
    const url = `${cluster.url}/0?prefix=${encodeURIComponent(`${runPrefix}down:`)}`;
    const engine = await factory.open(url);
    const look = await clusterClient(cluster.url);
    try {
      const names = Array.from({ length: 12 }, (_, i) => `p${i}`);
      await engine.writeBatch(names.map((partition) => ({ partition, key: "k", value: utf8(partition) })));
      const stopped = cluster.ports[1]!;
      const node = new Redis(stopped, "127.0.0.1", { lazyConnect: true, retryStrategy: () => null });
      node.on("error", () => {});
      // The server closes the connection instead of answering.
      await node.call("SHUTDOWN", "NOSAVE").catch(() => {});
      node.disconnect();
      const lost = names.filter((name) => ownerPort(look, engine, name) === stopped);
      expect(lost.length).toBeGreaterThan(0);
      // The other masters' partitions are still there.
      for (const name of names.filter((name) => !lost.includes(name)))
        expect(text(await engine.get(name, "k"))).toBe(name);
      let started = Date.now();
      const error = await expectCode(engine.get(lost[0]!, "k"), "UNAVAILABLE");
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(error.message).toContain(url);
      expect(error.message.split("\n")).toHaveLength(1);
      started = Date.now();
      await expectCode(
        engine.writeBatch(names.map((partition) => ({ partition, key: "k2", value: utf8("v") }))),
        "UNAVAILABLE",
      );
      expect(Date.now() - started).toBeLessThan(10_000);
      await cluster.stop();
      started = Date.now();
      const down = await expectCode(engine.get(names[0]!, "k"), "UNAVAILABLE");
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(down.message).toContain(url);
      expect(down.message.split("\n")).toHaveLength(1);
    } finally {
      await engine.close();
      look.disconnect();
      await cluster.stop();
    }
  });

  it("refuses credentials the cluster does not take with PERMISSION_DENIED, the password hidden", async () => {
    const hosts = base.replace(/^redis:\/\//, "");
    for (const url of [`redis://:hunter2@${hosts}/0`, `redis://nobody:hunter2@${hosts}/0`]) {
      const error = await expectCode(factory.open(url), "PERMISSION_DENIED");
      expect(error.message).toContain("***@");
      expect(error.message).not.toContain("hunter2");
      expect(error.message.split("\n")).toHaveLength(1);
    }
  });

  it("says to open a cluster node as a cluster, and a single server without ?cluster=true", async () => {
    const { prefix } = fresh("modes");
    // A master that does not serve the marker's slot answers MOVED to the engine's first command.
    const elsewhere = admin
      .nodes("master")
      .find((n) => `${n.options.host}:${n.options.port}` !== ownerOf(keyLayout(prefix).meta))!;
    const node = `redis://${elsewhere.options.host}:${elsewhere.options.port}`;
    for (const url of [`${node}/0?prefix=${encodeURIComponent(prefix)}`, `${node}/1`]) {
      const error = await expectCode(factory.open(url), "INVALID_ARGUMENT");
      expect(error.message).toContain("?cluster=true");
      expect(error.message).toContain(url);
    }
    const error = await expectCode(
      factory.open(`${single}/0?cluster=true&prefix=${encodeURIComponent(prefix)}`),
      "INVALID_ARGUMENT",
    );
    expect(error.message).toMatch(/not a node of a Redis Cluster.*cluster support disabled/);
  });

  it("is closed for good after close(): every call rejects with UNAVAILABLE", async () => {
    const { url } = fresh("closed");
    const engine = await factory.open(url);
    await engine.close();
    await engine.close();
    const error = await expectCode(engine.get("p", "k"), "UNAVAILABLE");
    expect(error.message).toContain(engine.location);
    await expectCode(engine.writeBatch([{ partition: "p", key: "k", value: utf8("v") }]), "UNAVAILABLE");
    await expectCode(collect(engine.partitions()), "UNAVAILABLE");
  });
});
