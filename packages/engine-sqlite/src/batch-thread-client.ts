import { Worker } from "node:worker_threads";
import { type PackedOps, packOps } from "./batch-ops.js";

interface Reply {
  id: number;
  error?: { message: string; code?: string };
}

/**
 * A SQLite engine's writer thread (batch-thread.js): a second connection to the same file that applies large
 * batches, so that the calling thread goes on while SQLite writes — a load reads and checks its next batch in
 * the meantime. Batches are applied in the order they are sent. A batch's promise settles once it is
 * committed, or with the error SQLite gave, carrying SQLite's `code`.
 */
export class BatchThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve(): void; reject(error: Error): void }>();
  #next = 0;
  #failure: Error | undefined;
  /** Settles when the last batch sent has. */
  #last: Promise<void> = Promise.resolve();

  constructor(options: { filename: string; busyTimeout: number; synchronous: string }) {
    this.#worker = new Worker(new URL("./batch-thread.js", import.meta.url), { workerData: options });
    // Idle, the thread does not keep the process alive; while a batch is in flight its reply does.
    this.#worker.unref();
    this.#worker.on("message", (reply: Reply) => {
      const waiting = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) this.#worker.unref();
      if (!reply.error) return waiting?.resolve();
      waiting?.reject(Object.assign(new Error(reply.error.message), { code: reply.error.code }));
    });
    const fail = (error: Error) => {
      this.#failure ??= error;
      for (const waiting of this.#pending.values()) waiting.reject(error);
      this.#pending.clear();
    };
    this.#worker.on("error", fail);
    this.#worker.on("exit", (code) => fail(new Error(`The SQLite writer thread exited (status ${code}).`)));
  }

  /** Applies `ops` (encoded and checked) in one transaction on the thread's connection. */
  write(ops: readonly { p: Uint8Array; k: Uint8Array; v: Uint8Array | null }[]): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    const packed: PackedOps = packOps(ops);
    const id = this.#next++;
    const written = new Promise<void>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.ref();
      this.#worker.postMessage({ id, packed }, [
        packed.bytes.buffer as ArrayBuffer,
        packed.index.buffer as ArrayBuffer,
      ]);
    });
    this.#last = written.catch(() => {});
    return written;
  }

  /** Waits for the batches in flight (whatever their outcome), then closes the thread's connection. */
  async close(): Promise<void> {
    // The thread applies batches in the order they came, so the last one settles after all the others.
    await this.#last;
    if (this.#failure) return void (await this.#worker.terminate());
    const exited = new Promise<void>((resolve) => this.#worker.once("exit", () => resolve()));
    // Referenced until it exits: the caller awaits that, and an idle thread would not keep the process alive.
    this.#worker.ref();
    this.#worker.postMessage({ close: true });
    await exited;
  }
}
