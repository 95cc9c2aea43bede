import { createHash } from "node:crypto";
import { expect } from "vitest";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export const utf8 = (s: string): Uint8Array => encoder.encode(s);
export const fromUtf8 = (b: Uint8Array): string => decoder.decode(b);

export const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

function describeBytes(b: Uint8Array): string {
  const head = Buffer.from(b.subarray(0, 16)).toString("hex");
  return `${b.length} bytes (${head}${b.length > 16 ? "…" : ""}, sha256 ${sha256(b).slice(0, 12)})`;
}

/** Asserts that `actual` is a `Uint8Array` holding exactly `expected`, with a short message for large values. */
export function expectBytes(actual: unknown, expected: Uint8Array, what = "value"): void {
  if (!(actual instanceof Uint8Array)) {
    expect.fail(
      `${what}: expected ${describeBytes(expected)}, got ${actual === undefined ? "undefined" : typeof actual}`,
    );
  }
  if (Buffer.compare(actual, expected) !== 0) {
    expect.fail(`${what}: expected ${describeBytes(expected)}, got ${describeBytes(actual)}`);
  }
}

/** Bytes from a deterministic generator (xorshift), cheap to produce in any amount. */
export function pseudoRandomBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 0x9e3779b9;
  for (let i = 0; i < length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
    if (i + 1 < length) out[i + 1] = (x >>> 8) & 0xff;
    if (i + 2 < length) out[i + 2] = (x >>> 16) & 0xff;
    if (i + 3 < length) out[i + 3] = (x >>> 24) & 0xff;
  }
  return out;
}
