import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describeRepository, randomName, tempDir } from "@cairn/testkit";
import { tableUrl } from "./helpers.js";

// The repository behaviour suite on DynamoDB × local folder store. Worker processes reach dynalite through
// the endpoint in the URL, and find credentials in the environment they inherit.
const dir = await tempDir("cairn-dynamodb-repo-");

describeRepository("dynamodb × fs", {
  engineUrl: () => tableUrl("cairn-repo"),
  namespaceUrl: () => pathToFileURL(join(dir, randomName("ns"))).href,
  engineModule: new URL("../dist/index.js", import.meta.url).href,
  storeModule: new URL("../node_modules/@cairn/store-fs/dist/index.js", import.meta.url).href,
});
