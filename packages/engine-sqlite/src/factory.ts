import { type EngineFactory, InvalidArgumentError, urlScheme } from "@cairn/core";
import { createSqliteEngine, type SqliteEngine, type SqliteEngineOptions } from "./sqlite-engine.js";

const PARAMS = ["busyTimeout", "synchronous", "pageSize"] as const;

function wholeNumber(url: string, name: string, raw: string, min: number): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min) {
    throw new InvalidArgumentError(`The parameter ${name}=${raw} in ${url} must be a whole number ≥ ${min}.`);
  }
  return n;
}

/**
 * Reads the options of a `sqlite://` URL: `sqlite://./relative/meta.db` (relative to the working directory),
 * `sqlite:///absolute/meta.db`, or `sqlite://:memory:`, with optional parameters `busyTimeout`, `synchronous`
 * and `pageSize`. The path is percent-decoded, so `%20` is a space and a literal `%`, `?` or `#` must be
 * written `%25`, `%3F`, `%23`.
 */
export function parseSqliteUrl(url: string): SqliteEngineOptions {
  if (urlScheme(url) !== "sqlite" || !/^[a-z]+:\/\//i.test(url)) {
    throw new InvalidArgumentError(
      `"${url}" is not a SQLite URL; expected sqlite://./path/meta.db or sqlite:///abs/meta.db.`,
    );
  }
  const rest = url.slice(url.indexOf("://") + 3);
  const q = rest.indexOf("?");
  const rawPath = q >= 0 ? rest.slice(0, q) : rest;
  let filename: string;
  try {
    filename = decodeURIComponent(rawPath);
  } catch (cause) {
    throw new InvalidArgumentError(`The path of ${url} has a malformed percent-escape.`, { cause });
  }
  if (filename === "" || filename.endsWith("/")) {
    throw new InvalidArgumentError(
      `${url} names no database file; expected sqlite://./path/meta.db or sqlite:///abs/meta.db.`,
    );
  }
  const options: SqliteEngineOptions = { filename };
  for (const [name, value] of new URLSearchParams(q >= 0 ? rest.slice(q + 1) : "")) {
    switch (name) {
      case "busyTimeout":
        options.busyTimeout = wholeNumber(url, name, value, 0);
        break;
      case "pageSize":
        options.pageSize = wholeNumber(url, name, value, 1);
        break;
      case "synchronous":
        if (value !== "full" && value !== "normal") {
          throw new InvalidArgumentError(
            `The parameter synchronous=${value} in ${url} must be "full" or "normal".`,
          );
        }
        options.synchronous = value;
        break;
      default:
        throw new InvalidArgumentError(
          `Unknown parameter "${name}" in ${url}; supported: ${PARAMS.join(", ")}.`,
        );
    }
  }
  return options;
}

/** An {@link EngineFactory} whose engines are typed as {@link SqliteEngine}. */
export interface SqliteEngineFactory extends EngineFactory {
  open(url: string): Promise<SqliteEngine>;
}

/** Opens SQLite engines from `sqlite://` URLs; see {@link parseSqliteUrl}. */
export const factory: SqliteEngineFactory = Object.freeze({
  schemes: Object.freeze(["sqlite"]),
  async open(url: string): Promise<SqliteEngine> {
    return createSqliteEngine(parseSqliteUrl(url));
  },
});
