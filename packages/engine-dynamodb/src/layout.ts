import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";

/**
 * How cairn's keys and values map onto DynamoDB items (specified for people in the README, "Item layout").
 *
 * One table, a binary partition key `p` and a binary sort key `s`. DynamoDB orders sort keys by unsigned bytes,
 * the order the engine contract asks for, but a sort key holds at most 1,024 bytes while a cairn key may have
 * 4,096. So a key is cut into segments of {@link SEGMENT} bytes that form a small tree (a trie with a fan-out of
 * whole segments):
 *
 * - a key of at most {@link SEGMENT} bytes is a *leaf* item in its partition's level-0 item collection, with the
 *   key's bytes as sort key;
 * - a longer key puts a *branch* item at sort key `segment ‖ 0x00` in that collection, and continues in the
 *   item collection of the key prefix (`p` = a SHA-256 of partition and prefix), one level per segment.
 *
 * A branch's sort key is one byte longer than any leaf's, so in every collection leaves and branches sort
 * exactly as the keys below them do, and a scan that walks the tree depth-first yields keys in byte order.
 */

/** Bytes of a key per tree level: a leaf sort key has at most this many; a branch sort key one more. */
export const SEGMENT = 1023;

/** Values up to this many bytes are kept in their head item; larger ones are split into chunks of this size. */
export const INLINE_MAX = 384 * 1024;

/** Size of the chunks a larger value is split into (an item holds at most 400 KB). */
export const CHUNK_BYTES = INLINE_MAX;

/** Attribute names. Short, because DynamoDB counts them in every item's size. */
export const ATTR = Object.freeze({
  /** Partition key (binary). */
  pk: "p",
  /** Sort key (binary). */
  sk: "s",
  /** A value kept whole in its head item (binary). */
  value: "v",
  /** Generation of a value kept in chunks: 16 random bytes naming its chunk items (binary). */
  gen: "g",
  /** Number of chunk items of a chunked value (number). */
  chunks: "n",
  /** Total size in bytes of a chunked value (number). */
  size: "z",
  /** Schema version in the schema item (number). */
  version: "ver",
} as const);

const KIND = Object.freeze({ meta: 0x00, level0: 0x01, deeper: 0x02, chunks: 0x03 });

/** `p` of the item holding the schema version. */
export const META_PK: Buffer = Buffer.concat([Buffer.of(KIND.meta), Buffer.from("meta", "latin1")]);
/** `s` of the schema version item. */
export const SCHEMA_SK: Buffer = Buffer.from("schema-version", "latin1");
/** `p` of the partition index: one item per partition ever written, its UTF-8 name as `s`. */
export const PARTITIONS_PK: Buffer = Buffer.concat([
  Buffer.of(KIND.meta),
  Buffer.from("partitions", "latin1"),
]);
/**
 * `p` of the chunked-partition marks: one item per partition that has ever held a value kept in chunks, its
 * UTF-8 name as `s`. `writeBatch` reads the old heads of the keys it overwrites only in those partitions.
 */
export const CHUNKED_PK: Buffer = Buffer.concat([Buffer.of(KIND.meta), Buffer.from("chunked", "latin1")]);

/** `p` of a partition's level-0 item collection: `0x01 ‖ partition`. */
export function level0Pk(partition: Buffer): Buffer {
  return Buffer.concat([Buffer.of(KIND.level0), partition]);
}

/** `p` of the item collection below `prefix` (a whole number of segments): `0x02 ‖ SHA-256(len ‖ partition ‖ prefix)`. */
export function deeperPk(partition: Buffer, prefix: Buffer): Buffer {
  const length = Buffer.alloc(2);
  length.writeUInt16BE(partition.length);
  const digest = createHash("sha256").update(length).update(partition).update(prefix).digest();
  return Buffer.concat([Buffer.of(KIND.deeper), digest]);
}

/** `p` of the chunk items of one value generation: `0x03 ‖ gen`. */
export function chunksPk(gen: Uint8Array): Buffer {
  return Buffer.concat([Buffer.of(KIND.chunks), gen]);
}

/** `s` of chunk `index`: 4 bytes, big-endian, so chunks sort in order. */
export function chunkSk(index: number): Buffer {
  const sk = Buffer.alloc(4);
  sk.writeUInt32BE(index);
  return sk;
}

/** The primary key of one item. */
export interface ItemKey {
  pk: Buffer;
  sk: Buffer;
}

/** Where a key lives: its leaf item, and the branch items that lead to it (outermost first). */
export interface KeyPlace {
  leaf: ItemKey;
  branches: ItemKey[];
}

/** `p` of the item collection of `prefix` (0, 1, 2… whole segments of a key). */
export function levelPk(partition: Buffer, prefix: Buffer): Buffer {
  return prefix.length === 0 ? level0Pk(partition) : deeperPk(partition, prefix);
}

/** The items that hold `key` (its UTF-8 bytes) in `partition` (its UTF-8 bytes). */
export function placeKey(partition: Buffer, key: Buffer): KeyPlace {
  const branches: ItemKey[] = [];
  let start = 0;
  while (key.length - start > SEGMENT) {
    const prefix = key.subarray(0, start);
    const segment = key.subarray(start, start + SEGMENT);
    branches.push({ pk: levelPk(partition, prefix), sk: Buffer.concat([segment, Buffer.of(0)]) });
    start += SEGMENT;
  }
  return { leaf: { pk: levelPk(partition, key.subarray(0, start)), sk: key.subarray(start) }, branches };
}

/** Whether a sort key read back names a branch (`segment ‖ 0x00`) rather than a leaf. */
export const isBranch = (sk: Uint8Array): boolean => sk.length === SEGMENT + 1;

/**
 * Bounds of a scan relative to one item collection: keys below it are `prefix ‖ rest`, and the bounds compare
 * with `rest`. `undefined` means unbounded on that side.
 */
export interface RelativeRange {
  lower: Buffer | undefined;
  inclusive: boolean;
  upper: Buffer | undefined;
}

/**
 * The range of sort keys to query in a collection for `range`: a superset (leaves and branches at the edges
 * are checked one by one), or `undefined` when nothing can match.
 */
export function sortKeyBounds(range: RelativeRange): { from?: Buffer; to?: Buffer } | undefined {
  // A leaf equal to lower's first segment may be below lower, and a branch for it may hold keys above it: both
  // are read and sorted out by the caller. Likewise at the upper end, where the branch `segment ‖ 0x00` may
  // hold keys below upper.
  const from = range.lower && range.lower.length > 0 ? range.lower.subarray(0, SEGMENT) : undefined;
  let to: Buffer | undefined;
  if (range.upper) {
    if (range.upper.length === 0) return undefined;
    to =
      range.upper.length >= SEGMENT
        ? Buffer.concat([range.upper.subarray(0, SEGMENT), Buffer.of(0)])
        : range.upper;
  }
  if (from && to && Buffer.compare(from, to) > 0) return undefined;
  return { ...(from ? { from } : {}), ...(to ? { to } : {}) };
}

/** Whether a leaf whose remaining key is `rest` lies within `range`. */
export function leafInRange(rest: Buffer, range: RelativeRange): boolean {
  if (range.lower) {
    const c = Buffer.compare(rest, range.lower);
    if (c < 0 || (c === 0 && !range.inclusive)) return false;
  }
  return !range.upper || Buffer.compare(rest, range.upper) < 0;
}

/**
 * The range within the branch of `segment` (keys `segment ‖ x`, x non-empty), relative to its collection, or
 * `undefined` when no key below it is in `range`.
 */
export function branchRange(segment: Buffer, range: RelativeRange): RelativeRange | undefined {
  let lower: Buffer | undefined;
  let inclusive = false;
  if (range.lower) {
    const head = range.lower.subarray(0, SEGMENT);
    const c = Buffer.compare(segment, head);
    if (c === 0 && range.lower.length >= SEGMENT) {
      lower = range.lower.subarray(SEGMENT);
      inclusive = range.inclusive;
      // Every key below the branch is longer than the segment, so an empty bound excludes nothing.
      if (lower.length === 0) lower = undefined;
    } else if (c < 0) {
      return undefined;
    }
  }
  let upper: Buffer | undefined;
  if (range.upper) {
    const head = range.upper.subarray(0, SEGMENT);
    const c = Buffer.compare(segment, head);
    if (c === 0 && range.upper.length >= SEGMENT) {
      upper = range.upper.subarray(SEGMENT);
      if (upper.length === 0) return undefined;
    } else if (c >= 0) {
      return undefined;
    }
  }
  return { lower, inclusive, upper };
}
