// @ts-check
// A load's reader thread: reads the dump's bytes (its file, or chunks pulled from the loading thread), decrypts, gunzips, parses and
// checks every line and record, and hands back the writes in packed batches, so that the loading thread spends its
// time writing to the engine. Plain JavaScript: see load-records.js.
import { createReadStream } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { readDump } from "@cairn/manifest";
import { LoadChecks } from "./load-records.js";

/**
 * @typedef {{
 *   read: import("@cairn/manifest").ReadDumpOptions;
 *   file: string | undefined;
 *   repository: string | undefined;
 *   batch: { ops: number; bytes: number };
 *   ahead: number;
 *   prefetch: number;
 * }} LoadThreadData
 */

/**
 * A batch of writes as it crosses to the loading thread, in buffers moved rather than copied: op i writes the key
 * `bytes[ends[2i - 1] … ends[2i]]` (from 0 for the first) of `partitions[parts[i]]`, its value the bytes
 * `bytes[ends[2i] … ends[2i + 1]]`. Keys travel as UTF-8 rather than as strings: a million strings cost more to
 * clone than to decode, and held in an array while a batch fills they outlive the young generation.
 * @typedef {{ partitions: string[]; parts: Uint32Array; bytes: Uint8Array; ends: Uint32Array; length: number }} PackedBatch
 */

/**
 * What the thread posts: the header was read; a batch, with the records read so far; the end, once the footer and
 * every reference checked out; or the error that stopped it.
 * @typedef {{ header: true }
 *   | { batch: PackedBatch; count: number; ascending: boolean }
 *   | { done: { repositories: import("./load-records.js").LoadedRepository[]; counts: Record<string, number>; count: number } }
 *   | { error: { name: string; code: string | undefined; message: string; stack: string | undefined } }
 * } LoadThreadMessage
 */

const port = /** @type {import("node:worker_threads").MessagePort} */ (parentPort);
const { read, file, repository, batch: limits, ahead, prefetch } = /** @type {LoadThreadData} */ (workerData);

// ---- Input: chunks pulled from the loading thread, `prefetch` asked for ahead of use.
/** @type {(Uint8Array | null)[]} */
const chunks = [];
/**
 * Who waits for the next message: the input (for a chunk) and the output (for room) can both be waiting, as a
 * gunzip pulls input while the records it already gave wait for room.
 * @type {(() => void)[]}
 */
let waiting = [];
// ---- Output: batches posted and not yet taken by the loading thread, at most `ahead`.
let posted = 0;

port.on(
  "message",
  /** @param {{ chunk: Uint8Array } | { end: true } | { taken: true }} message */
  (message) => {
    if ("taken" in message) posted--;
    else chunks.push("chunk" in message ? message.chunk : null);
    const woken = waiting;
    waiting = [];
    for (const wake of woken) wake();
  },
);

/** Resolves on the next message. */
const nextMessage = () =>
  new Promise((resolve) => {
    waiting.push(() => resolve(undefined));
  });

/** @returns {AsyncGenerator<Uint8Array>} */
async function* input() {
  for (let i = 0; i < prefetch; i++) port.postMessage({ pull: true });
  for (;;) {
    while (chunks.length === 0) await nextMessage();
    const chunk = chunks.shift();
    if (chunk === null || chunk === undefined) return;
    port.postMessage({ pull: true });
    yield chunk;
  }
}

/** Room past the batch's byte limit for the record that crosses it; a larger one grows the buffer. */
const BATCH_SLACK = 64 * 1024;

/** Writes gathered into one buffer, posted when full. */
class Batch {
  /** @type {Map<string, number>} */
  #partitionIndex = new Map();
  /** @type {string[]} */
  #partitions = [];
  #parts = new Uint32Array(limits.ops);
  #ends = new Uint32Array(2 * limits.ops);
  #bytes = Buffer.allocUnsafeSlow(limits.bytes + BATCH_SLACK);
  #at = 0;
  #length = 0;

  get full() {
    return this.#length >= limits.ops || this.#at >= limits.bytes;
  }

  get empty() {
    return this.#length === 0;
  }

  /** @type {import("./load-records.js").PutFn} */
  put = (partition, key, value) => {
    // A string takes at most 3 bytes a UTF-16 unit in UTF-8.
    const most = 3 * key.length + (typeof value === "string" ? 3 * value.length : value.length);
    if (this.#at + most > this.#bytes.length) this.#grow(this.#at + most);
    this.#at += this.#bytes.write(key, this.#at, "utf8");
    this.#ends[2 * this.#length] = this.#at;
    if (typeof value === "string") this.#at += this.#bytes.write(value, this.#at, "utf8");
    else {
      this.#bytes.set(value, this.#at);
      this.#at += value.length;
    }
    this.#ends[2 * this.#length + 1] = this.#at;
    let part = this.#partitionIndex.get(partition);
    if (part === undefined) {
      part = this.#partitions.push(partition) - 1;
      this.#partitionIndex.set(partition, part);
    }
    this.#parts[this.#length++] = part;
  };

  /** @param {number} size */
  #grow(size) {
    const bigger = Buffer.allocUnsafeSlow(Math.max(size, 2 * this.#bytes.length));
    this.#bytes.copy(bigger, 0, 0, this.#at);
    this.#bytes = bigger;
  }

  /** The batch, packed; this one starts again empty. */
  take() {
    /** @type {PackedBatch} */
    const packed = {
      partitions: this.#partitions,
      parts: this.#parts,
      bytes: new Uint8Array(this.#bytes.buffer, this.#bytes.byteOffset, this.#at),
      ends: this.#ends,
      length: this.#length,
    };
    this.#partitionIndex = new Map();
    this.#partitions = [];
    this.#parts = new Uint32Array(limits.ops);
    this.#ends = new Uint32Array(2 * limits.ops);
    this.#bytes = Buffer.allocUnsafeSlow(limits.bytes + BATCH_SLACK);
    this.#at = 0;
    this.#length = 0;
    return packed;
  }
}

/**
 * The chunks of a dump's file; a file that cannot be read is an `InputError` naming it.
 * @param {string} path
 * @returns {AsyncGenerator<Buffer>}
 */
async function* fileInput(path) {
  try {
    yield* createReadStream(path, { highWaterMark: 64 * 1024 });
  } catch (error) {
    const code = /** @type {NodeJS.ErrnoException} */ (error).code;
    if (typeof code !== "string" || !code.startsWith("E")) throw error;
    const failure = new Error(`Cannot read the dump ${path} (${code}).`, { cause: error });
    failure.name = "InputError";
    throw failure;
  }
}

/** @param {LoadChecks} checks @param {Batch} batch */
async function post(checks, batch) {
  while (posted >= ahead) await nextMessage();
  const packed = batch.take();
  posted++;
  const moved = /** @type {ArrayBuffer[]} */ ([packed.bytes.buffer, packed.parts.buffer, packed.ends.buffer]);
  port.postMessage({ batch: packed, count: checks.count, ascending: checks.ascending }, moved);
}

async function main() {
  // Lines are kept so that values are spliced from them: the input's chunks are this thread's own copies.
  const reader = readDump(file === undefined ? input() : fileInput(file), { ...read, lines: true });
  await reader.header();
  port.postMessage({ header: true });
  const checks = new LoadChecks({ repository });
  const batch = new Batch();
  for await (const { records, lines } of reader.linePages()) {
    for (let i = 0; i < records.length; i++) {
      checks.record(/** @type {import("@cairn/manifest").DumpRecord} */ (records[i]), batch.put, lines[i]);
      if (batch.full) await post(checks, batch);
    }
  }
  const repositories = checks.finish();
  if (!batch.empty) await post(checks, batch);
  port.postMessage({ done: { repositories, counts: checks.counts, count: checks.count } });
}

main().catch((error) => {
  const e = /** @type {Error & { code?: unknown }} */ (error);
  port.postMessage({
    error: {
      name: e?.name ?? "Error",
      code: typeof e?.code === "string" ? e.code : undefined,
      message: e?.message ?? String(error),
      stack: e?.stack,
    },
  });
});
