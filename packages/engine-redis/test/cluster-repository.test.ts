import { inject } from "vitest";
import { describeRedisRepository } from "./repository-suite.js";

// The same suite on a Redis Cluster.
await describeRedisRepository("redis cluster × fs", inject("redisClusterUrl"));
