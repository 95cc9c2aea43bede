import { compareKeys, InvalidArgumentError } from "@cairn/core";

const LONE_SURROGATE = /\p{Cs}/u;
const CONTROL = /[\u0000-\u001f]/;

/** Why `name` (a key, or a whole blob name) cannot be a key of this store, or `undefined` when it can. */
export function keyProblem(key: string): string | undefined {
  if (key.startsWith("/")) return 'starts with "/"; keys are relative to the store\'s root';
  if (LONE_SURROGATE.test(key)) return "is not valid Unicode (it has a lone surrogate)";
  // Listings are XML, which cannot carry most control characters and turns CR into LF.
  if (CONTROL.test(key)) return "has a control character, which Azure Blob Storage cannot list";
  // The service reads "\\" in a blob URL as "/", so "a\\b" would be stored as "a/b".
  if (key.includes("\\")) return 'has a "\\", which Azure Blob Storage turns into "/"';
  const segments = key.split("/");
  if (segments.includes("")) return 'has an empty segment ("//" or a trailing "/")';
  if (segments.some((s) => s === "." || s === "..")) return 'has a "." or ".." segment';
  // Azure Blob Storage silently drops trailing dots of path segments ("a./b" is stored as "a/b"), so such a
  // key would be written under another name: refuse it rather than lose it.
  if (segments.some((s) => s.endsWith("."))) {
    return 'has a segment ending in "." (Azure Blob Storage drops trailing dots from names)';
  }
  return undefined;
}

/** Azure's limit on the length of a blob name, in characters (checked here in UTF-16 code units). */
export const MAX_NAME = 1024;

/**
 * Returns `key` when it is a valid object key whose blob name (with the store's `root` prefix) Azure takes, or
 * throws `INVALID_ARGUMENT` naming the key, why, and the store.
 */
export function checkKey(key: unknown, url: string, root = ""): string {
  if (typeof key !== "string" || key.length === 0) {
    throw new InvalidArgumentError(
      `An object key must be a non-empty string, got ${JSON.stringify(key)} (store ${url}).`,
    );
  }
  const why = keyProblem(key);
  if (why) throw new InvalidArgumentError(`The key ${JSON.stringify(key)} ${why} (store ${url}).`);
  // Checked here because emulators do not enforce it; the service answers the same with OutOfRangeInput.
  const length = root.length + blobNameOf(key).length;
  if (length > MAX_NAME) {
    throw new InvalidArgumentError(
      `The key ${JSON.stringify(key.length > 60 ? `${key.slice(0, 60)}…` : key)} makes a blob name of ${length} characters in ${url}; Azure Blob Storage allows at most 1,024.`,
    );
  }
  return key;
}

/**
 * The blob name of a key: the key itself, except that U+FFFE and U+FFFF, which XML listings cannot carry, are
 * written as U+FFFD followed by "1" or "2", and U+FFFD itself as U+FFFD "0". The mapping keeps the service's
 * order of names and prefixes: U+FFFD "0" < U+FFFD "1" < U+FFFD "2" sort where the three characters did.
 */
export function blobNameOf(key: string): string {
  return key.replace(/[\ufffd-\uffff]/g, (c) => `\ufffd${c.charCodeAt(0) - 0xfffd}`);
}

/** The key of a blob name written by {@link blobNameOf}, or `undefined` when no key has that name. */
export function keyOfBlobName(name: string): string | undefined {
  if (!name.includes("\ufffd")) return name;
  let bad = false;
  const key = name.replace(/\ufffd(.?)/gs, (_, next: string) => {
    if (next === "0" || next === "1" || next === "2") return String.fromCharCode(0xfffd + Number(next));
    bad = true;
    return "";
  });
  return bad ? undefined : key;
}

const isSurrogate = (c: number) => c >= 0xd800 && c <= 0xdfff;

/** Index of the first UTF-16 surrogate in `s` at or after `from`, or -1. */
function firstSurrogate(s: string, from: number): number {
  for (let i = from; i < s.length; i++) if (isSurrogate(s.charCodeAt(i))) return i;
  return -1;
}

/**
 * Turns names listed in UTF-16 code unit order — the order Azure Blob Storage and Azurite list in — into UTF-8
 * byte order, the order the store contract promises. The two orders differ only where a surrogate pair
 * (U+10000 and above) meets a character in U+E000..U+FFFF at the first differing position: UTF-16 puts the pair
 * first, UTF-8 last. So a name with a surrogate is held back only while later names may still share its text
 * before that surrogate; every other name passes straight through. Memory grows only with the number of
 * names that have a character above U+FFFF at the same position after a common start.
 *
 * @param names Items in UTF-16 order of `keyOf`, all starting with a common text of `commonLength` units.
 */
export async function* utf8Order<T>(
  names: AsyncIterable<T>,
  keyOf: (item: T) => string,
  commonLength: number,
): AsyncGenerator<T> {
  // Held-back items, kept sorted in byte order; each with the text before its first surrogate.
  const pending: { item: T; key: string; stem: string | undefined }[] = [];
  const emitReady = function* (next: string | undefined): Generator<T> {
    while (pending.length > 0) {
      const first = pending[0]!;
      // Once the input has left `stem`, no later name can sort before `first` in byte order.
      if (next !== undefined && first.stem !== undefined && next.startsWith(first.stem)) return;
      pending.shift();
      yield first.item;
    }
  };
  for await (const item of names) {
    const key = keyOf(item);
    yield* emitReady(key);
    const at = firstSurrogate(key, commonLength);
    if (pending.length === 0 && at < 0) {
      yield item;
      continue;
    }
    const entry = { item, key, stem: at < 0 ? undefined : key.slice(0, at) };
    let lo = 0;
    let hi = pending.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareKeys(pending[mid]!.key, key) < 0) lo = mid + 1;
      else hi = mid;
    }
    pending.splice(lo, 0, entry);
    yield* emitReady(key);
  }
  yield* emitReady(undefined);
}
