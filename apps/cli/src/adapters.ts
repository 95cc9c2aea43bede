import { Registry } from "@cairn/core";

/**
 * The URL scheme → package table of the command line. Each adapter is imported only when a URL names its
 * scheme, so a command loads one engine and the stores it touches, nothing else. A new engine or store is
 * one line here plus a dependency in package.json, e.g.
 * `.addEngine(["redis", "rediss"], async () => (await import("@cairn/engine-redis")).factory)`.
 */
export function createRegistry(): Registry {
  return new Registry()
    .addEngine(["sqlite"], async () => (await import("@cairn/engine-sqlite")).factory)
    .addEngine(["redis", "rediss"], async () => (await import("@cairn/engine-redis")).factory)
    .addEngine(["mysql"], async () => (await import("@cairn/engine-mysql")).factory)
    .addEngine(["dynamodb"], async () => (await import("@cairn/engine-dynamodb")).factory)
    .addStore(["file"], async () => (await import("@cairn/store-fs")).factory)
    .addStore(["s3"], async () => (await import("@cairn/store-s3")).factory)
    .addStore(["azure", "https"], async () => (await import("@cairn/store-azure")).factory);
}
