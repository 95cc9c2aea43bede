import { randomBytes } from "node:crypto";
import { type RedisClusterServer, startRedisCluster } from "@cairn/testkit/servers";
import { Cluster, Redis } from "ioredis";
import type { TestProject } from "vitest/node";
import { parseRedisUrl } from "../src/index.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** The Redis server the tests use (`REDIS_URL`, default redis://127.0.0.1:6379), without parameters. */
    redisUrl: string;
    /**
     * The Redis Cluster the tests use, as `redis://host1:port1,host2:port2,…` without parameters:
     * `REDIS_CLUSTER_URL`, or a cluster of three `redis-server` processes started for the run.
     */
    redisClusterUrl: string;
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

/** Every key under `prefix` removed from every master of a cluster; returns how many there were. */
export async function removeClusterKeys(cluster: Cluster, prefix: string): Promise<number> {
  let removed = 0;
  for (const node of cluster.nodes("master")) {
    // One UNLINK per key: keys of different slots cannot share a command, even on one node.
    const match = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`;
    let cursor = "0";
    do {
      const [next, keys] = await node.scan(cursor, "MATCH", match, "COUNT", 1000);
      const pipeline = node.pipeline();
      for (const key of keys) pipeline.unlink(key);
      for (const [error, n] of (await pipeline.exec()) ?? []) {
        if (error) throw error;
        removed += Number(n);
      }
      cursor = next;
    } while (cursor !== "0");
  }
  return removed;
}

/** A connected ioredis Cluster for a cluster URL (several hosts, or one with ?cluster=true), for tests to look inside. */
export async function clusterClient(url: string): Promise<Cluster> {
  const { nodes, host, port, username, password, tls } = parseRedisUrl(url);
  const cluster = new Cluster([...(nodes ?? [{ host: host ?? "127.0.0.1", port: port ?? 6379 }])], {
    lazyConnect: true,
    redisOptions: { username, password, ...(tls ? { tls: {} } : {}) },
  });
  await cluster.connect();
  return cluster;
}

// Redis is a server the test command starts (scripts/services.mjs); it is not started here, but a run
// without it fails at once, naming the URL, instead of skipping. The Redis Cluster is started here from the
// redis-server on the PATH, unless REDIS_CLUSTER_URL names one; a missing redis-server fails the run too.
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
  let started: RedisClusterServer | undefined;
  try {
    if (!process.env.REDIS_CLUSTER_URL) started = await startRedisCluster();
  } catch (error) {
    await client.quit();
    throw error;
  }
  const redisClusterUrl = (process.env.REDIS_CLUSTER_URL ?? started!.url).replace(/[?#].*$/, "");
  project.provide("redisUrl", redisUrl.replace(/[?#].*$/, ""));
  project.provide("redisClusterUrl", redisClusterUrl);
  project.provide("runPrefix", runPrefix);
  return async () => {
    try {
      await removeKeys(client, runPrefix);
      // A cluster started here goes with all its keys; one named by REDIS_CLUSTER_URL is shared.
      if (!started) {
        const cluster = await clusterClient(redisClusterUrl);
        try {
          await removeClusterKeys(cluster, runPrefix);
        } finally {
          await cluster.quit();
        }
      }
    } finally {
      await client.quit();
      await started?.stop();
    }
  };
}
