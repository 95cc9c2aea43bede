import { Buffer } from "node:buffer";

/**
 * The names of every Redis key the engine uses under a prefix. Everything of one partition shares one hash tag
 * (`{` hex of the partition's UTF-8 bytes `}`), so a partition lives in one Redis Cluster slot and every script
 * touches keys of one slot only. Hex keeps any partition name, including `{`, `}` and NUL, out of the tag's
 * syntax.
 */
export interface KeyLayout {
  /** Hash holding the layout's schema version; its presence marks the prefix as cairn's. */
  readonly meta: string;
  /** Sorted set (all scores 0) of the names of partitions that may hold keys, in byte order. */
  readonly partitionIndex: string;
  /** Hash: partition name → Redis time (ms) of its last registration in the index. */
  readonly registered: string;
  /** Sorted set (all scores 0) of the keys of `partition`, read in byte order with ZRANGEBYLEX. */
  keys(partition: string): string;
  /** Hash: key → value of `partition`. */
  values(partition: string): string;
}

/** The hash tag of a partition: the hex of its UTF-8 bytes between braces. */
export function partitionTag(partition: string): string {
  return `{${Buffer.from(partition, "utf8").toString("hex")}}`;
}

/** The key names for `prefix`, which must hold no `{` or `}` so that the only hash tag is the engine's own. */
export function keyLayout(prefix: string): KeyLayout {
  return Object.freeze({
    meta: `${prefix}meta`,
    partitionIndex: `${prefix}{index}partitions`,
    registered: `${prefix}{index}registered`,
    keys: (partition: string) => `${prefix}${partitionTag(partition)}k`,
    values: (partition: string) => `${prefix}${partitionTag(partition)}v`,
  });
}

/** `text` as a literal in a Redis glob pattern (SCAN MATCH). */
export function globLiteral(text: string): string {
  return text.replace(/[*?[\]\\]/g, "\\$&");
}

/** CRC16-CCITT (XMODEM), the checksum Redis Cluster reduces modulo 16384 to find a key's slot. */
const CRC16 = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

/**
 * The Redis Cluster slot of `key`, as `CLUSTER KEYSLOT` computes it: the CRC16 of the key's UTF-8 bytes, or of
 * its hash tag (the bytes between the first `{` and the next `}`, when not empty), modulo 16384.
 */
export function keySlot(key: string): number {
  let bytes = Buffer.from(key, "utf8");
  const open = bytes.indexOf(0x7b);
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) bytes = bytes.subarray(open + 1, close);
  }
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ CRC16[((crc >> 8) ^ byte) & 0xff]!;
  return crc % 16384;
}
