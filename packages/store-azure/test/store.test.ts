import { describeStore, randomName } from "@cairn/testkit";
import { factory } from "../src/index.js";
import { newContainer, useAzurite } from "./helpers.js";

// Every store of the suite opens a fresh prefix of one container created for this file.
const { endpoint } = useAzurite();
const container = await newContainer(endpoint);

describeStore("azure", {
  open: () => factory.open(`azure://${container}/${randomName("suite")}`),
  // Azurite answers some 60–100 requests a second on two busy cores; the 1,500-key listing tests write that many.
  timeout: 180_000,
});
