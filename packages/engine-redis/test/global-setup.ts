import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /** The Redis server the tests use (`REDIS_URL`, default redis://127.0.0.1:6379), without parameters. */
    redisUrl: string;
    /** Start of every key prefix of this run; all keys under it are removed after the run. */
    runPrefix: string;
  }
}

/** Every key under `prefix` removed with SCAN + UNLINK; returns how many there were. */
export async function removeKeys(client: Redis, prefix: string): Promise<number> {
  const match = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`;
  let removed = 0;
  let cursor = "0";
  do {
    const [next, keys] = await client.scan(cursor, "MATCH", match, "COUNT", 1000);
    if (keys.length > 0) removed += await client.unlink(...keys);
    cursor = next;
  } while (cursor !== "0");
  return removed;
}

// Redis is a server the test command starts (scripts/services.mjs); it is not started here, but a run
// without it fails at once, naming the URL, instead of skipping.
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
  const client = new Redis(redisUrl, { lazyConnect: true, retryStrategy: () => null, connectTimeout: 3000 });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.ping();
  } catch (error) {
    client.disconnect();
    throw new Error(
      `Redis is not reachable at ${redisUrl} (${(error as Error).message}); start it with \`node scripts/services.mjs start\` or set REDIS_URL.`,
    );
  }
  const runPrefix = `cairn-test:${Date.now().toString(36)}-${randomBytes(4).toString("hex")}:`;
  project.provide("redisUrl", redisUrl.replace(/[?#].*$/, ""));
  project.provide("runPrefix", runPrefix);
  return async () => {
    try {
      await removeKeys(client, runPrefix);
    } finally {
      await client.quit();
    }
  };
}
