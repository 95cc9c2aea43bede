// @ts-check
// The reader thread of a SQLite snapshot: its own connection, in a read transaction that fixes what it sees,
// answering the snapshot's reads while the caller's thread works on what it read before (a dump builds the lines
// of one page while this thread reads the next). Plain JavaScript: see batch-ops.js.
import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { readPage } from "./scan-page.js";

/**
 * @typedef {{ id: number; op: "page"; partition: Uint8Array; lower?: Uint8Array; inclusive: boolean;
 *   upper?: Uint8Array; want: number }
 *   | { id: number; op: "get"; partition: Uint8Array; key: Uint8Array }
 *   | { id: number; op: "partitionAfter"; after?: Uint8Array }
 *   | { id: number; op: "release" }} Request
 */

const port = /** @type {import("node:worker_threads").MessagePort} */ (parentPort);
/** @type {{ filename: string; busyTimeout: number }} */
const { filename, busyTimeout } = workerData;

/** @param {unknown} error */
const reported = (error) => {
  const { message, code } = /** @type {{ message?: string; code?: string }} */ (error);
  return { message: message ?? String(error), code };
};

/** @type {import("better-sqlite3").Database} */
let db;
try {
  db = new Database(filename, { timeout: busyTimeout, fileMustExist: true });
  db.exec("BEGIN");
  // The snapshot is fixed by the first read of the transaction.
  db.prepare("SELECT count(*) FROM cairn_meta").get();
  port.postMessage({ id: -1 });
} catch (error) {
  port.postMessage({ id: -1, error: reported(error) });
  port.close();
}

/** @type {Map<string, import("better-sqlite3").Statement>} */
const statements = new Map();
/**
 * @param {string} sql
 * @param {boolean} raw
 */
const statement = (sql, raw) => {
  const key = `${raw ? "raw" : "obj"}:${sql}`;
  let prepared = statements.get(key);
  if (!prepared) {
    prepared = db.prepare(sql);
    if (raw) prepared.raw(true);
    statements.set(key, prepared);
  }
  return prepared;
};

/** @param {Request} request */
function answer(request) {
  switch (request.op) {
    case "page": {
      const { partition, lower, inclusive, upper, want } = request;
      return readPage(statement, partition, lower, inclusive, upper, want);
    }
    case "get": {
      const row = /** @type {{ value: Uint8Array } | undefined} */ (
        statement("SELECT value FROM cairn_kv WHERE partition = ? AND key = ?", false).get(
          request.partition,
          request.key,
        )
      );
      return row?.value;
    }
    case "partitionAfter": {
      // One index seek per partition instead of DISTINCT, which would read every key of every partition.
      const row = /** @type {[Uint8Array] | undefined} */ (
        request.after === undefined
          ? statement("SELECT partition FROM cairn_kv ORDER BY partition LIMIT 1", true).get()
          : statement(
              "SELECT partition FROM cairn_kv WHERE partition > ? ORDER BY partition LIMIT 1",
              true,
            ).get(request.after)
      );
      return row?.[0];
    }
    case "release": {
      if (db.inTransaction) db.exec("COMMIT");
      db.close();
      return undefined;
    }
  }
}

port.on(
  "message",
  /** @param {Request} request */
  (request) => {
    try {
      port.postMessage({ id: request.id, value: answer(request) });
    } catch (error) {
      port.postMessage({ id: request.id, error: reported(error) });
    }
    if (request.op === "release") port.close();
  },
);
