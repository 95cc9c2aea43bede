import { createHash, type Hash } from "node:crypto";
import { closeSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { InvalidArgumentError } from "./errors.js";
import { WRITE } from "./file-write-size.js";
import type { OpenSpec, ThreadError, WriterReply, WriterRequest } from "./file-writer-thread.js";
import { workerFlags } from "./worker-flags.js";

/**
 * The size of the pool's buffers, shared with its threads, that carry bytes to them: each is filled here and named
 * in a message to a thread (one per MiB, or per file for smaller files), and filled again once the thread has
 * written it. Nothing is allocated per file or per write, and nothing crosses threads but a slot number: buffers
 * moved between threads count against each one's heap as external memory, and 2,000 files of 64 KiB moved in
 * 1 MiB buffers set off a full garbage collection every ~60 files. A file has at most two buffers with its thread
 * and one being filled.
 */
const BATCH = 1024 * 1024;
const IN_FLIGHT = 2;
/** The most buffers a pool makes (64 MiB): a write that finds none free waits for one. */
const SLOTS = 64;
/** The bytes of files a thread takes before another thread starts to share them. */
const SPREAD = 8 * BATCH;
/** Files smaller than this, by `check.size`, are written on the calling thread (see {@link FileWriterPool}). */
const INLINE_BELOW = 256 * 1024;
/** A file written on the calling thread whose calls took longer than this sends every later file to threads. */
const INLINE_SLOW_MS = 20;

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

export interface FileWriterPoolOptions {
  /** The most threads (default: the machine's cores, at most 4). */
  threads?: number;
  /** Files smaller than this many bytes, by `check.size`, are written on the calling thread; `0`: none (default 256 KiB). */
  inlineBelow?: number;
  /**
   * When the calls writing one file on the calling thread take longer than this (a slow file system), every later
   * file goes to a thread (default 20 ms).
   */
  inlineSlowMs?: number;
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
  /** The bytes of those files, as far as known (`check.size`; a batch for a file of unknown size). */
  bytes: number;
  /** The slots it has been sent, and those it holds now. */
  known: Set<number>;
  holds: Set<number>;
  /** It failed or exited: its files failed with it. */
  stopped: boolean;
}

interface Pending {
  thread: Thread;
  /** Written bytes acknowledged, file finished, or failure; whichever comes. */
  onReply: (reply: WriterReply) => void;
}

/**
 * Writes files on threads of their own: each file's bytes are copied here into 1 MiB buffers shared with a writing
 * thread, and hashed, written, closed, checked and renamed there with synchronous calls. Small files are written
 * here instead, with the same synchronous calls.
 *
 * Downloads are why. On the main thread, a file written through Node's `FileHandle` costs a round trip to libuv's
 * thread pool for each open, write, close and rename, and hashing its bytes takes the thread that also reads the
 * network: on a CPU without SHA instructions, SHA-256 runs at ~230 MB/s, more than a download's whole budget.
 * Here the thread that reads the network only gathers and posts bytes, and the hashing of several files runs on
 * several cores.
 *
 * Threads start when needed, up to `threads` (default: the machine's cores, at most 4): small files share one,
 * large ones spread over several. Idle threads do not keep the process alive. On any failure (the body's, a
 * write's, a check's) the file written is removed before `write` rejects.
 *
 * A file known to be small (`check.size` under `inlineBelow`, 256 KiB) costs more to hand to a thread than to
 * write: a message each way, and a wake-up of each thread, ~0.2 ms of CPU in all. Written here, its calls take
 * ~0.1–0.4 ms of this thread, and the process has one busy thread rather than two. Measured downloading 2,000
 * files of 64 KiB from an emulator on the same two cores: 0.87 s of CPU against 1.24 s, and the emulator, no
 * longer kept from a core, served them in 1.59 s against 1.81 s. A file system slow enough that one such file's
 * calls take over `inlineSlowMs` (20 ms: a network file system, a failing disk) would hold up this thread's
 * other work, so every later file goes to a thread.
 */
export class FileWriterPool {
  readonly #limit: number;
  readonly #threads: Thread[] = [];
  readonly #pending = new Map<number, Pending>();
  /** The shared buffers, by slot, those free to fill, and writes waiting for one. */
  readonly #slots: Buffer<SharedArrayBuffer>[] = [];
  readonly #free: number[] = [];
  readonly #waiting: ((slot: number) => void)[] = [];
  readonly #inlineSlowMs: number;
  #inlineBelow: number;
  #nextId = 0;
  #closed = false;

  constructor(options: FileWriterPoolOptions = {}) {
    this.#limit = Math.max(1, options.threads ?? Math.min(4, availableParallelism()));
    this.#inlineBelow = options.inlineBelow ?? INLINE_BELOW;
    this.#inlineSlowMs = options.inlineSlowMs ?? INLINE_SLOW_MS;
  }

  /** The threads started and running. */
  get threads(): number {
    return this.#threads.length;
  }

  /** Writes the bytes of `body` to `path` (through `options.temp` when given); resolves once the file is in place. */
  async write(
    path: string,
    body: AsyncIterable<Uint8Array>,
    options: WriteFileOptions = {},
  ): Promise<WrittenFile> {
    if (this.#closed) throw new Error("This FileWriterPool is closed.");
    const { check } = options;
    if (check && check.size < this.#inlineBelow) return this.#writeHere(path, body, options, check);
    const id = this.#nextId++;
    const expected = check?.size ?? BATCH;
    const thread = this.#pick(expected);
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
          // After the file was done with (a thread that stops later, a pool closed meanwhile): nothing to fail.
          if (settled) return;
          failure ??= { error: errorFromThread(reply.error) };
          settled = true;
          // The thread has removed the file and drops its later messages until told the file is over.
          if (!thread.stopped) thread.worker.postMessage({ id, abort: true } satisfies WriterRequest);
        } else settled = true;
        wake?.();
        wake = undefined;
      },
    });
    this.#use(thread, 1, expected);
    let open: OpenSpec | undefined = {
      path: options.temp ?? path,
      exclusive: options.exclusive ?? false,
      algorithm: options.algorithm,
      renameTo: options.temp !== undefined ? path : undefined,
      expected: check ? { size: check.size, digest: check.digest } : undefined,
    };
    const send = (slot: number, length: number, end: boolean) => {
      // A thread that stopped has failed this write already; the slot goes back rather than to it.
      if (thread.stopped) return this.#release(slot);
      const request: WriterRequest = { id, slot, length, ...(open ? { open } : {}), ...(end ? { end } : {}) };
      if (!thread.known.has(slot)) {
        request.share = this.#slots[slot]!.buffer;
        thread.known.add(slot);
      }
      open = undefined;
      unwritten++;
      thread.holds.add(slot);
      thread.worker.postMessage(request);
    };
    // The bytes are copied into a buffer of the pool's own: the body's chunks may share theirs (Node's pool, a
    // socket's read buffer), and the caller may still hold them.
    let slot: number | undefined;
    let filled = 0;
    try {
      try {
        for await (const chunk of body as AsyncIterable<unknown>) {
          if (failure) break;
          if (!(chunk instanceof Uint8Array)) throw notBytes(chunk);
          for (let at = 0; at < chunk.length; ) {
            slot ??= await this.#take();
            const n = Math.min(BATCH - filled, chunk.length - at);
            // `fill` with bytes exactly as long as the range copies them once, with the C library's memcpy.
            // `set` into shared memory copies with relaxed atomics instead, a byte at a time when the two ends
            // are not aligned alike, as a socket's chunks seldom are: 5–6 times slower (0.1 s per 256 MB).
            this.#slots[slot]!.fill(
              at === 0 && n === chunk.length ? chunk : chunk.subarray(at, at + n),
              filled,
              filled + n,
            );
            filled += n;
            at += n;
            if (filled === BATCH) {
              send(slot, filled, false);
              slot = undefined;
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
        send(slot ?? (await this.#take()), filled, true);
        slot = undefined;
      }
      await until(() => settled);
      if (failure) throw failure.error;
      const done = finished!;
      if (!done.placed) throw check!.mismatch(done.size, done.digest);
      return { size: done.size, ...(done.digest !== undefined ? { digest: done.digest } : {}) };
    } finally {
      if (slot !== undefined) this.#release(slot);
      this.#pending.delete(id);
      this.#use(thread, -1, expected);
    }
  }

  /**
   * Writes a small file on this thread, as a writing thread does (file-writer-thread.js): opened with its first
   * bytes, written in pieces of at most `WRITE`, hashed, closed, checked, renamed into place; removed on any failure.
   */
  async #writeHere(
    path: string,
    body: AsyncIterable<Uint8Array>,
    options: WriteFileOptions,
    check: NonNullable<WriteFileOptions["check"]>,
  ): Promise<WrittenFile> {
    const written = options.temp ?? path;
    const hash: Hash | undefined = options.algorithm ? createHash(options.algorithm) : undefined;
    let fd: number | undefined;
    /** The file was made by this write (an exclusive open that failed made none). */
    let made = false;
    let size = 0;
    /** Time spent in this file's calls. */
    let busy = 0;
    const open = () => {
      fd = openSync(written, options.exclusive ? "wx" : "w");
      made = true;
      return fd;
    };
    try {
      for await (const chunk of body as AsyncIterable<unknown>) {
        if (this.#closed) throw new Error("This FileWriterPool is closed.");
        if (!(chunk instanceof Uint8Array)) throw notBytes(chunk);
        const start = performance.now();
        const to = fd ?? open();
        hash?.update(chunk);
        for (let at = 0; at < chunk.length; ) {
          at += writeSync(to, chunk, at, Math.min(WRITE, chunk.length - at));
        }
        size += chunk.length;
        busy += performance.now() - start;
      }
      if (this.#closed) throw new Error("This FileWriterPool is closed.");
      const start = performance.now();
      closeSync(fd ?? open());
      fd = undefined;
      const digest = hash?.digest("hex");
      if (size !== check.size || (check.digest !== undefined && check.digest !== digest)) {
        throw check.mismatch(size, digest);
      }
      if (options.temp !== undefined) renameSync(options.temp, path);
      busy += performance.now() - start;
      return { size, ...(digest !== undefined ? { digest } : {}) };
    } catch (error) {
      if (fd !== undefined) {
        try {
          closeSync(fd);
        } catch {
          // Closing is best effort: the file is being removed.
        }
        fd = undefined;
      }
      if (made) rmSync(written, { force: true });
      throw error;
    } finally {
      if (busy > this.#inlineSlowMs) this.#inlineBelow = 0;
    }
  }

  /** A free slot, a new one while there are fewer than `SLOTS`, else the first to be freed. */
  #take(): number | Promise<number> {
    const free = this.#free.pop();
    if (free !== undefined) return free;
    if (this.#slots.length < SLOTS) return this.#slots.push(Buffer.from(new SharedArrayBuffer(BATCH))) - 1;
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  #release(slot: number): void {
    const next = this.#waiting.shift();
    if (next) next(slot);
    else this.#free.push(slot);
  }

  /** Stops the threads; writes under way fail, and the files they were writing are removed. */
  async close(): Promise<void> {
    this.#closed = true;
    const threads = this.#threads.splice(0);
    await Promise.all(threads.map((thread) => this.#stop(thread)));
  }

  /** Fails the files `thread` is writing, waits until it has removed them, and ends it. */
  async #stop(thread: Thread): Promise<void> {
    const ids = [...this.#pending].filter(([, p]) => p.thread === thread).map(([id]) => id);
    if (ids.length > 0 && !thread.stopped) {
      const left = new Set(ids);
      const removed = new Promise<void>((resolve) => {
        thread.worker.on("message", (reply: WriterReply) => {
          if ("aborted" in reply && left.delete(reply.id) && left.size === 0) resolve();
        });
        thread.worker.once("exit", () => resolve());
      });
      // A failure makes the write tell its thread to abort the file; the thread removes it and says so.
      const closed = { message: "This FileWriterPool is closed." };
      for (const id of ids) this.#pending.get(id)?.onReply({ id, error: closed });
      await removed;
    }
    await thread.worker.terminate();
  }

  /**
   * The thread with the fewest bytes to write, unless they and the file's would pass `SPREAD` and another thread
   * may start. Small files all go to one thread: each wake-up of a sleeping thread costs a system call, and on a
   * virtual machine an interrupt between cores; large files spread over threads, to be hashed on several cores.
   */
  #pick(bytes: number): Thread {
    const least = this.#threads.reduce<Thread | undefined>(
      (a, b) => (a && a.bytes <= b.bytes ? a : b),
      undefined,
    );
    if (least && (least.load === 0 || least.bytes + bytes <= SPREAD || this.#threads.length >= this.#limit)) {
      return least;
    }
    return this.#start();
  }

  #start(): Thread {
    const worker = new Worker(new URL("./file-writer-thread.js", import.meta.url), workerFlags());
    const thread: Thread = { worker, load: 0, bytes: 0, known: new Set(), holds: new Set(), stopped: false };
    worker.unref();
    worker.on("message", (reply: WriterReply) => {
      if (reply.slot !== undefined) {
        thread.holds.delete(reply.slot);
        this.#release(reply.slot);
      }
      this.#pending.get(reply.id)?.onReply(reply);
    });
    const stopped = (error: Error) => {
      if (thread.stopped) return;
      thread.stopped = true;
      for (const slot of thread.holds) this.#release(slot);
      thread.holds.clear();
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
  #use(thread: Thread, delta: 1 | -1, bytes: number): void {
    thread.load += delta;
    thread.bytes += delta * bytes;
    if (thread.load === 1 && delta === 1) thread.worker.ref();
    else if (thread.load === 0) thread.worker.unref();
  }
}

/** The error for a body's chunk that is not bytes. */
function notBytes(chunk: unknown): InvalidArgumentError {
  return new InvalidArgumentError(
    `A file's bytes come as Uint8Array or Buffer chunks, not ${typeof chunk === "string" ? "text (a stream with an encoding set?)" : typeof chunk}.`,
  );
}

/** An error of the writing thread as Node's own: the same message, code, syscall and paths. */
function errorFromThread(error: ThreadError): Error {
  return Object.assign(new Error(error.message), error);
}
