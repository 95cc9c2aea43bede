export * from "./factory.js";
export * from "./s3-store.js";
export { formatS3Url, parseS3Url } from "./url.js";
