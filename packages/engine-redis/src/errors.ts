import {
  CorruptError,
  InvalidArgumentError,
  isCairnError,
  PermissionDeniedError,
  UnavailableError,
} from "@cairn/core";

/** The first line of an error's message, without a trailing full stop, for quoting inside a sentence. */
export function detailOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return (message.split("\n", 1)[0] ?? "").replace(/\.$/, "");
}

/** Errors that mean the server could not be reached or stopped answering (ioredis or Node's socket errors). */
function isConnectionError(error: unknown, detail: string): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string" && /^(E[A-Z]+|ERR_TLS_.*|ERR_SSL_.*|[A-Z_]*CERT[A-Z_]*)$/.test(code))
    return true;
  const name = (error as { name?: unknown } | null)?.name;
  if (name === "MaxRetriesPerRequestError" || name === "AbortError") return true;
  return /Connection is closed|Stream isn't writeable|Command timed out|connect ETIMEDOUT|Reached the max retries/i.test(
    detail,
  );
}

/**
 * Maps an error of ioredis or of the Redis server to one of core's errors with a sentence naming the Redis URL
 * (password hidden). Errors that are already cairn's pass through. While `opening`, anything unknown means the
 * server could not be used; afterwards an unknown error is returned unchanged: it is a bug, not a user's mistake.
 *
 * @param lastSocketError The last error the connection reported, which says more than "Connection is closed".
 */
export function mapRedisError(
  error: unknown,
  location: string,
  context: { opening?: boolean; lastSocketError?: unknown } = {},
): unknown {
  if (isCairnError(error)) return error;
  const cause = error;
  let detail = detailOf(error);
  if (
    /^(WRONGPASS|NOAUTH|NOPERM)\b/.test(detail) ||
    /AUTH .*without any password configured|no password is set/i.test(detail)
  ) {
    return new PermissionDeniedError(`Redis at ${location} refused the credentials (${detail}).`, { cause });
  }
  if (/^ERR (invalid )?DB index is out of range/i.test(detail)) {
    return new InvalidArgumentError(`The database number of ${location} is out of range (${detail}).`, {
      cause,
    });
  }
  if (/^WRONGTYPE\b/.test(detail)) {
    return new CorruptError(
      `A key cairn uses at ${location} holds another type of value, so something other than cairn wrote it (${detail}).`,
      { cause },
    );
  }
  if (/^READONLY\b/.test(detail)) {
    return new PermissionDeniedError(`Redis at ${location} is read-only here (${detail}).`, { cause });
  }
  if (/^OOM\b/.test(detail)) {
    return new UnavailableError(`Redis at ${location} is out of memory (${detail}).`, { cause });
  }
  if (/^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN)\b/.test(detail)) {
    return new UnavailableError(`Redis at ${location} cannot serve requests right now (${detail}).`, {
      cause,
    });
  }
  if (isConnectionError(error, detail)) {
    const socket = context.lastSocketError;
    if (
      socket !== undefined &&
      socket !== error &&
      /Connection is closed|Stream isn't writeable/i.test(detail)
    ) {
      detail = detailOf(socket);
    }
    return new UnavailableError(`Cannot reach Redis at ${location} (${detail}).`, { cause });
  }
  if (context.opening) {
    return new UnavailableError(`Cannot use Redis at ${location} (${detail}).`, { cause });
  }
  return error;
}
