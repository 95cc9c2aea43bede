import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The end-to-end tests run the built binary; this builds it first when it is missing or older than src/.
    globalSetup: ["test/global-setup.ts", "test/emulators.ts"],
    testTimeout: 60_000,
    // The AWS SDK's notice that its 2027 releases need Node 22, printed by every process that loads it.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
    hookTimeout: 300_000,
    // Test files mostly wait for the binaries they run, so three run at once even on two cores.
    maxWorkers: 3,
    minWorkers: 1,
  },
});
