import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // The repository suite's steps each commit to a SQLite file with `synchronous=full`: a few ms alone, but
    // under the whole workspace's tests at once an fsync has stalled past vitest's default 5 s. Slow is not
    // wrong here; the other engines' suites allow the same.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
