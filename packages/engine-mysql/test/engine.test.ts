import { describeEngine } from "@cairn/testkit";
import { inject } from "vitest";
import { factory } from "../src/index.js";

// The conformance suite against the run's own database; every test opens its own connections.
const url = `${inject("mysqlServer")}${inject("mysqlDatabase")}`;

describeEngine("mysql", { open: () => factory.open(url) });
