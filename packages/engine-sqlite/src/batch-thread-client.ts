import { type PackedOps, packOps } from "./batch-ops.js";
import { ThreadClient } from "./thread-client.js";

/**
 * A SQLite engine's writer thread (batch-thread.js): a second connection to the same file that applies large
 * batches, so that the calling thread goes on while SQLite writes — a load reads and checks its next batch in
 * the meantime. Batches are applied in the order they are sent. A batch's promise settles once it is
 * committed, or with the error SQLite gave, carrying SQLite's `code`.
 */
export class BatchThread {
  readonly #thread: ThreadClient;

  constructor(options: { filename: string; busyTimeout: number; synchronous: string }) {
    this.#thread = new ThreadClient(new URL("./batch-thread.js", import.meta.url), options, "writer");
  }

  /** Applies `ops` (encoded and checked) in one transaction on the thread's connection. */
  write(ops: readonly { p: Uint8Array; k: Uint8Array; v: Uint8Array | null }[]): Promise<void> {
    const packed: PackedOps = packOps(ops);
    return this.#thread.ask({ packed }, [
      packed.bytes.buffer as ArrayBuffer,
      packed.index.buffer as ArrayBuffer,
    ]);
  }

  /** Waits for the batches in flight (whatever their outcome), then closes the thread's connection. */
  close(): Promise<void> {
    return this.#thread.end({ close: true });
  }
}
