export * from "./azure-store.js";
export { AzureServiceError } from "./errors.js";
export * from "./factory.js";
