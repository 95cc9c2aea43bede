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
