import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";

/**
 * How a key is stored. InnoDB indexes at most 3,072 bytes per key (16 KiB pages), but a partition name may
 * take 255 bytes and a key 4,096, so a key is split into its first {@link HEAD_BYTES} bytes (`head`, indexed)
 * and the rest (`tail`, not indexed). The primary key is `(p, head, tail_hash)`, where `tail_hash` is the
 * SHA-256 of the tail, or empty when there is no tail: unique for every key, and ordered like the keys
 * themselves except among long keys that share the same head, which scans put back in order (see
 * `MysqlEngine`'s scan). Comparing `(head, tail)` lexicographically is comparing the whole keys, because every
 * head that has a tail is exactly {@link HEAD_BYTES} long.
 */
export const HEAD_BYTES = 2048;

/** The longest tail: the contract's longest key less the head. */
export const TAIL_BYTES = 4096 - HEAD_BYTES;

/** A key as stored: the indexed head, the SHA-256 of the tail (empty without one) and the tail. */
export interface StoredKey {
  head: Buffer;
  hash: Buffer;
  tail: Buffer;
}

const EMPTY = Buffer.alloc(0);

/** Splits the UTF-8 bytes of a key into its stored columns. */
export function splitKey(key: Buffer): StoredKey {
  if (key.length <= HEAD_BYTES) return { head: key, hash: EMPTY, tail: EMPTY };
  const tail = key.subarray(HEAD_BYTES);
  return { head: key.subarray(0, HEAD_BYTES), hash: createHash("sha256").update(tail).digest(), tail };
}

/** The statements that create the key-value table and the table of the schema version (quoted names). */
export function tableStatements(kv: string, meta: string): { kv: string; meta: string } {
  return {
    meta: `CREATE TABLE IF NOT EXISTS ${meta} (
      name VARBINARY(64) NOT NULL,
      value VARBINARY(255) NOT NULL,
      PRIMARY KEY (name)
    ) ENGINE=InnoDB ROW_FORMAT=DYNAMIC`,
    kv: `CREATE TABLE IF NOT EXISTS ${kv} (
      p VARBINARY(255) NOT NULL,
      head VARBINARY(${HEAD_BYTES}) NOT NULL,
      tail_hash VARBINARY(32) NOT NULL,
      tail VARBINARY(${TAIL_BYTES}) NOT NULL,
      value LONGBLOB NOT NULL,
      PRIMARY KEY (p, head, tail_hash)
    ) ENGINE=InnoDB ROW_FORMAT=DYNAMIC`,
  };
}

/** `name` quoted as a MySQL identifier. */
export function quoteIdentifier(name: string): string {
  return `\`${name.replaceAll("`", "``")}\``;
}
