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
  return /Connection is closed|Stream isn't writeable|Command timed out|connect ETIMEDOUT|Reached the max retries|None of startup nodes is available|Failed to refresh slots cache|Cluster isn't ready|Cluster is (ended|disconnected|disconnecting)|Node is disconnected/i.test(
    detail,
  );
}

/** Messages of ioredis's Cluster that only say that something else failed; the error they wrap says what. */
const WRAPPERS = /^(Too many Cluster redirections\. Last error: (\w*Error: )?|Failed to refresh slots cache)/;

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
  context: { opening?: boolean; lastSocketError?: unknown; cluster?: boolean } = {},
): unknown {
  if (isCairnError(error)) return error;
  const cause = error;
  let detail = detailOf(error);
  // A command that kept being redirected, or a slot map no node would give, says why only in its last error.
  let reason: unknown = error;
  const wrapped = WRAPPERS.exec(detail);
  if (wrapped) {
    const last = (error as { lastNodeError?: unknown }).lastNodeError;
    if (wrapped[0].startsWith("Too")) detail = detail.slice(wrapped[0].length);
    else if (last) {
      reason = last;
      detail = detailOf(last);
    }
  }
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
  if (
    /^ERR (SELECT is not allowed in cluster mode|This instance has cluster support disabled)/i.test(detail)
  ) {
    return new InvalidArgumentError(
      context.cluster
        ? `Redis at ${location} is not a node of a Redis Cluster (${detail}); open it without ?cluster=true, with one host.`
        : `Redis at ${location} is a node of a Redis Cluster, which has database 0 only (${detail}); open it as a cluster: list its nodes (redis://host1:port1,host2:port2/…) or add ?cluster=true.`,
      { cause },
    );
  }
  if (/^(MOVED|ASK)\b/.test(detail)) {
    return context.cluster
      ? new UnavailableError(
          `The Redis Cluster at ${location} kept moving the slot of a key (${detail}); retry once its resharding is done.`,
          { cause },
        )
      : new InvalidArgumentError(
          `Redis at ${location} is a node of a Redis Cluster and does not hold every key (${detail}); open it as a cluster: list its nodes (redis://host1:port1,host2:port2/…) or add ?cluster=true.`,
          { cause },
        );
  }
  if (/^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN)\b/.test(detail)) {
    return new UnavailableError(`Redis at ${location} cannot serve requests right now (${detail}).`, {
      cause,
    });
  }
  if (isConnectionError(reason, detail)) {
    // ioredis's words for a cluster client between two connections, which calls do not wait for.
    if (/^Cluster isn't ready and enableOfflineQueue/.test(detail))
      detail = "the cluster is being reconnected";
    const socket = context.lastSocketError;
    if (
      socket !== undefined &&
      socket !== error &&
      /Connection is closed|Stream isn't writeable|None of startup nodes is available|Failed to refresh slots cache/i.test(
        detail,
      )
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
