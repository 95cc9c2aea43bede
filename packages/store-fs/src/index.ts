export * from "./factory.js";
export * from "./fs-store.js";
