// @ts-check
// The writer thread of a SQLite engine: its own connection to the engine's file, applying large batches while the
// caller's thread goes on (reading and checking the next batch of a load, say). Plain JavaScript: see
// batch-ops.js.
import { workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { applyOps, packedOp } from "./batch-ops.js";
import { serve, statements } from "./thread-serve.js";

/** @type {{ filename: string; busyTimeout: number; synchronous: string }} */
const { filename, busyTimeout, synchronous } = workerData;
const db = new Database(filename, { timeout: busyTimeout });
db.pragma(`synchronous = ${synchronous}`);
const statement = statements(db);

serve(
  /** @param {{ id: number; packed: import("./batch-ops.js").PackedOps } | { id: number; close: true }} message */
  (message) => {
    if ("close" in message) return void db.close();
    const { packed } = message;
    db.exec("BEGIN IMMEDIATE");
    try {
      applyOps(statement, packed.index.length / 6, (i) => packedOp(packed, i));
      db.exec("COMMIT");
    } catch (error) {
      if (db.inTransaction) db.exec("ROLLBACK");
      throw error;
    }
  },
  (message) => "close" in message,
);
