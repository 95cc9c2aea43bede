import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Cairn, ENGINE_DUMP_SCHEMAS, loadEngine, type MetadataEngine } from "@cairn/core";
import { readDump } from "@cairn/manifest";
import { factory as folder } from "@cairn/store-fs";
import { collect, dumpToBytes, randomName, tempDir } from "@cairn/testkit";
import { describe, expect, inject, it, onTestFinished } from "vitest";
import { factory } from "../src/index.js";

const dir = await tempDir("cairn-mysql-dump-");
const database = `${inject("mysqlServer")}${inject("mysqlDatabase")}`;

/** A fresh engine on tables of its own, closed after the test. */
async function engine(): Promise<MetadataEngine> {
  const e = await factory.open(`${database}?prefix=${randomName("d").replaceAll("-", "_")}_`);
  onTestFinished(() => e.close());
  return e;
}

describe("dump and load of a MySQL engine", () => {
  it("round-trips a repository with branches, tags, commits and uncommitted changes", async () => {
    const source = await engine();
    const cairn = new Cairn({ engine: source, openStore: (u) => folder.open(u) });
    const repo = await cairn.createRepository({
      name: "photos",
      namespace: pathToFileURL(join(dir, randomName("ns"))).href,
    });
    await repo.upload("main", "a/one.txt", Buffer.from("one"), { metadata: { by: "test" } });
    await repo.upload("main", `long/${"é".repeat(490)}.txt`, Buffer.from("the longest path allowed, nearly"));
    await repo.commit("main", { message: "first" });
    await repo.createBranch("dev", "main");
    await repo.upload("dev", "b/two.txt", Buffer.from("two"));
    await repo.commit("dev", { message: "second" });
    await repo.createTag("v1", "dev");
    await repo.upload("main", "uncommitted.txt", Buffer.from("staged"));
    await cairn.close();

    const first = await dumpToBytes(source);
    expect(first.records.some((r) => r.type === "commit")).toBe(true);
    const target = await engine();
    await loadEngine(target, readDump([first.bytes], { schemas: ENGINE_DUMP_SCHEMAS }));
    const second = await dumpToBytes(target);
    expect(second.records).toEqual(first.records);

    const restored = await new Cairn({ engine: target, openStore: (u) => folder.open(u) }).repository(
      "photos",
    );
    expect((await collect(restored.walk("main"))).map((e) => e.path)).toEqual([
      "a/one.txt",
      `long/${"é".repeat(490)}.txt`,
      "uncommitted.txt",
    ]);
    expect((await collect(restored.listTags())).map((t) => t.name)).toEqual(["v1"]);
  });
});
