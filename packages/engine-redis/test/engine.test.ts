import { describeEngine } from "@cairn/testkit";
import { inject } from "vitest";
import { factory } from "../src/index.js";

// Every connection of the suite opens the same prefix: the suite uses fresh random partitions in each test.
const url = `${inject("redisUrl")}?prefix=${encodeURIComponent(`${inject("runPrefix")}conformance:`)}`;

describeEngine("redis", { open: () => factory.open(url) });
