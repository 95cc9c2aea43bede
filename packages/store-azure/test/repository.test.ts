import { join } from "node:path";
import { describeRepository, randomName, tempDir } from "@cairn/testkit";
import { newContainer, useAzurite } from "./helpers.js";

// The repository behaviour suite on SQLite metadata and Azure data. useAzurite sets
// AZURE_STORAGE_CONNECTION_STRING in this process, so the suite's worker processes inherit it.
const { endpoint } = useAzurite();
const container = await newContainer(endpoint);
const dir = await tempDir("cairn-azure-repo-");

describeRepository("sqlite × azure", {
  engineUrl: () => `sqlite://${join(dir, randomName("meta"), "meta.db")}`,
  namespaceUrl: () => `azure://${container}/${randomName("ns")}`,
  engineModule: new URL("../node_modules/@cairn/engine-sqlite/dist/index.js", import.meta.url).href,
  storeModule: new URL("../dist/index.js", import.meta.url).href,
});
