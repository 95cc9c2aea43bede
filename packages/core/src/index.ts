export * from "./engine.js";
export * from "./errors.js";
export * from "./registry.js";
export * from "./store.js";
export * from "./url.js";
