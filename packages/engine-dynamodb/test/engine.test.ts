import { describeEngine } from "@cairn/testkit";
import { factory } from "../src/index.js";
import { tableUrl } from "./helpers.js";

// Every connection of the suite opens the same table of this run through the real URL path.
const url = tableUrl("cairn-conformance");

describeEngine("dynamodb", { open: () => factory.open(url), timeout: 60_000 });
