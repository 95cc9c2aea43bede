import { CorruptError, UnsupportedError } from "../errors.js";
import type { Entry } from "../model.js";

/**
 * Committed trees are stored as immutable, content-addressed JSON objects in the storage namespace
 * (specified in docs/tree-format.md):
 *
 * - a *range* holds a sorted run of entries: `_cairn/ranges/<sha256 of the object's bytes>`;
 * - a *metarange* lists a tree's ranges in order with their first and last path:
 *   `_cairn/metaranges/<sha256>`.
 */
export const RANGE_FORMAT = "cairn.range";
export const METARANGE_FORMAT = "cairn.metarange";
export const TREE_FORMAT_VERSION = 1;
export const RANGE_COLUMNS = [
  "path",
  "address",
  "size",
  "sha256",
  "contentType",
  "mtime",
  "metadata",
] as const;

export const rangeKey = (id: string): string => `_cairn/ranges/${id}`;
export const metarangeKey = (id: string): string => `_cairn/metaranges/${id}`;

/** A range as its metarange lists it. */
export interface RangeRef {
  id: string;
  /** Path of its first entry. */
  first: string;
  /** Path of its last entry. */
  last: string;
  count: number;
  /** Size of the range object in bytes. */
  bytes: number;
}

export interface Metarange {
  id: string;
  ranges: RangeRef[];
}

const RANGE_HEAD = `{"format":"${RANGE_FORMAT}","version":${TREE_FORMAT_VERSION},"columns":${JSON.stringify(RANGE_COLUMNS)},"entries":[\n`;
const RANGE_TAIL = "\n]}\n";
/**
 * Ranges are built and parsed in pieces of at most this many bytes: V8 allocates strings above ~128 KiB in
 * its large-object space, which makes decoding and parsing them an order of magnitude slower.
 */
const PIECE_BYTES = 64 * 1024;

/** The bytes of a range object: a header line, one entry per line, a closing line. */
export function serializeRange(entries: readonly Entry[]): Buffer {
  const pieces: Buffer[] = [Buffer.from(RANGE_HEAD, "utf8")];
  let lines: string[] = [];
  let size = 0;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    const line = JSON.stringify([e.path, e.address, e.size, e.sha256, e.contentType, e.mtime, e.metadata]);
    lines.push(i + 1 < entries.length ? `${line},\n` : line);
    size += line.length + 2;
    if (size >= PIECE_BYTES) {
      pieces.push(Buffer.from(lines.join(""), "utf8"));
      lines = [];
      size = 0;
    }
  }
  if (lines.length > 0) pieces.push(Buffer.from(lines.join(""), "utf8"));
  pieces.push(Buffer.from(RANGE_TAIL, "utf8"));
  return Buffer.concat(pieces);
}

const HEAD_BYTES = Buffer.from(RANGE_HEAD, "utf8");
const TAIL_BYTES = Buffer.from(RANGE_TAIL, "utf8");

export function parseRange(bytes: Buffer, where: string): Entry[] {
  const rows: unknown[] = [];
  if (
    bytes.length >= HEAD_BYTES.length + TAIL_BYTES.length &&
    bytes.subarray(0, HEAD_BYTES.length).equals(HEAD_BYTES) &&
    bytes.subarray(bytes.length - TAIL_BYTES.length).equals(TAIL_BYTES)
  ) {
    // The layout cairn writes: parse the entry lines a piece at a time, each piece as a JSON array.
    const end = bytes.length - TAIL_BYTES.length;
    let start = HEAD_BYTES.length;
    while (start < end) {
      let cut = Math.min(start + PIECE_BYTES, end);
      if (cut < end) {
        const nl = bytes.indexOf(10, cut);
        cut = nl < 0 || nl >= end ? end : nl + 1;
      }
      let text = bytes.toString("utf8", start, cut).trimEnd();
      if (text.endsWith(",")) text = text.slice(0, -1);
      try {
        for (const row of JSON.parse(`[${text}]`) as unknown[]) rows.push(row);
      } catch (cause) {
        throw new CorruptError(`The range ${where} is not valid JSON near byte ${start}.`, { cause });
      }
      start = cut;
    }
  } else {
    // Any other layout of the same document (e.g. re-indented by a tool): parse it whole.
    let doc: { format?: unknown; version?: unknown; columns?: unknown; entries?: unknown };
    try {
      doc = JSON.parse(bytes.toString("utf8"));
    } catch (cause) {
      throw new CorruptError(`The range ${where} is not valid JSON.`, { cause });
    }
    checkHeader(doc, RANGE_FORMAT, where);
    if (JSON.stringify(doc.columns) !== JSON.stringify(RANGE_COLUMNS) || !Array.isArray(doc.entries)) {
      throw new CorruptError(`The range ${where} does not have the expected columns and entries.`);
    }
    for (const row of doc.entries as unknown[]) rows.push(row);
  }
  const out = new Array<Entry>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i] as unknown[];
    if (!Array.isArray(r) || r.length !== 7 || typeof r[0] !== "string" || typeof r[2] !== "number") {
      throw new CorruptError(`The range ${where} has a malformed entry at index ${i}.`);
    }
    out[i] = {
      path: r[0] as string,
      address: r[1] as string,
      size: r[2] as number,
      sha256: r[3] as string,
      contentType: r[4] as string,
      mtime: r[5] as string,
      metadata: (r[6] ?? {}) as Record<string, string>,
    };
  }
  return out;
}

export function serializeMetarange(ranges: readonly RangeRef[]): string {
  const lines = ranges.map((r) =>
    JSON.stringify({ id: r.id, first: r.first, last: r.last, count: r.count, bytes: r.bytes }),
  );
  return `{"format":"${METARANGE_FORMAT}","version":${TREE_FORMAT_VERSION},"ranges":[\n${lines.join(",\n")}\n]}\n`;
}

export function parseMetarange(text: string, where: string): RangeRef[] {
  let doc: { format?: unknown; version?: unknown; ranges?: unknown };
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    throw new CorruptError(`The metarange ${where} is not valid JSON.`, { cause });
  }
  checkHeader(doc, METARANGE_FORMAT, where);
  if (!Array.isArray(doc.ranges)) throw new CorruptError(`The metarange ${where} has no ranges list.`);
  for (const [i, r] of (doc.ranges as RangeRef[]).entries()) {
    if (!r || typeof r.id !== "string" || typeof r.first !== "string" || typeof r.last !== "string") {
      throw new CorruptError(`The metarange ${where} has a malformed range at index ${i}.`);
    }
  }
  return doc.ranges as RangeRef[];
}

function checkHeader(doc: { format?: unknown; version?: unknown }, format: string, where: string): void {
  if (!doc || typeof doc !== "object" || doc.format !== format) {
    throw new CorruptError(`The object ${where} is not a ${format} document.`);
  }
  if (typeof doc.version !== "number" || Math.floor(doc.version) > TREE_FORMAT_VERSION) {
    throw new UnsupportedError(
      `The object ${where} has ${format} version ${String(doc.version)}, newer than this cairn reads (${TREE_FORMAT_VERSION}); upgrade cairn.`,
    );
  }
}
