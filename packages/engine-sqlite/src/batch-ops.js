// @ts-check
// Plain JavaScript, with types from JSDoc: the batch writer thread loads this module as it is, from the source
// tree under test as from dist, and Node runs no TypeScript in a worker.

/**
 * Rows per INSERT statement of a batch. Measured on 1.1M rows of ~400 bytes: one row per statement 11.7 s, 64
 * rows 8.5 s; the statement cache holds one statement per run length met.
 */
export const UPSERT_ROWS = 64;

/**
 * Applies encoded write ops in order, inside the caller's transaction: runs of upserts in multi-row statements
 * (a later row for the same key wins, as when applied one by one), deletes one by one.
 *
 * @param {(sql: string) => { run(...params: unknown[]): unknown }} statement a cached prepared statement for `sql`
 * @param {number} count how many ops
 * @param {(i: number) => [partition: Uint8Array, key: Uint8Array, value: Uint8Array | null]} op the i-th op
 */
export function applyOps(statement, count, op) {
  /** @type {unknown[]} */
  let run = [];
  const flushRun = () => {
    if (run.length === 0) return;
    const rows = run.length / 3;
    statement(
      `INSERT INTO cairn_kv (partition, key, value) VALUES ${"(?, ?, ?), ".repeat(rows - 1)}(?, ?, ?) ON CONFLICT (partition, key) DO UPDATE SET value = excluded.value`,
    ).run(...run);
    run = [];
  };
  for (let i = 0; i < count; i++) {
    const [p, k, v] = op(i);
    if (v === null) {
      flushRun();
      statement("DELETE FROM cairn_kv WHERE partition = ? AND key = ?").run(p, k);
      continue;
    }
    run.push(p, k, v);
    if (run.length === 3 * UPSERT_ROWS) flushRun();
  }
  flushRun();
}

/**
 * Ops packed for the writer thread: every byte in one buffer, moved to the thread rather than copied, and for op
 * `i` the offsets and lengths of its partition, key and value at `index[6i…6i+5]` (value length -1: a delete).
 *
 * @typedef {{ bytes: Uint8Array; index: Int32Array }} PackedOps
 */

/**
 * @param {readonly { p: Uint8Array; k: Uint8Array; v: Uint8Array | null }[]} ops
 * @returns {PackedOps}
 */
export function packOps(ops) {
  let size = 0;
  for (const { p, k, v } of ops) size += p.length + k.length + (v === null ? 0 : v.length);
  const bytes = new Uint8Array(size);
  const index = new Int32Array(6 * ops.length);
  let at = 0;
  /** @param {Uint8Array} part @param {number} slot */
  const put = (part, slot) => {
    bytes.set(part, at);
    index[slot] = at;
    index[slot + 1] = part.length;
    at += part.length;
  };
  ops.forEach(({ p, k, v }, i) => {
    put(p, 6 * i);
    put(k, 6 * i + 2);
    if (v === null) index[6 * i + 5] = -1;
    else put(v, 6 * i + 4);
  });
  return { bytes, index };
}

/**
 * The i-th op of packed ops, as views of their bytes.
 *
 * @param {PackedOps} packed
 * @param {number} i
 * @returns {[Uint8Array, Uint8Array, Uint8Array | null]}
 */
export function packedOp({ bytes, index }, i) {
  const view = (/** @type {number} */ slot) => {
    const at = /** @type {number} */ (index[slot]);
    return bytes.subarray(at, at + /** @type {number} */ (index[slot + 1]));
  };
  return [view(6 * i), view(6 * i + 2), index[6 * i + 5] === -1 ? null : view(6 * i + 4)];
}
