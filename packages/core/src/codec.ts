import { createHash } from "node:crypto";
import { CorruptError } from "./errors.js";

const decoder = new TextDecoder("utf-8", { fatal: true });

// Buffer.from allocates small results from Node's pool; TextEncoder gives each its own ArrayBuffer, at several
// times the cost when a load encodes a million records.
export const utf8 = (s: string): Uint8Array => Buffer.from(s, "utf8");
export const fromUtf8 = (b: Uint8Array): string => decoder.decode(b);

/** Encodes a record stored in the engine. Key order is the construction order, so equal records give equal bytes. */
export function encodeJson(value: unknown): Uint8Array {
  return utf8(JSON.stringify(value));
}

/** Decodes a record stored in the engine; `where` names it in the error when it is not valid JSON. */
export function decodeJson<T>(bytes: Uint8Array, where: string): T {
  try {
    return JSON.parse(decoder.decode(bytes)) as T;
  } catch (cause) {
    throw new CorruptError(`The metadata record ${where} is not valid JSON.`, { cause });
  }
}

/** JSON with object keys sorted at every level: the form hashed into content-addressed ids. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = sortKeys(v);
    }
    return out;
  }
  return value;
}

export const sha256Hex = (data: string | Uint8Array): string =>
  createHash("sha256").update(data).digest("hex");

export function bytesEqual(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  return Buffer.compare(a, b) === 0;
}
