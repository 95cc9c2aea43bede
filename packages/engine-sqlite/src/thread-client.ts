import { Worker } from "node:worker_threads";

interface Reply {
  id: number;
  value?: unknown;
  error?: { message: string; code?: string };
}

/**
 * Requests to one of the engine's threads (thread-serve.js on the other side), answered in the order they are
 * sent: each carries an id, and the thread replies with a value or with the error SQLite gave, which rejects
 * carrying SQLite's `code` (for `mapSqliteError`). Idle, the thread does not keep the process alive; while a
 * request is in flight its reply does. A thread that fails or exits rejects every request in flight and every
 * later one.
 */
export class ThreadClient {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  #next = 0;
  #failure: Error | undefined;
  /** Settles when the last request sent has. */
  #last: Promise<unknown> = Promise.resolve();

  /** Starts `script` with `workerData`; `name` says which thread in the message of an unexpected exit. */
  constructor(script: URL, workerData: unknown, name: string) {
    const worker = new Worker(script, { workerData });
    this.#worker = worker;
    worker.unref();
    worker.on("message", (reply: Reply) => {
      const waiting = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) worker.unref();
      if (!reply.error) return waiting?.resolve(reply.value);
      waiting?.reject(Object.assign(new Error(reply.error.message), { code: reply.error.code }));
    });
    const fail = (error: Error) => {
      this.#failure ??= error;
      for (const waiting of this.#pending.values()) waiting.reject(error);
      this.#pending.clear();
    };
    worker.on("error", fail);
    worker.on("exit", (code) => fail(new Error(`The SQLite ${name} thread exited (status ${code}).`)));
  }

  /**
   * The reply to the message with id `id` that the thread sends of its own accord (a thread saying it is ready
   * is `-1`); rejects when the thread fails first.
   */
  replyTo<T>(id: number): Promise<T> {
    return this.#expect<T>(id);
  }

  /** Sends `message` (given an id here), moving the buffers of `transfer` to the thread; resolves with its reply. */
  ask<T>(message: object, transfer: ArrayBuffer[] = []): Promise<T> {
    const id = this.#next++;
    const replied = this.#expect<T>(id);
    if (!this.#failure) this.#worker.postMessage({ ...message, id }, transfer);
    this.#last = replied.catch(() => {});
    return replied;
  }

  #expect<T>(id: number): Promise<T> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.#worker.ref();
    });
  }

  /**
   * Waits for the requests in flight (whatever their outcome), then asks `message`, which the thread answers as
   * its last, and resolves once the thread has exited. A thread that failed is terminated instead.
   */
  async end(message: object): Promise<void> {
    await this.#last;
    if (this.#failure) return void (await this.#worker.terminate());
    const exited = new Promise<void>((resolve) => this.#worker.once("exit", () => resolve()));
    try {
      await this.ask(message);
    } finally {
      // Referenced until it exits: the caller awaits that, and an idle thread would not keep the process alive.
      this.#worker.ref();
      await exited;
    }
  }

  /** Stops the thread at once. */
  async terminate(): Promise<void> {
    await this.#worker.terminate();
  }
}
