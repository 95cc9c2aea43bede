import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Cairn, ENGINE_DUMP_SCHEMAS, loadEngine } from "@cairn/core";
import { readDump } from "@cairn/manifest";
import { factory as folder } from "@cairn/store-fs";
import { collect, dumpToBytes, randomName, tempDir } from "@cairn/testkit";
import { describe, expect, inject, it } from "vitest";
import { factory } from "../src/index.js";

const dir = await tempDir("cairn-redis-dump-");
const SERVERS = { server: inject("redisUrl"), cluster: inject("redisClusterUrl") };
const open = (on: keyof typeof SERVERS) =>
  factory.open(`${SERVERS[on]}?prefix=${encodeURIComponent(`${inject("runPrefix")}${randomName("dump")}:`)}`);

describe("dump and load of a Redis engine", () => {
  // A dump of a server loaded into a server, of a cluster into a cluster, and across: dump | load migrates.
  it.each([
    ["a server", "a server", "server", "server"],
    ["a cluster", "a cluster", "cluster", "cluster"],
    ["a server", "a cluster", "server", "cluster"],
    ["a cluster", "a server", "cluster", "server"],
  ] as const)(
    "round-trips repositories from %s to %s: the dump of the loaded engine equals the first, and the repository reads the same",
    async (_from, _to, from, to) => {
      const source = await open(from);
      const target = await open(to);
      try {
        const cairn = new Cairn({ engine: source, openStore: (u) => folder.open(u) });
        const repo = await cairn.createRepository({
          name: "photos",
          namespace: pathToFileURL(join(dir, randomName("ns"))).href,
        });
        await repo.upload("main", "a.txt", Buffer.from("one"));
        await repo.upload("main", "dir/😀.txt", Buffer.from("smile"), { metadata: { k: "v" } });
        await repo.commit("main", { message: "first" });
        await repo.createBranch("dev", "main");
        await repo.upload("dev", "b.txt", Buffer.from("two"));
        await repo.createTag("v1", "main");
        await cairn.close();

        const first = await dumpToBytes(source);
        expect(first.bytes.toString("utf8").split("\n", 1)[0]).toContain('"none"');
        await loadEngine(target, readDump([first.bytes], { schemas: ENGINE_DUMP_SCHEMAS }));
        const second = await dumpToBytes(target);
        expect(second.records).toEqual(first.records);

        const loaded = new Cairn({ engine: target, openStore: (u) => folder.open(u) });
        const again = await loaded.repository("photos");
        expect((await collect(again.listBranches())).map((b) => b.name)).toEqual(["dev", "main"]);
        expect((await collect(again.walk("main"))).map((e) => e.path)).toEqual(["a.txt", "dir/😀.txt"]);
        expect((await collect(again.diffUncommitted("dev"))).map((d) => d.path)).toEqual(["b.txt"]);
        await loaded.close();
      } finally {
        await source.close();
        await target.close();
      }
    },
  );
});
