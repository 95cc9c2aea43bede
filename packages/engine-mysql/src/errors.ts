import {
  InvalidArgumentError,
  isCairnError,
  NotFoundError,
  PermissionDeniedError,
  UnavailableError,
  UnsupportedError,
} from "@cairn/core";

/** The fields of a mysql2 error the mapping reads. */
interface DriverError {
  code?: unknown;
  errno?: unknown;
  sqlMessage?: unknown;
  message?: unknown;
}

/** The error code of a mysql2 or socket error (`ER_ACCESS_DENIED_ERROR`, `ECONNREFUSED`…), if any. */
export function driverCode(error: unknown): string | undefined {
  const code = (error as DriverError | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** Whether `error` means the transaction was rolled back by the server and can simply be run again. */
export function isRetryable(error: unknown): boolean {
  const code = driverCode(error);
  return code === "ER_LOCK_DEADLOCK" || code === "ER_LOCK_WAIT_TIMEOUT";
}

function detail(error: unknown): string {
  const e = error as DriverError | null;
  const text = typeof e?.sqlMessage === "string" ? e.sqlMessage : error instanceof Error ? error.message : "";
  return text || String(error);
}

/** What went wrong, with the URL of the server, in the words a user can act on; see {@link mapMysqlError}. */
export interface ErrorContext {
  /** The engine's URL with its password hidden. */
  url: string;
  /** While connecting: anything unknown means the server could not be used. */
  opening?: boolean;
  /** Milliseconds a connection attempt may take, for the timeout message. */
  connectTimeout: number;
  /** The server's `max_allowed_packet`, for the message on too large statements. */
  maxPacket?: number;
}

/**
 * Maps an error thrown by mysql2 (or the socket under it) to one of core's errors with one sentence naming the
 * server's URL, the password hidden. Errors that are already cairn's pass through; unknown server errors are
 * returned unchanged (they are bugs), except while connecting, where anything means the server is unusable.
 */
export function mapMysqlError(error: unknown, context: ErrorContext): unknown {
  if (isCairnError(error)) return error;
  const cause = error;
  const { url } = context;
  switch (driverCode(error)) {
    case "ECONNREFUSED":
      return new UnavailableError(`Cannot connect to the MySQL server at ${url}: connection refused.`, {
        cause,
      });
    case "ETIMEDOUT":
    case "PROTOCOL_SEQUENCE_TIMEOUT":
      return new UnavailableError(
        `Cannot connect to the MySQL server at ${url}: no answer within ${context.connectTimeout} ms.`,
        { cause },
      );
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return new UnavailableError(`Cannot connect to the MySQL server at ${url}: unknown host.`, { cause });
    case "EHOSTUNREACH":
    case "ENETUNREACH":
    case "ECONNRESET":
    case "EPIPE":
    case "PROTOCOL_CONNECTION_LOST":
    case "ER_SERVER_SHUTDOWN":
    case "ER_CON_COUNT_ERROR":
    case "ER_TOO_MANY_USER_CONNECTIONS":
    case "ER_HOST_IS_BLOCKED":
      return new UnavailableError(`The MySQL server at ${url} is unavailable (${detail(error)}).`, { cause });
    case "ER_LOCK_DEADLOCK":
    case "ER_LOCK_WAIT_TIMEOUT":
      return new UnavailableError(
        `The MySQL server at ${url} kept a row locked by another transaction; try again (${detail(error)}).`,
        { cause },
      );
    case "ER_ACCESS_DENIED_ERROR":
    case "ER_ACCESS_DENIED_NO_PASSWORD_ERROR":
    case "ER_NOT_SUPPORTED_AUTH_MODE":
      return new PermissionDeniedError(
        `The MySQL server at ${url} refused the credentials (${detail(error)}).`,
        { cause },
      );
    case "ER_DBACCESS_DENIED_ERROR":
    case "ER_TABLEACCESS_DENIED_ERROR":
    case "ER_COLUMNACCESS_DENIED_ERROR":
    case "ER_SPECIFIC_ACCESS_DENIED_ERROR":
      return new PermissionDeniedError(`The MySQL user of ${url} lacks a privilege (${detail(error)}).`, {
        cause,
      });
    case "ER_OPTION_PREVENTS_STATEMENT":
    case "ER_READ_ONLY_MODE":
      return new PermissionDeniedError(`The MySQL server at ${url} refuses writes (${detail(error)}).`, {
        cause,
      });
    case "ER_NET_PACKET_TOO_LARGE":
      return new InvalidArgumentError(
        `A statement was too large for the MySQL server at ${url}${
          context.maxPacket ? ` (max_allowed_packet is ${context.maxPacket} bytes)` : ""
        }; raise max_allowed_packet on the server.`,
        { cause },
      );
    case "ER_BAD_DB_ERROR":
      return new NotFoundError(`The database of ${url} does not exist (${detail(error)}).`, { cause });
    case "ER_WRONG_DB_NAME":
    case "ER_TOO_LONG_IDENT":
      return new InvalidArgumentError(`${url} names a database MySQL does not allow (${detail(error)}).`, {
        cause,
      });
    case "ER_TOO_LONG_KEY":
      return new UnsupportedError(
        `The MySQL server at ${url} cannot index cairn's keys (${detail(error)}); it needs InnoDB with 16 KiB pages.`,
        { cause },
      );
    case "ER_RECORD_FILE_FULL":
    case "ER_DISK_FULL":
    case "ER_OUT_OF_RESOURCES":
    case "ER_OUTOFMEMORY":
      return new UnavailableError(
        `The MySQL server at ${url} is out of space or memory (${detail(error)}).`,
        {
          cause,
        },
      );
    default:
      if (context.opening) {
        return new UnavailableError(`Cannot use the MySQL server at ${url} (${detail(error)}).`, { cause });
      }
      return error;
  }
}
