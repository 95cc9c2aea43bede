// @ts-check
// A file-writing thread of a FileWriterPool (file-writers.ts): takes the bytes of files in batches, hashes them and
// writes them with synchronous calls, then closes, checks and renames each file. Plain JavaScript, so that it runs
// from the sources under the tests as from dist (see load-thread.js).
import { createHash } from "node:crypto";
import { closeSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { parentPort } from "node:worker_threads";
import { WRITE } from "./file-write-size.js";

/**
 * How a file is to be written, sent with its first batch.
 * @typedef {{
 *   path: string;
 *   exclusive: boolean;
 *   algorithm: string | undefined;
 *   renameTo: string | undefined;
 *   expected: { size: number; digest: string | undefined } | undefined;
 * }} OpenSpec
 */

/**
 * What the pool sends: a file's next bytes, the first `length` of the pool's shared buffer number `slot` (sent
 * along as `share` the first time this thread sees it; its first message also says how to open the file), whether
 * they are its last, or that its writing stops (its body failed). The slot is the pool's again once answered.
 * @typedef {{
 *   id: number;
 *   open?: OpenSpec;
 *   slot?: number;
 *   share?: SharedArrayBuffer;
 *   length?: number;
 *   end?: boolean;
 *   abort?: boolean;
 * }} WriterRequest
 */

/**
 * What the thread answers: a batch is written (`written` bytes), the file is done (its size and digest, and
 * whether it was kept: `placed` is false when it did not match `expected` and was removed), a failure, or that an
 * aborted file is gone.
 * @typedef {(
 *   | { id: number; written: number; slot?: number }
 *   | { id: number; done: { size: number; digest: string | undefined; placed: boolean }; slot?: number }
 *   | { id: number; error: ThreadError; slot?: number }
 *   | { id: number; aborted: true; slot?: number }
 * )} WriterReply
 */

/**
 * An error as it crosses back: the fields of Node's system errors that callers map to messages.
 * @typedef {{ message: string; code?: string; errno?: number; syscall?: string; path?: string; dest?: string }} ThreadError
 */

/** @typedef {{ fd: number; spec: OpenSpec; hash: import("node:crypto").Hash | undefined; size: number }} OpenFile */

const port = parentPort;
if (!port) throw new Error("file-writer-thread.js runs as a worker thread of a FileWriterPool.");

/** @type {Map<number, OpenFile>} */
const files = new Map();
/** The pool's shared buffers, by slot. @type {Uint8Array[]} */
const slots = [];
/** Files that failed here: their later messages are dropped until the pool's abort, which it sends after failing. */
const failed = new Set();

port.on("message", (/** @type {WriterRequest} */ request) => {
  const { id, slot } = request;
  if (request.share && slot !== undefined) slots[slot] = new Uint8Array(request.share);
  /** Answers, giving the request's slot back. */
  const reply = (/** @type {WriterReply} */ answer) =>
    port.postMessage(slot === undefined ? answer : { ...answer, slot });
  if (request.abort) {
    const file = files.get(id);
    files.delete(id);
    failed.delete(id);
    if (file) discard(file);
    reply({ id, aborted: true });
    return;
  }
  if (failed.has(id)) {
    if (slot !== undefined) reply({ id, written: 0 });
    return;
  }
  let file = files.get(id);
  try {
    if (request.open) {
      const spec = request.open;
      file = {
        fd: openSync(spec.path, spec.exclusive ? "wx" : "w"),
        spec,
        hash: spec.algorithm ? createHash(spec.algorithm) : undefined,
        size: 0,
      };
      files.set(id, file);
    }
    if (!file) throw new Error(`no open file ${id}`);
    const bytes = slot === undefined ? undefined : slots[slot]?.subarray(0, request.length ?? 0);
    if (bytes && bytes.length > 0) {
      file.hash?.update(bytes);
      for (let at = 0; at < bytes.length; ) {
        at += writeSync(file.fd, bytes, at, Math.min(WRITE, bytes.length - at));
      }
      file.size += bytes.length;
    }
    if (!request.end) {
      reply({ id, written: bytes?.length ?? 0 });
      return;
    }
    files.delete(id);
    const { fd, spec, hash, size } = file;
    file.fd = -1;
    closeSync(fd);
    const digest = hash?.digest("hex");
    const { expected } = spec;
    const placed =
      !expected || (expected.size === size && (expected.digest === undefined || expected.digest === digest));
    if (!placed) rmSync(spec.path, { force: true });
    else if (spec.renameTo !== undefined) renameSync(spec.path, spec.renameTo);
    reply({ id, done: { size, digest, placed } });
  } catch (e) {
    files.delete(id);
    if (file) discard(file);
    failed.add(id);
    reply({ id, error: asThreadError(e) });
  }
});

/** Closes a file that will not be finished and removes what was written of it. */
function discard(/** @type {OpenFile} */ file) {
  try {
    if (file.fd >= 0) closeSync(file.fd);
  } catch {
    // Closing is best effort: the file is being removed.
  }
  try {
    rmSync(file.spec.path, { force: true });
  } catch {
    // Nothing more can be done here; the pool reports the first failure.
  }
}

/** @returns {ThreadError} */
function asThreadError(/** @type {unknown} */ e) {
  if (!(e instanceof Error)) return { message: String(e) };
  const system = /** @type {Partial<ThreadError>} */ (e);
  /** @type {ThreadError} */
  const out = { message: e.message };
  for (const key of /** @type {const} */ (["code", "syscall", "path", "dest"])) {
    const value = system[key];
    if (typeof value === "string") out[key] = value;
  }
  if (typeof system.errno === "number") out.errno = system.errno;
  return out;
}
