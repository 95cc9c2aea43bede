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

const TAB = 0x09;
const NEWLINE = 0x0a;
const BACKSLASH = 0x5c;

/** For each byte, the letter that follows a backslash to escape it in a `LOAD DATA` field, or 0 to keep it. */
const ESCAPES = new Uint8Array(256);
ESCAPES[0x00] = 0x30; // \0
ESCAPES[TAB] = 0x74; // \t
ESCAPES[NEWLINE] = 0x6e; // \n
ESCAPES[BACKSLASH] = BACKSLASH;

/**
 * Rows for `LOAD DATA … FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES TERMINATED BY '\n'` with
 * `CHARACTER SET binary`, columns `(p, head, tail_hash, tail, value)`: fields are raw bytes with tab, newline,
 * backslash and NUL escaped, so any value survives without hex or base64 (which would double the bytes sent
 * and cost the server a decode per row). Chunks are about `chunkBytes` long; a longer row is a chunk of its own.
 */
export class RowWriter {
  #buffer: Buffer;
  #length = 0;
  readonly #chunkBytes: number;

  constructor(chunkBytes = 1024 * 1024) {
    this.#chunkBytes = chunkBytes;
    this.#buffer = Buffer.allocUnsafe(chunkBytes);
  }

  get length(): number {
    return this.#length;
  }

  /** Appends the row of `key` (its UTF-8 bytes) in partition `p`; returns whether the chunk is full. */
  row(p: Uint8Array, key: Buffer, value: Uint8Array): boolean {
    this.#reserve(2 * (p.length + key.length + value.length) + 80);
    let at = this.#field(p, this.#length);
    this.#buffer[at++] = TAB;
    if (key.length <= HEAD_BYTES) {
      at = this.#field(key, at);
      this.#buffer[at++] = TAB;
      this.#buffer[at++] = TAB;
    } else {
      const { head, hash, tail } = splitKey(key);
      at = this.#field(head, at);
      this.#buffer[at++] = TAB;
      at = this.#field(hash, at);
      this.#buffer[at++] = TAB;
      at = this.#field(tail, at);
    }
    this.#buffer[at++] = TAB;
    at = this.#field(value, at);
    this.#buffer[at++] = NEWLINE;
    this.#length = at;
    return at >= this.#chunkBytes;
  }

  #field(field: Uint8Array, at: number): number {
    const out = this.#buffer;
    for (let i = 0; i < field.length; i++) {
      const b = field[i]!;
      const letter = ESCAPES[b]!;
      if (letter === 0) {
        out[at++] = b;
      } else {
        out[at++] = BACKSLASH;
        out[at++] = letter;
      }
    }
    return at;
  }

  /** The rows written since the last call, as one buffer. */
  take(): Buffer {
    // Handed over rather than copied: the next rows go to a new buffer.
    const chunk = this.#buffer.subarray(0, this.#length);
    this.#buffer = Buffer.allocUnsafe(this.#chunkBytes);
    this.#length = 0;
    return chunk;
  }

  #reserve(bytes: number): void {
    if (this.#length + bytes <= this.#buffer.length) return;
    // Doubled, not just enough: rows near the end of a chunk would otherwise copy it row after row.
    const bigger = Buffer.allocUnsafe(Math.max(this.#length + bytes, 2 * this.#buffer.length));
    this.#buffer.copy(bigger, 0, 0, this.#length);
    this.#buffer = bigger;
  }
}
