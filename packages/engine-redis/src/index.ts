export * from "./factory.js";
export { keyLayout, keySlot, partitionTag } from "./layout.js";
export * from "./redis-engine.js";
