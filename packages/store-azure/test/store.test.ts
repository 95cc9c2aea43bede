import { describeStore, randomName } from "@cairn/testkit";
import { factory } from "../src/index.js";
import { newContainer, useAzurite } from "./helpers.js";

// Every store of the suite opens a fresh prefix of one container created for this file.
const { endpoint } = useAzurite();
const container = await newContainer(endpoint);

describeStore("azure", {
  open: () => factory.open(`azure://${container}/${randomName("suite")}`),
});
