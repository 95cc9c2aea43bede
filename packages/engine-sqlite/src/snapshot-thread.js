// @ts-check
// The reader thread of a SQLite snapshot: its own connection, in a read transaction that fixes what it sees,
// answering the snapshot's reads while the caller's thread works on what it read before (a dump builds the lines
// of one page while this thread reads the next). Plain JavaScript: see batch-ops.js.
import { workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { readPage } from "./scan-page.js";
import { reply, serve, statements } from "./thread-serve.js";

/**
 * @typedef {{ id: number; op: "page"; partition: Uint8Array; lower?: Uint8Array; inclusive: boolean;
 *   upper?: Uint8Array; want: number }
 *   | { id: number; op: "get"; partition: Uint8Array; key: Uint8Array }
 *   | { id: number; op: "partitionAfter"; after?: Uint8Array }
 *   | { id: number; op: "release" }} Request
 */

/** @type {{ filename: string; busyTimeout: number }} */
const { filename, busyTimeout } = workerData;

/** @type {import("better-sqlite3").Database | undefined} */
let opened;
// Reply -1 says whether the snapshot is held. A thread that could not take it has nothing more to do, and ends.
const held = reply(-1, () => {
  opened = new Database(filename, { timeout: busyTimeout, fileMustExist: true });
  opened.exec("BEGIN");
  // The snapshot is fixed by the first read of the transaction.
  opened.prepare("SELECT count(*) FROM cairn_meta").get();
});
const db = /** @type {import("better-sqlite3").Database} */ (opened);
const statement = statements(db);

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

if (held) serve(answer, (request) => request.op === "release");
