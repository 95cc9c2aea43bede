import { type ErrorCode, isCairnError } from "@cairn/core";
import { CommanderError } from "commander";

/** A mistake in how the command line was written: unknown option, missing argument, malformed URI. */
export class UsageError extends Error {
  readonly code = "USAGE";
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * Exit statuses, one per kind of failure, so scripts can tell them apart. Documented in the README; never
 * renumber one, only add.
 */
export const EXIT = {
  OK: 0,
  /** An unexpected error: a bug in cairn. The stack is printed. */
  INTERNAL: 1,
  /** The command line is wrong: unknown command or option, missing argument, malformed cairn:// URI. */
  USAGE: 2,
  INVALID_ARGUMENT: 3,
  /** A repository, branch, tag, commit, object or local file does not exist. */
  NOT_FOUND: 4,
  ALREADY_EXISTS: 5,
  /** A merge conflict, or a branch that kept changing under concurrent writers. */
  CONFLICT: 6,
  PRECONDITION_FAILED: 7,
  CORRUPT: 8,
  UNSUPPORTED: 9,
  UNAVAILABLE: 10,
  PERMISSION_DENIED: 11,
  /** Reading or writing a local file failed (disk full, not a directory, …). */
  LOCAL_IO: 12,
  /** Interrupted by Ctrl-C (SIGINT). */
  INTERRUPTED: 130,
} as const;

const BY_CODE: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: EXIT.INVALID_ARGUMENT,
  NOT_FOUND: EXIT.NOT_FOUND,
  ALREADY_EXISTS: EXIT.ALREADY_EXISTS,
  CONFLICT: EXIT.CONFLICT,
  PRECONDITION_FAILED: EXIT.PRECONDITION_FAILED,
  CORRUPT: EXIT.CORRUPT,
  UNSUPPORTED: EXIT.UNSUPPORTED,
  UNAVAILABLE: EXIT.UNAVAILABLE,
  PERMISSION_DENIED: EXIT.PERMISSION_DENIED,
};

/** Node's errors from the file system carry an `errno` code and the `path` they concern. */
interface SystemError extends Error {
  code: string;
  syscall?: string;
  path?: string;
  dest?: string;
}

const SYSTEM: Record<string, { status: number; code: string; text: string }> = {
  ENOENT: { status: EXIT.NOT_FOUND, code: "NOT_FOUND", text: "no such file or directory" },
  EEXIST: { status: EXIT.ALREADY_EXISTS, code: "ALREADY_EXISTS", text: "already exists" },
  EACCES: { status: EXIT.PERMISSION_DENIED, code: "PERMISSION_DENIED", text: "permission denied" },
  EPERM: { status: EXIT.PERMISSION_DENIED, code: "PERMISSION_DENIED", text: "operation not permitted" },
  EROFS: { status: EXIT.PERMISSION_DENIED, code: "PERMISSION_DENIED", text: "read-only file system" },
  EISDIR: { status: EXIT.INVALID_ARGUMENT, code: "INVALID_ARGUMENT", text: "is a directory" },
  ENOTDIR: { status: EXIT.INVALID_ARGUMENT, code: "INVALID_ARGUMENT", text: "not a directory" },
  ENOSPC: { status: EXIT.LOCAL_IO, code: "LOCAL_IO", text: "no space left on device" },
  EMFILE: { status: EXIT.LOCAL_IO, code: "LOCAL_IO", text: "too many open files" },
  EIO: { status: EXIT.LOCAL_IO, code: "LOCAL_IO", text: "input/output error" },
};

function isSystemError(e: unknown): e is SystemError {
  return (
    e instanceof Error &&
    typeof (e as Partial<SystemError>).code === "string" &&
    typeof (e as Partial<SystemError>).syscall === "string"
  );
}

/** What the top-level catch prints and returns for an error. */
export interface ErrorReport {
  status: number;
  /** A stable code for `--json` output: one of core's codes, `USAGE`, `LOCAL_IO` or `INTERNAL`. */
  code: string;
  /** One line, without the `cairn: ` prefix; empty when commander has printed what was needed already. */
  message: string;
  /** Conflicting paths of a merge (a ConflictError's `paths`), printed one per line after the message. */
  paths?: readonly string[];
  /** Printed for unexpected errors only. */
  stack?: string;
}

const oneLine = (s: string) => s.replace(/\s*\n\s*/g, " ").trim();

/** Maps any error to its report: the single place where errors become messages and exit statuses. */
export function describeError(e: unknown): ErrorReport {
  if (e instanceof CommanderError) {
    if (e.code === "commander.helpDisplayed" || e.code === "commander.version") {
      return { status: EXIT.OK, code: "OK", message: "" };
    }
    // `cairn` or `cairn repo` alone: commander has printed the help to stderr.
    if (e.code === "commander.help") return { status: EXIT.USAGE, code: "USAGE", message: "" };
    return { status: EXIT.USAGE, code: "USAGE", message: oneLine(e.message.replace(/^error: /, "")) };
  }
  if (e instanceof UsageError) return { status: EXIT.USAGE, code: "USAGE", message: oneLine(e.message) };
  if (isCairnError(e) && e.code in BY_CODE) {
    const report: ErrorReport = { status: BY_CODE[e.code], code: e.code, message: oneLine(e.message) };
    const paths = (e as { paths?: unknown }).paths;
    if (e.code === "CONFLICT" && Array.isArray(paths) && paths.length > 0) report.paths = paths as string[];
    return report;
  }
  if (isSystemError(e)) {
    const known = SYSTEM[e.code];
    if (known) {
      const where = e.path ? `${e.path}: ` : "";
      return { status: known.status, code: known.code, message: `${where}${known.text}` };
    }
    return { status: EXIT.LOCAL_IO, code: "LOCAL_IO", message: oneLine(e.message) };
  }
  const err = e instanceof Error ? e : new Error(String(e));
  return {
    status: EXIT.INTERNAL,
    code: "INTERNAL",
    message: `unexpected error: ${oneLine(err.message)}`,
    stack: err.stack ?? String(err),
  };
}

/** Writes a report to stderr, as text or as one JSON document. */
export function printError(report: ErrorReport, write: (s: string) => void, json: boolean): void {
  if (report.status === EXIT.OK) return;
  if (json) {
    if (report.message === "") return;
    const error: Record<string, unknown> = {
      code: report.code,
      status: report.status,
      message: report.message,
    };
    if (report.paths) error.paths = report.paths;
    if (report.stack) error.stack = report.stack;
    write(`${JSON.stringify({ error })}\n`);
    return;
  }
  if (report.message !== "") write(`cairn: ${report.message}\n`);
  if (report.paths) {
    write(`conflicting paths (${report.paths.length}):\n`);
    for (const p of report.paths) write(`  ${p}\n`);
  }
  if (report.stack) {
    write(`${report.stack}\n`);
    write(
      "cairn: this is a bug in cairn. Please report it with the command you ran, `cairn --version` and the output above.\n",
    );
  }
}
