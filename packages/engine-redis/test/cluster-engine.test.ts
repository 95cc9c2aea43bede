import { describeEngine } from "@cairn/testkit";
import { inject } from "vitest";
import { factory } from "../src/index.js";

// The conformance suite on a Redis Cluster of three masters, reached through the URL form that lists them all.
// Partitions are spread over the masters by hash slot; every connection of the suite opens the same prefix.
const url = `${inject("redisClusterUrl")}?prefix=${encodeURIComponent(`${inject("runPrefix")}conformance:`)}`;

describeEngine("redis cluster", { open: () => factory.open(url) });
