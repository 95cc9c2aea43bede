import { inject } from "vitest";
import { describeRedisRepository } from "./repository-suite.js";

await describeRedisRepository("redis × fs", inject("redisUrl"));
