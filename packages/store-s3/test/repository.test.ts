import { join } from "node:path";
import { describeRepository, randomName, tempDir } from "@cairn/testkit";
import { inject } from "vitest";
import { newBucket } from "./helpers.js";

// The repository behaviour suite with the embedded SQLite engine and this store on s3rver. Worker processes
// load the built modules, and take the credentials from the environment vitest sets (vitest.config.ts).
const endpoint = inject("s3RepositoryEndpoint");
const bucket = await newBucket(endpoint);
const dir = await tempDir("cairn-s3-repo-");

describeRepository("sqlite × s3 (s3rver)", {
  engineUrl: () => `sqlite://${join(dir, randomName("meta"), "meta.db")}`,
  namespaceUrl: () => `s3://${bucket}/${randomName("ns")}?endpoint=${endpoint}`,
  engineModule: new URL("../node_modules/@cairn/engine-sqlite/dist/index.js", import.meta.url).href,
  storeModule: new URL("../dist/index.js", import.meta.url).href,
});
