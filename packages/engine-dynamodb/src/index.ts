export * from "./dynamodb-engine.js";
export * from "./factory.js";
