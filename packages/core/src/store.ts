import type { Readable } from "node:stream";
import { InvalidArgumentError } from "./errors.js";

/**
 * The object store contract. Keys are relative to the store's root (the URL's path or prefix), are
 * non-empty, use `/` as separator, and never start with `/`. Implementations must pass `describeStore` of
 * `@cairn/testkit`.
 */
export interface ObjectStore {
  /** Short name of the store kind, e.g. `"fs"`. */
  readonly kind: string;
  /** The store's URL with any password or key removed, for messages. */
  readonly url: string;

  /**
   * Writes the object at `key` from `body`, streaming. The object becomes visible whole or not at all: a
   * reader never sees a partial object, and a failed or aborted put leaves no object behind. With
   * `createOnly` it fails with `ALREADY_EXISTS` when `key` exists, and never overwrites it.
   */
  put(key: string, body: PutBody, options?: PutOptions): Promise<ObjectInfo>;

  /** A stream of the object's bytes (or of `range`); `NOT_FOUND` when absent. */
  get(key: string, options?: GetOptions): Promise<ObjectReader>;

  /** Size and etag of `key`, or `undefined` when absent. */
  head(key: string): Promise<ObjectInfo | undefined>;

  /**
   * Objects whose key starts with `prefix`, in byte order of key, starting strictly after `after`. Pages
   * internally. Incomplete uploads are never listed.
   */
  list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo>;

  /** Removes `key`; removing an absent key is not an error. */
  delete(key: string): Promise<void>;

  /**
   * Copies `source` to `target` within this store (server-side where the service can). `NOT_FOUND` when
   * `source` is absent; with `createOnly`, `ALREADY_EXISTS` when `target` exists.
   */
  copy(source: string, target: string, options?: { createOnly?: boolean }): Promise<ObjectInfo>;

  /** Releases clients. Idempotent. */
  close(): Promise<void>;
}

export type PutBody = Uint8Array | Readable | AsyncIterable<Uint8Array>;

export interface PutOptions {
  /** Fail with `ALREADY_EXISTS` instead of overwriting. */
  createOnly?: boolean;
  /** Stored with the object where the service keeps it. */
  contentType?: string;
  /** Length of `body` when known in advance; lets services pick single-part uploads. */
  size?: number;
  /**
   * A fresh stream of the same bytes as `body`, from their start, for when the bytes can be read twice (a
   * file: `() => createReadStream(path)`). A store that sends a body in one request (S3) then retries that
   * request when it fails midway, and can send large bodies whole rather than in buffered parts. Stores that
   * do not need it never call it. Called at most once per retry; each stream it returns is read or destroyed.
   */
  reopen?: () => Readable | AsyncIterable<Uint8Array>;
}

export interface GetOptions {
  /** Bytes `start` .. `end` inclusive; `end` defaults to the last byte. */
  range?: { start: number; end?: number };
  /**
   * `false` when the caller checks the bytes itself against a digest it holds, as reads by content address do:
   * the store then skips a check of its own (S3's MD5 of a whole object's ETag), which would only hash every
   * byte a second time. A store that re-reads an object whose bytes changed while they were read (S3 on a
   * service that overwrites in place) no longer does then, so pass it only for keys that are never overwritten.
   * @default true
   */
  verify?: boolean;
}

export interface ObjectInfo {
  key: string;
  size: number;
  /** Opaque version tag of the content, as the service reports it. */
  etag: string;
  lastModified?: Date;
}

export interface ListOptions {
  after?: string;
}

export interface ObjectReader extends ObjectInfo {
  /** The bytes. Must be consumed or destroyed. */
  body: Readable;
}

/** `prefix` when it is a string; `INVALID_ARGUMENT` naming the store otherwise. Every store's `list` checks this. */
export function checkListPrefix(prefix: unknown, storeUrl: string): string {
  if (typeof prefix !== "string") {
    throw new InvalidArgumentError(
      `A list prefix must be a string, got ${typeof prefix} (store ${storeUrl}).`,
    );
  }
  return prefix;
}
