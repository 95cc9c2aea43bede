import type { StoreFactory } from "@cairn/core";
import { createS3Store, type S3Store } from "./s3-store.js";
import { parseS3Url } from "./url.js";

/** A {@link StoreFactory} whose stores are typed as {@link S3Store}. */
export interface S3StoreFactory extends StoreFactory {
  open(url: string): Promise<S3Store>;
}

/**
 * Opens S3 stores from `s3:` URLs; see {@link parseS3Url}. Credentials come from the AWS credential chain.
 * Opening makes no request: a missing bucket or wrong credentials show on the first call.
 */
export const factory: S3StoreFactory = Object.freeze({
  schemes: Object.freeze(["s3"]),
  async open(url: string): Promise<S3Store> {
    return createS3Store(parseS3Url(url));
  },
});
