import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describeRepository, randomName, tempDir } from "@cairn/testkit";
import { inject } from "vitest";

// The repository behaviour suite on MySQL × local folder: each engine is a fresh pair of tables in the run's
// database (its own table prefix), so the suite's "fresh, empty engine" costs two CREATE TABLEs.
const dir = await tempDir("cairn-mysql-repo-");
const database = `${inject("mysqlServer")}${inject("mysqlDatabase")}`;

describeRepository("mysql × fs", {
  engineUrl: () => `${database}?prefix=${randomName("r").replaceAll("-", "_")}_`,
  namespaceUrl: () => pathToFileURL(join(dir, randomName("ns"))).href,
  engineModule: new URL("../dist/index.js", import.meta.url).href,
  storeModule: new URL("../node_modules/@cairn/store-fs/dist/index.js", import.meta.url).href,
});
