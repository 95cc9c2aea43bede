import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describeRepository, randomName, tempDir } from "@cairn/testkit";
import { inject } from "vitest";

/**
 * The repository behaviour suite on Redis (`base`, a server's or a cluster's URL) × local folder store. Every
 * engine URL gets its own key prefix under this run's prefix, which the global teardown removes.
 */
export async function describeRedisRepository(name: string, base: string): Promise<void> {
  const dir = await tempDir("cairn-redis-repo-");
  const runPrefix = inject("runPrefix");
  describeRepository(name, {
    engineUrl: () => `${base}?prefix=${encodeURIComponent(`${runPrefix}${randomName("repo")}:`)}`,
    namespaceUrl: () => pathToFileURL(join(dir, randomName("ns"))).href,
    engineModule: new URL("../dist/index.js", import.meta.url).href,
    storeModule: new URL("../node_modules/@cairn/store-fs/dist/index.js", import.meta.url).href,
  });
}
