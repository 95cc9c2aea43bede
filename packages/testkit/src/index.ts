export * from "./dump.js";
export * from "./engine-suite.js";
export * from "./helpers.js";
export * from "./repository-suite.js";
export * from "./store-suite.js";
