import type { Page } from "./scan-page.js";
import { ThreadClient } from "./thread-client.js";

type Request =
  | {
      op: "page";
      partition: Uint8Array;
      lower: Uint8Array | undefined;
      inclusive: boolean;
      upper: Uint8Array | undefined;
      want: number;
    }
  | { op: "get"; partition: Uint8Array; key: Uint8Array }
  | { op: "partitionAfter"; after: Uint8Array | undefined }
  | { op: "release" };

/**
 * A SQLite snapshot's reader thread (snapshot-thread.js): a connection of its own in a read transaction,
 * answering the snapshot's reads in the order they are asked. Its promises reject with the error SQLite gave,
 * carrying SQLite's `code`.
 */
export class SnapshotThread {
  readonly #thread: ThreadClient;

  private constructor(thread: ThreadClient) {
    this.#thread = thread;
  }

  /** Starts the thread; resolves once its read transaction holds the snapshot. */
  static async open(options: { filename: string; busyTimeout: number }): Promise<SnapshotThread> {
    const thread = new ThreadClient(new URL("./snapshot-thread.js", import.meta.url), options, "snapshot");
    try {
      await thread.replyTo(-1);
    } catch (error) {
      await thread.terminate();
      throw error;
    }
    return new SnapshotThread(thread);
  }

  #ask<T>(request: Request): Promise<T> {
    return this.#thread.ask<T>(request);
  }

  page(
    partition: Uint8Array,
    lower: Uint8Array | undefined,
    inclusive: boolean,
    upper: Uint8Array | undefined,
    want: number,
  ): Promise<Page> {
    return this.#ask({ op: "page", partition, lower, inclusive, upper, want });
  }

  get(partition: Uint8Array, key: Uint8Array): Promise<Uint8Array | undefined> {
    return this.#ask({ op: "get", partition, key });
  }

  /** The first partition after `after` (or the first of all), as its bytes. */
  partitionAfter(after: Uint8Array | undefined): Promise<Uint8Array | undefined> {
    return this.#ask({ op: "partitionAfter", after });
  }

  /** Ends the read transaction and the thread, once the reads asked before are answered. */
  release(): Promise<void> {
    return this.#thread.end({ op: "release" });
  }
}
