import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describeRepository, randomName, tempDir } from "@cairn/testkit";
import { inject } from "vitest";

// The repository behaviour suite on a Redis Cluster × local folder store; each engine URL has its own prefix.
const dir = await tempDir("cairn-redis-cluster-repo-");
const base = inject("redisClusterUrl");
const runPrefix = inject("runPrefix");

describeRepository("redis cluster × fs", {
  engineUrl: () => `${base}?prefix=${encodeURIComponent(`${runPrefix}${randomName("repo")}:`)}`,
  namespaceUrl: () => pathToFileURL(join(dir, randomName("ns"))).href,
  engineModule: new URL("../dist/index.js", import.meta.url).href,
  storeModule: new URL("../node_modules/@cairn/store-fs/dist/index.js", import.meta.url).href,
});
