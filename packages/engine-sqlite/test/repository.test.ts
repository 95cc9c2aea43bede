import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describeRepository, randomName, tempDir } from "@cairn/testkit";

// The repository behaviour suite on the embedded default pair: SQLite engine × local folder store.
const dir = await tempDir("cairn-sqlite-repo-");

describeRepository("sqlite × fs", {
  engineUrl: () => `sqlite://${join(dir, randomName("meta"), "meta.db")}`,
  namespaceUrl: () => pathToFileURL(join(dir, randomName("ns"))).href,
  engineModule: new URL("../dist/index.js", import.meta.url).href,
  storeModule: new URL("../node_modules/@cairn/store-fs/dist/index.js", import.meta.url).href,
});
