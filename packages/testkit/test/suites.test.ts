import { afterAll, expect } from "vitest";
import { describeEngine, describeStore } from "../src/index.js";
import { memoryEngine } from "./memory-engine.js";
import { openMemoryStore } from "./memory-store.js";

// The suites run against minimal reference implementations, so a failure here is a bug in the suite itself.
const engine = memoryEngine();
describeEngine("memory reference", { open: engine.open });
describeStore("memory reference", { open: openMemoryStore });

afterAll(() => {
  // The engine suite empties every partition it used, so a shared database does not grow run after run.
  expect(engine.partitionCount()).toBe(0);
});
