export * from "./factory.js";
export * from "./sqlite-engine.js";
