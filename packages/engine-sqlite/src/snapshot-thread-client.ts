import { Worker } from "node:worker_threads";
import type { Page } from "./scan-page.js";

interface Reply {
  id: number;
  value?: unknown;
  error?: { message: string; code?: string };
}

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

/** An error the thread reported, carrying SQLite's `code`, for `mapSqliteError`. */
const thrown = (error: { message: string; code?: string }) =>
  Object.assign(new Error(error.message), { code: error.code });

/**
 * A SQLite snapshot's reader thread (snapshot-thread.js): a connection of its own in a read transaction,
 * answering the snapshot's reads in the order they are asked. Its promises reject with the error SQLite gave,
 * carrying SQLite's `code`.
 */
export class SnapshotThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  #next = 0;
  #failure: Error | undefined;

  private constructor(worker: Worker) {
    this.#worker = worker;
  }

  /** Starts the thread; resolves once its read transaction holds the snapshot. */
  static async open(options: { filename: string; busyTimeout: number }): Promise<SnapshotThread> {
    const worker = new Worker(new URL("./snapshot-thread.js", import.meta.url), { workerData: options });
    const thread = new SnapshotThread(worker);
    const ready = new Promise<unknown>((resolve, reject) => thread.#pending.set(-1, { resolve, reject }));
    worker.on("message", (reply: Reply) => {
      const waiting = thread.#pending.get(reply.id);
      thread.#pending.delete(reply.id);
      // Idle, the thread does not keep the process alive; while a read is in flight its reply does.
      if (thread.#pending.size === 0) worker.unref();
      if (reply.error) waiting?.reject(thrown(reply.error));
      else waiting?.resolve(reply.value);
    });
    const fail = (error: Error) => {
      thread.#failure ??= error;
      for (const waiting of thread.#pending.values()) waiting.reject(error);
      thread.#pending.clear();
    };
    worker.on("error", fail);
    worker.on("exit", (code) => fail(new Error(`The SQLite snapshot thread exited (status ${code}).`)));
    try {
      await ready;
    } catch (error) {
      await worker.terminate();
      throw error;
    }
    return thread;
  }

  #ask<T>(request: Request): Promise<T> {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.#worker.ref();
      this.#worker.postMessage({ id, ...request });
    });
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
  async release(): Promise<void> {
    if (this.#failure) return void (await this.#worker.terminate());
    const exited = new Promise<void>((resolve) => this.#worker.once("exit", () => resolve()));
    try {
      await this.#ask({ op: "release" });
    } finally {
      // Referenced until it exits: the caller awaits that, and an idle thread would not keep the process alive.
      this.#worker.ref();
      await exited;
    }
  }
}
