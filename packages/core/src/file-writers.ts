import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { OpenSpec, ThreadError, WriterReply, WriterRequest } from "./file-writer-thread.js";

/**
 * The size of the buffers that carry bytes to a writing thread, each filled here and moved there (one message per
 * MiB, or per file for smaller files), then moved back to be filled again: no buffer is allocated per file or
 * per write once the pool has its own. A file has at most two of them with the thread and one being filled.
 */
const BATCH = 1024 * 1024;
const IN_FLIGHT = 2;
/** Buffers kept for reuse: enough for 16 files at once. */
const SPARE = 48;

export interface WriteFileOptions {
  /** The digest to compute of the bytes, an algorithm `crypto.createHash` takes (`sha256`, `md5`). */
  algorithm?: string;
  /**
   * A file to write the bytes to first, in the same file system as the target: it is renamed to the target only
   * once it is whole (and matches `check`), so the target is either left as it was or replaced whole.
   */
  temp?: string;
  /** Fail with `EEXIST` if the file written (`temp` when given) exists already. */
  exclusive?: boolean;
  /**
   * What the bytes must be. When they are not, the file written is removed (the target stays as it was) and the
   * write fails with `mismatch(size, digest)`.
   */
  check?: { size: number; digest?: string; mismatch: (size: number, digest: string | undefined) => Error };
}

export interface WrittenFile {
  size: number;
  /** The hex digest of the bytes, with `algorithm`. */
  digest?: string;
}

interface Thread {
  worker: Worker;
  /** Files being written by it. */
  load: number;
  /** It failed or exited: its files failed with it. */
  stopped: boolean;
}

interface Pending {
  thread: Thread;
  /** Written bytes acknowledged, file finished, or failure; whichever comes. */
  onReply: (reply: WriterReply) => void;
}

/**
 * Writes files on threads of their own: each file's bytes are gathered here into batches of 1 MiB, moved to a
 * writing thread, and hashed, written, closed and renamed there with synchronous calls.
 *
 * Downloads are why. On the main thread, a file written through Node's `FileHandle` costs a round trip to libuv's
 * thread pool for each open, write, close and rename, and hashing its bytes takes the thread that also reads the
 * network: on a CPU without SHA instructions, SHA-256 runs at ~230 MB/s, more than a download's whole budget.
 * Here the thread that reads the network only gathers and posts bytes, and the hashing of several files runs on
 * several cores.
 *
 * Threads start when first needed, up to `threads` (default: the machine's cores, at most 4); a file goes to a
 * thread with nothing to do, else to the least busy one. Idle threads do not keep the process alive. On any
 * failure (the body's, a write's, a check's) the file written is removed before `write` rejects.
 */
export class FileWriterPool {
  readonly #limit: number;
  readonly #threads: Thread[] = [];
  readonly #pending = new Map<number, Pending>();
  /** Buffers back from the threads, to fill again. */
  readonly #spare: Uint8Array<ArrayBuffer>[] = [];
  #nextId = 0;
  #closed = false;

  constructor(options: { threads?: number } = {}) {
    this.#limit = Math.max(1, options.threads ?? Math.min(4, availableParallelism()));
  }

  /** Writes the bytes of `body` to `path` (through `options.temp` when given); resolves once the file is in place. */
  async write(
    path: string,
    body: AsyncIterable<Uint8Array>,
    options: WriteFileOptions = {},
  ): Promise<WrittenFile> {
    if (this.#closed) throw new Error("This FileWriterPool is closed.");
    const { check } = options;
    const id = this.#nextId++;
    const thread = this.#pick();
    let failure: { error: Error } | undefined;
    let finished: { size: number; digest: string | undefined; placed: boolean } | undefined;
    /** The thread is done with the file: it finished it, failed it or dropped it. */
    let settled = false;
    /** Buffers with the thread. */
    let unwritten = 0;
    let wake: (() => void) | undefined;
    const until = async (ready: () => boolean) => {
      while (!ready()) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    };
    this.#pending.set(id, {
      thread,
      onReply: (reply) => {
        if ("written" in reply) unwritten--;
        else if ("done" in reply) {
          finished = reply.done;
          settled = true;
        } else if ("error" in reply) {
          failure ??= { error: errorFromThread(reply.error) };
          settled = true;
          // The thread has removed the file and drops its later messages until told the file is over.
          if (!thread.stopped) thread.worker.postMessage({ id, abort: true } satisfies WriterRequest);
        } else settled = true;
        wake?.();
        wake = undefined;
      },
    });
    this.#use(thread, 1);
    let open: OpenSpec | undefined = {
      path: options.temp ?? path,
      exclusive: options.exclusive ?? false,
      algorithm: options.algorithm,
      renameTo: options.temp !== undefined ? path : undefined,
      expected: check ? { size: check.size, digest: check.digest } : undefined,
    };
    const send = (buffer: Uint8Array<ArrayBuffer>, length: number, end: boolean) => {
      const request: WriterRequest = {
        id,
        buffer: buffer.buffer,
        length,
        ...(open ? { open } : {}),
        ...(end ? { end } : {}),
      };
      open = undefined;
      unwritten++;
      thread.worker.postMessage(request, [buffer.buffer]);
    };
    // The bytes are copied into a buffer of the pool's own, moved to the thread: the body's chunks may share
    // theirs (Node's pool, a socket's read buffer), and the caller may still hold them.
    let buffer: Uint8Array<ArrayBuffer> | undefined;
    let filled = 0;
    try {
      try {
        for await (const chunk of body) {
          if (failure) break;
          for (let at = 0; at < chunk.length; ) {
            buffer ??= this.#spare.pop() ?? new Uint8Array(BATCH);
            const n = Math.min(BATCH - filled, chunk.length - at);
            buffer.set(at === 0 && n === chunk.length ? chunk : chunk.subarray(at, at + n), filled);
            filled += n;
            at += n;
            if (filled === BATCH) {
              send(buffer, filled, false);
              buffer = undefined;
              filled = 0;
              await until(() => unwritten < IN_FLIGHT || failure !== undefined);
              if (failure) break;
            }
          }
        }
      } catch (error) {
        failure ??= { error: error as Error };
        // Bytes were sent: the thread removes what it wrote before this write fails.
        if (open === undefined && !settled && !thread.stopped) {
          thread.worker.postMessage({ id, abort: true } satisfies WriterRequest);
          await until(() => settled);
        }
        throw failure.error;
      }
      if (!failure) {
        send(buffer ?? this.#spare.pop() ?? new Uint8Array(BATCH), filled, true);
        buffer = undefined;
      }
      await until(() => settled);
      if (failure) throw failure.error;
      const done = finished!;
      if (!done.placed) throw check!.mismatch(done.size, done.digest);
      return { size: done.size, ...(done.digest !== undefined ? { digest: done.digest } : {}) };
    } finally {
      if (buffer && this.#spare.length < SPARE) this.#spare.push(buffer);
      this.#pending.delete(id);
      this.#use(thread, -1);
    }
  }

  /** Stops the threads; writes under way fail. */
  async close(): Promise<void> {
    this.#closed = true;
    const threads = this.#threads.splice(0);
    await Promise.all(threads.map((t) => t.worker.terminate()));
  }

  /** A thread with nothing to do, a new one while under the limit, else the least busy. */
  #pick(): Thread {
    const idle = this.#threads.find((t) => t.load === 0);
    if (idle) return idle;
    if (this.#threads.length < this.#limit) return this.#start();
    return this.#threads.reduce((a, b) => (b.load < a.load ? b : a));
  }

  #start(): Thread {
    // A worker takes the process's flags, but `--input-type` (of `node --input-type=module -e …`) stops it; flags
    // given explicitly must all be a worker's, so then it gets none.
    const inputType = process.execArgv.some((flag) => flag.startsWith("--input-type"));
    const worker = new Worker(
      new URL("./file-writer-thread.js", import.meta.url),
      inputType ? { execArgv: [] } : {},
    );
    const thread: Thread = { worker, load: 0, stopped: false };
    worker.unref();
    worker.on("message", (reply: WriterReply) => {
      if (reply.buffer && this.#spare.length < SPARE) this.#spare.push(new Uint8Array(reply.buffer));
      this.#pending.get(reply.id)?.onReply(reply);
    });
    const stopped = (error: Error) => {
      if (thread.stopped) return;
      thread.stopped = true;
      const at = this.#threads.indexOf(thread);
      if (at >= 0) this.#threads.splice(at, 1);
      for (const [id, p] of this.#pending) {
        if (p.thread === thread) p.onReply({ id, error: { message: error.message } });
      }
    };
    worker.on("error", (error) => stopped(new Error(`A file-writing thread failed: ${error.message}`)));
    worker.on("exit", (code) => stopped(new Error(`A file-writing thread stopped (exit code ${code}).`)));
    this.#threads.push(thread);
    return thread;
  }

  /** Counts a file in or out of `thread`; a thread with files to write keeps the process alive. */
  #use(thread: Thread, delta: 1 | -1): void {
    thread.load += delta;
    if (thread.load === 1 && delta === 1) thread.worker.ref();
    else if (thread.load === 0) thread.worker.unref();
  }
}

/** An error of the writing thread as Node's own: the same message, code, syscall and paths. */
function errorFromThread(error: ThreadError): Error {
  return Object.assign(new Error(error.message), error);
}
