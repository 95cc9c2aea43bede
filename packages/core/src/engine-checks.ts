import { Buffer } from "node:buffer";
import type { ScanOptions } from "./engine.js";
import { InvalidArgumentError } from "./errors.js";

/** The sizes the {@link MetadataEngine} contract allows; every engine enforces them the same way. */
export const ENGINE_LIMITS = Object.freeze({
  keyBytes: 4096,
  partitionBytes: 255,
  valueBytes: 16 * 1024 * 1024,
});

function encodeName(what: "key" | "partition", name: unknown, max: number): Buffer {
  if (typeof name !== "string" || name.length === 0) {
    throw new InvalidArgumentError(`A ${what} must be a non-empty string, got ${JSON.stringify(name)}.`);
  }
  if (!name.isWellFormed()) {
    throw new InvalidArgumentError(
      `The ${what} ${JSON.stringify(name)} is not valid Unicode (it has a lone surrogate).`,
    );
  }
  const bytes = Buffer.from(name, "utf8");
  if (bytes.length > max) {
    throw new InvalidArgumentError(
      `The ${what} "${name.slice(0, 40)}…" is ${bytes.length} bytes of UTF-8; at most ${max} are allowed.`,
    );
  }
  return bytes;
}

/** The UTF-8 bytes of a key, or `INVALID_ARGUMENT` naming it when the contract does not allow it. */
export function encodeKey(key: unknown): Buffer {
  return encodeName("key", key, ENGINE_LIMITS.keyBytes);
}

/** The UTF-8 bytes of a partition name, or `INVALID_ARGUMENT` naming it when the contract does not allow it. */
export function encodePartition(partition: unknown): Buffer {
  return encodeName("partition", partition, ENGINE_LIMITS.partitionBytes);
}

/** `value` when it is bytes within the size limit; `INVALID_ARGUMENT` naming `key` otherwise. */
export function checkValue(value: unknown, key: string): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new InvalidArgumentError(`The value of key ${JSON.stringify(key)} must be a Uint8Array.`);
  }
  if (value.length > ENGINE_LIMITS.valueBytes) {
    throw new InvalidArgumentError(
      `The value of key ${JSON.stringify(key)} is ${value.length} bytes; at most 16 MiB are allowed.`,
    );
  }
  return value;
}

/** The `expected` argument of `setIf`: bytes or `null`, else `INVALID_ARGUMENT`. */
export function checkExpected(expected: unknown, key: string): Uint8Array | null {
  if (expected !== null && !(expected instanceof Uint8Array)) {
    throw new InvalidArgumentError(
      `The expected value of key ${JSON.stringify(key)} must be a Uint8Array or null.`,
    );
  }
  return expected;
}

/** The smallest byte string greater than every string that starts with `prefix`, or undefined when none is. */
export function prefixEnd(prefix: Uint8Array): Buffer | undefined {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return undefined;
}

/** The key range a scan reads, as byte strings: from `lower` (inclusive or not) to `upper` (exclusive). */
export interface ScanRange {
  lower: Buffer | undefined;
  inclusive: boolean;
  upper: Buffer | undefined;
  /** Most entries to yield; `Infinity` when unlimited. */
  limit: number;
}

/**
 * Validates {@link ScanOptions} and turns them into a byte range: keys starting with `prefix`, strictly after
 * `after`, from `from` on and before `before` — the tightest of the bounds given — the way every engine pages
 * through a partition.
 */
export function scanRange(options: ScanOptions = {}): ScanRange {
  const { prefix, after, from, before, limit } = options;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) {
    throw new InvalidArgumentError(`A scan limit must be a whole number ≥ 0, got ${limit}.`);
  }
  const bytes = (s: string | undefined) => (s !== undefined ? Buffer.from(s, "utf8") : undefined);
  const prefixBytes = prefix ? bytes(prefix) : undefined;
  let lower: Buffer | undefined;
  let inclusive = false;
  // Raises the lower bound to `bound` when that is tighter; an exclusive bound wins over an equal inclusive one.
  const raise = (bound: Buffer | undefined, boundInclusive: boolean) => {
    if (!bound) return;
    const order = lower ? Buffer.compare(bound, lower) : 1;
    if (order > 0 || (order === 0 && !boundInclusive)) {
      lower = bound;
      inclusive = boundInclusive;
    }
  };
  raise(prefixBytes, true);
  raise(from ? bytes(from) : undefined, true);
  raise(bytes(after), false);
  let upper = prefixBytes ? prefixEnd(prefixBytes) : undefined;
  const beforeBytes = bytes(before);
  if (beforeBytes && (!upper || Buffer.compare(beforeBytes, upper) < 0)) upper = beforeBytes;
  // An empty range reads nothing, whatever an engine's query would make of bounds that cross.
  const empty =
    upper !== undefined && (upper.length === 0 || (lower !== undefined && Buffer.compare(lower, upper) >= 0));
  if (empty) return { lower, inclusive, upper, limit: 0 };
  return { lower, inclusive, upper, limit: limit ?? Number.POSITIVE_INFINITY };
}
