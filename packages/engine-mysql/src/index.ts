export * from "./factory.js";
export * from "./mysql-engine.js";
