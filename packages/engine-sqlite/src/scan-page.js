// @ts-check
// One page of a scan, read on whichever connection is given: the engine's own, or a snapshot's on its reader
// thread. Plain JavaScript, with types from JSDoc, for the same reason as batch-ops.js.

/** A page's values come to about this much at most: larger values are read one by one. */
export const PAGE_BYTES = 16 * 1024 * 1024;

/**
 * A page as read: keys (valid UTF-8 by contract, so text) and values, each a string when the value is valid
 * UTF-8 and read as text, its bytes otherwise. `full` says the page has as many rows as were asked for, so there
 * may be more; `last` is the last key read.
 *
 * @typedef {{ keys: string[]; values: (string | Uint8Array)[]; full: boolean; last: string | undefined }} Page
 */

/**
 * @typedef {{ all(...params: unknown[]): unknown[]; get(...params: unknown[]): unknown }} Statement
 */

/**
 * Up to `want` rows of a partition's key range, in key order, read with one query.
 *
 * Values come back as text: better-sqlite3 hands BLOBs over as unpooled Buffers, which costs more than the read
 * itself on large scans (measured on 1.1M rows of ~400 bytes: 7.0 s as BLOB objects, 2.9 s as hex, ~1.5 s as
 * text). The cast is exact when the value is valid UTF-8 (cairn's own records are JSON); a value that is not
 * comes back with U+FFFD in place of its bad bytes or at a different length, and is read again as a BLOB. So is
 * a value larger than the page's share of PAGE_BYTES (the query returns NULL for it), so that a page's values
 * never come to much more than PAGE_BYTES, whatever their sizes. A value read on its own that is gone by then
 * was deleted by another connection since the page was read: a key not present for the whole scan, left out.
 *
 * @param {(sql: string, raw: boolean) => Statement} statement a cached prepared statement for `sql`, in
 *   better-sqlite3's raw (array) mode when `raw`
 * @param {Uint8Array} partition
 * @param {Uint8Array | undefined} lower
 * @param {boolean} inclusive whether `lower` itself is in the range
 * @param {Uint8Array | undefined} upper the first key after the range
 * @param {number} want
 * @returns {Page}
 */
export function readPage(statement, partition, lower, inclusive, upper, want) {
  const conditions = ["partition = ?"];
  /** @type {unknown[]} */
  const params = [Math.floor(PAGE_BYTES / want), partition];
  if (lower) {
    conditions.push(inclusive ? "key >= ?" : "key > ?");
    params.push(lower);
  }
  if (upper) {
    conditions.push("key < ?");
    params.push(upper);
  }
  // Aliases differ from the column names so that ORDER BY uses the primary key's order, not a sort of the casts.
  const sql = `SELECT CAST(key AS TEXT) AS k, CASE WHEN length(value) <= ? THEN CAST(value AS TEXT) END AS t, length(value) AS n FROM cairn_kv WHERE ${conditions.join(" AND ")} ORDER BY key LIMIT ?`;
  const found = /** @type {[key: string, text: string | null, bytes: number][]} */ (
    statement(sql, true).all(...params, want)
  );
  /** @type {string[]} */
  const keys = [];
  /** @type {(string | Uint8Array)[]} */
  const values = [];
  for (const [key, text, length] of found) {
    if (text !== null && Buffer.byteLength(text, "utf8") === length && !text.includes("\uFFFD")) {
      keys.push(key);
      values.push(text);
      continue;
    }
    const row = /** @type {{ value: Uint8Array } | undefined} */ (
      statement("SELECT value FROM cairn_kv WHERE partition = ? AND key = ?", false).get(
        partition,
        Buffer.from(key, "utf8"),
      )
    );
    if (row === undefined) continue;
    keys.push(key);
    values.push(row.value);
  }
  return { keys, values, full: found.length === want, last: found.at(-1)?.[0] };
}
