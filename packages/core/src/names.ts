import { InvalidArgumentError } from "./errors.js";

const REPO_NAME = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;

/**
 * Repository names follow the rules of S3 bucket names without dots: 3 to 63 characters of lower-case
 * letters, digits and hyphens, starting and ending with a letter or digit.
 */
export function validateRepositoryName(name: string): string {
  if (typeof name !== "string" || !REPO_NAME.test(name) || name.includes("--")) {
    throw new InvalidArgumentError(
      `Invalid repository name "${name}": use 3 to 63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit.`,
    );
  }
  return name;
}

const REF_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/**
 * Branch and tag names: letters, digits, `_`, `.` and `-`, at most 255 characters, not starting with `.` or
 * `-`, without `..`, and not looking like a commit id (7 to 64 hex digits), so a ref always reads one way.
 */
export function validateRefName(name: string, what: "branch" | "tag"): string {
  const bad = (why: string): never => {
    throw new InvalidArgumentError(`Invalid ${what} name "${name}": ${why}.`);
  };
  if (typeof name !== "string" || name.length === 0) bad("it is empty");
  if (name.length > 255) bad("it is longer than 255 characters");
  if (!REF_NAME.test(name)) bad("use letters, digits, '_', '.' and '-', not starting with '.' or '-'");
  if (name.includes("..")) bad("it contains '..'");
  if (name.endsWith(".")) bad("it ends with '.'");
  if (/^[0-9a-f]{7,64}$/.test(name)) bad("it looks like a commit id");
  return name;
}

const MAX_PATH_BYTES = 1024;

/**
 * Object paths: relative, `/`-separated, at most 1024 bytes of UTF-8; no leading `/`, no empty segment (so
 * no trailing `/` and no `//`), no `.` or `..` segment, no NUL or other control character, valid Unicode.
 */
export function validatePath(path: string): string {
  const bad = (why: string): never => {
    throw new InvalidArgumentError(`Invalid object path ${JSON.stringify(path)}: ${why}.`);
  };
  if (typeof path !== "string" || path.length === 0) bad("it is empty");
  if (path.startsWith("/")) bad("it starts with '/'");
  if (!path.isWellFormed()) bad("it is not valid Unicode");
  if (/[\u0000-\u001f\u007f]/.test(path)) bad("it contains a control character");
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) bad(`it is longer than ${MAX_PATH_BYTES} bytes`);
  for (const segment of path.split("/")) {
    if (segment === "") bad("it has an empty segment");
    if (segment === "." || segment === "..") bad(`it has a '${segment}' segment`);
  }
  return path;
}

/** A path prefix for listing: like a path, but may be empty and may end with `/`. */
export function validatePrefix(prefix: string): string {
  if (prefix === "") return prefix;
  validatePath(prefix.endsWith("/") ? prefix.slice(0, -1) : prefix);
  return prefix;
}
