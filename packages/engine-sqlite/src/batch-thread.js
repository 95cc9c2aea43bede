// @ts-check
// The writer thread of a SQLite engine: its own connection to the engine's file, applying large batches while the
// caller's thread goes on (reading and checking the next batch of a load, say). Plain JavaScript: see
// batch-ops.js.
import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { applyOps, packedOp } from "./batch-ops.js";

/** @type {{ filename: string; busyTimeout: number; synchronous: string }} */
const { filename, busyTimeout, synchronous } = workerData;
const db = new Database(filename, { timeout: busyTimeout });
db.pragma(`synchronous = ${synchronous}`);
/** @type {Map<string, import("better-sqlite3").Statement>} */
const statements = new Map();
/** @param {string} sql */
const statement = (sql) => {
  let prepared = statements.get(sql);
  if (!prepared) {
    prepared = db.prepare(sql);
    statements.set(sql, prepared);
  }
  return prepared;
};

const port = /** @type {import("node:worker_threads").MessagePort} */ (parentPort);
port.on(
  "message",
  /** @param {{ id: number; packed: import("./batch-ops.js").PackedOps } | { close: true }} message */
  (message) => {
    if ("close" in message) {
      db.close();
      port.close();
      return;
    }
    const { id, packed } = message;
    try {
      db.exec("BEGIN IMMEDIATE");
      try {
        applyOps(statement, packed.index.length / 6, (i) => packedOp(packed, i));
        db.exec("COMMIT");
      } catch (error) {
        if (db.inTransaction) db.exec("ROLLBACK");
        throw error;
      }
      port.postMessage({ id });
    } catch (error) {
      const { message: text, code } = /** @type {{ message?: string; code?: string }} */ (error);
      port.postMessage({ id, error: { message: text ?? String(error), code } });
    }
  },
);
