export * from "./factory.js";
export { keyLayout, partitionTag } from "./layout.js";
export * from "./redis-engine.js";
