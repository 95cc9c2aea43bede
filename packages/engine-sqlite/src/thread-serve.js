// @ts-check
// The thread side of thread-client.ts: a cache of prepared statements, and the loop that answers requests.
// Plain JavaScript: see batch-ops.js.
import { parentPort } from "node:worker_threads";

const port = /** @type {import("node:worker_threads").MessagePort} */ (parentPort);

/** @param {unknown} error the error SQLite gave, as the caller's side rebuilds it */
const reported = (error) => {
  const { message, code } = /** @type {{ message?: string; code?: string }} */ (error);
  return { message: message ?? String(error), code };
};

/**
 * Prepared statements of `db`, each prepared once, in better-sqlite3's raw (array) mode when asked.
 *
 * @param {import("better-sqlite3").Database} db
 * @returns {(sql: string, raw?: boolean) => import("better-sqlite3").Statement}
 */
export function statements(db) {
  /** @type {Map<string, import("better-sqlite3").Statement>} */
  const cache = new Map();
  return (sql, raw = false) => {
    const key = `${raw ? "raw" : "obj"}:${sql}`;
    let prepared = cache.get(key);
    if (!prepared) {
      prepared = db.prepare(sql);
      if (raw) prepared.raw(true);
      cache.set(key, prepared);
    }
    return prepared;
  };
}

/**
 * Sends `{ id, value }` or `{ id, error }` to the caller's side; returns whether `answer` succeeded.
 *
 * @param {number} id
 * @param {() => unknown} answer
 */
export function reply(id, answer) {
  try {
    port.postMessage({ id, value: answer() });
    return true;
  } catch (error) {
    port.postMessage({ id, error: reported(error) });
    return false;
  }
}

/**
 * Answers each request with `answer(request)` until one for which `last(request)` holds; after replying to
 * that one, the thread ends.
 *
 * @template {{ id: number }} R
 * @param {(request: R) => unknown} answer
 * @param {(request: R) => boolean} last
 */
export function serve(answer, last) {
  port.on(
    "message",
    /** @param {R} request */
    (request) => {
      reply(request.id, () => answer(request));
      if (last(request)) port.close();
    },
  );
}
