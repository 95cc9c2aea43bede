import { InvalidArgumentError } from "@cairn/core";

/** The folder at the store's root that holds objects being written. It is never listed, and no key may enter it. */
export const TEMP_FOLDER = ".cairn-tmp";

const LONE_SURROGATE = /\p{Cs}/u;

/** Returns `key` when it is a valid object key for a folder store, or throws `INVALID_ARGUMENT` saying why not. */
export function checkKey(key: unknown, url: string): string {
  if (typeof key !== "string" || key.length === 0) {
    throw new InvalidArgumentError(
      `An object key must be a non-empty string, got ${JSON.stringify(key)} (store ${url}).`,
    );
  }
  const why = keyProblem(key);
  if (why) throw new InvalidArgumentError(`The key ${JSON.stringify(key)} ${why} (store ${url}).`);
  return key;
}

function keyProblem(key: string): string | undefined {
  if (key.startsWith("/")) return 'starts with "/"; keys are relative to the store\'s root';
  if (key.includes("\u0000")) return "contains a NUL character, which no file name can hold";
  if (LONE_SURROGATE.test(key)) return "is not valid Unicode (it has a lone surrogate)";
  const segments = key.split("/");
  if (segments.includes("")) return 'has an empty segment ("//" or a trailing "/")';
  if (segments.some((s) => s === "." || s === "..")) return 'has a "." or ".." segment';
  if (segments[0] === TEMP_FOLDER)
    return `is inside ${TEMP_FOLDER}/, which the store reserves for writes in progress`;
  return undefined;
}

/** Whether every whole segment of `folder` (a prefix ending in "/", or "") could belong to a valid key. */
export function isListableFolder(folder: string): boolean {
  return folder === "" || keyProblem(folder.slice(0, -1)) === undefined;
}
