import { Buffer } from "node:buffer";
import { InvalidArgumentError } from "@cairn/core";

/**
 * The folder, at the store's root, that holds the short-lived objects of the create-only probe (see
 * `createOnly=auto`). It is never listed, and no key may enter it.
 */
export const PROBE_FOLDER = ".cairn-probe";

/** S3's limit on the full object key (prefix and key), in bytes of UTF-8. */
export const MAX_KEY_BYTES = 1024;

const LONE_SURROGATE = /\p{Cs}/u;
// XML 1.0 cannot carry C0 control characters, so ListObjectsV2 could not return such keys intact.
const CONTROL = /[\u0000-\u001f]/;

/** A short, printable form of a key for messages (a 2,000-byte key would drown the sentence). */
export function showKey(key: string): string {
  return JSON.stringify(key.length > 80 ? `${key.slice(0, 60)}…` : key);
}

/**
 * Returns `key` when it is a valid object key for a store rooted at `root` (the prefix, "" or ending in "/"),
 * or throws `INVALID_ARGUMENT` saying why not.
 */
export function checkKey(key: unknown, root: string, url: string): string {
  if (typeof key !== "string" || key.length === 0) {
    throw new InvalidArgumentError(
      `An object key must be a non-empty string, got ${JSON.stringify(key)} (store ${url}).`,
    );
  }
  const why = keyProblem(key);
  if (why) throw new InvalidArgumentError(`The key ${showKey(key)} ${why} (store ${url}).`);
  const bytes = Buffer.byteLength(root) + Buffer.byteLength(key);
  if (bytes > MAX_KEY_BYTES) {
    throw new InvalidArgumentError(
      `The key ${showKey(key)} is too long: with the prefix it is ${bytes} bytes of UTF-8, S3 allows ${MAX_KEY_BYTES} (store ${url}).`,
    );
  }
  return key;
}

function keyProblem(key: string): string | undefined {
  if (key.startsWith("/")) return 'starts with "/"; keys are relative to the store\'s root';
  if (CONTROL.test(key)) return "contains a control character, which S3 listings cannot carry";
  if (LONE_SURROGATE.test(key)) return "is not valid Unicode (it has a lone surrogate)";
  const segments = key.split("/");
  if (segments.includes("")) return 'has an empty segment ("//" or a trailing "/")';
  if (segments.some((s) => s === "." || s === "..")) return 'has a "." or ".." segment';
  if (segments[0] === PROBE_FOLDER) return `is inside ${PROBE_FOLDER}/, which the store reserves`;
  return undefined;
}

/**
 * The part of `after` that a server may safely be asked to start after. S3 orders keys by UTF-8 bytes, but
 * some S3-compatible servers (s3rver) compare UTF-16 code units, and the two orders disagree only where a
 * surrogate meets a character from U+E000 to U+FFFF. Cut before the first code unit from U+D800 up, the
 * string compares the same in both orders, and it is a prefix of `after`, so nothing after `after` is
 * skipped; the store filters the rest itself.
 */
export function safeStartAfter(after: string): string {
  for (let i = 0; i < after.length; i++) if (after.charCodeAt(i) >= 0xd800) return after.slice(0, i);
  return after;
}
