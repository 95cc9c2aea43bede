import {
  CorruptError,
  InvalidArgumentError,
  isCairnError,
  PermissionDeniedError,
  UnavailableError,
} from "@cairn/core";

/** The SQLite result code of a better-sqlite3 error (e.g. `SQLITE_BUSY` for `SQLITE_BUSY_SNAPSHOT`), if any. */
function primaryCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !code.startsWith("SQLITE_")) return undefined;
  const m = /^SQLITE_[A-Z]+/.exec(code);
  return m?.[0];
}

/**
 * Maps an error thrown by better-sqlite3 to one of core's errors with a sentence naming the file. Errors that
 * are already cairn's pass through; errors without a known SQLite code are returned unchanged (they are bugs),
 * except while opening, where anything means the file could not be used.
 */
export function mapSqliteError(
  error: unknown,
  file: string,
  context: { opening?: boolean; busyTimeout: number },
): unknown {
  if (isCairnError(error)) return error;
  const cause = error;
  const detail = error instanceof Error ? error.message : String(error);
  switch (primaryCode(error)) {
    case "SQLITE_NOTADB":
      return new InvalidArgumentError(`${file} is not a SQLite database (${detail}).`, { cause });
    case "SQLITE_CORRUPT":
      return new CorruptError(`The SQLite database ${file} is corrupt (${detail}).`, { cause });
    case "SQLITE_CANTOPEN":
      return new UnavailableError(`Cannot open the SQLite database ${file} (${detail}).`, { cause });
    case "SQLITE_BUSY":
    case "SQLITE_LOCKED":
      return new UnavailableError(
        `The SQLite database ${file} stayed locked by another connection for more than ${context.busyTimeout} ms.`,
        { cause },
      );
    case "SQLITE_READONLY":
    case "SQLITE_PERM":
    case "SQLITE_AUTH":
      return new PermissionDeniedError(`The SQLite database ${file} cannot be written here (${detail}).`, {
        cause,
      });
    case "SQLITE_FULL":
      return new UnavailableError(`The disk holding the SQLite database ${file} is full.`, { cause });
    case "SQLITE_IOERR":
      return new UnavailableError(`Reading or writing the SQLite database ${file} failed (${detail}).`, {
        cause,
      });
    case "SQLITE_TOOBIG":
      return new InvalidArgumentError(`A value is too big for the SQLite database ${file}.`, { cause });
    default:
      if (context.opening)
        return new UnavailableError(`Cannot open the SQLite database ${file} (${detail}).`, { cause });
      return error;
  }
}
