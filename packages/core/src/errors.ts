/** Stable error codes. Check errors with {@link hasCode}, never with `instanceof`: a class can exist twice in a workspace. */
export type ErrorCode =
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "CONFLICT"
  | "INVALID_ARGUMENT"
  | "PRECONDITION_FAILED"
  | "CORRUPT"
  | "UNSUPPORTED"
  | "UNAVAILABLE"
  | "PERMISSION_DENIED";

/** Base class of every error cairn raises on purpose. `message` is one sentence fit to show a user. */
export class CairnError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A repository, branch, tag, commit, object or key does not exist. */
export class NotFoundError extends CairnError {
  constructor(message: string, options?: ErrorOptions) {
    super("NOT_FOUND", message, options);
  }
}

/** Something that must be created does exist already. */
export class AlreadyExistsError extends CairnError {
  constructor(message: string, options?: ErrorOptions) {
    super("ALREADY_EXISTS", message, options);
  }
}

/** A concurrent change or a merge conflict; `paths` lists conflicting object paths when there are any. */
export class ConflictError extends CairnError {
  readonly paths: readonly string[];
  constructor(message: string, options?: ErrorOptions & { paths?: readonly string[] }) {
    super("CONFLICT", message, options);
    this.paths = options?.paths ?? [];
  }
}

/** A name, path, URL, option or document the user gave is not valid. */
export class InvalidArgumentError extends CairnError {
  constructor(message: string, options?: ErrorOptions) {
    super("INVALID_ARGUMENT", message, options);
  }
}

/** The operation is valid, but the state it needs does not hold (e.g. an empty commit, a non-bare target). */
export class PreconditionFailedError extends CairnError {
  constructor(message: string, options?: ErrorOptions) {
    super("PRECONDITION_FAILED", message, options);
  }
}

/** Stored data does not match its digest or format. */
export class CorruptError extends CairnError {
  constructor(message: string, options?: ErrorOptions) {
    super("CORRUPT", message, options);
  }
}

/** A URL scheme, format version or feature this build does not support. */
export class UnsupportedError extends CairnError {
  constructor(message: string, options?: ErrorOptions) {
    super("UNSUPPORTED", message, options);
  }
}

/** A server or service could not be reached, or timed out. */
export class UnavailableError extends CairnError {
  constructor(message: string, options?: ErrorOptions) {
    super("UNAVAILABLE", message, options);
  }
}

/** Credentials were refused. */
export class PermissionDeniedError extends CairnError {
  constructor(message: string, options?: ErrorOptions) {
    super("PERMISSION_DENIED", message, options);
  }
}

const CODES: ReadonlySet<string> = new Set<ErrorCode>([
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "CONFLICT",
  "INVALID_ARGUMENT",
  "PRECONDITION_FAILED",
  "CORRUPT",
  "UNSUPPORTED",
  "UNAVAILABLE",
  "PERMISSION_DENIED",
]);

/** An error cairn raised on purpose (not, say, Node's `ENOENT`, whose `code` is a string too). */
export const isCairnError = (e: unknown): e is CairnError =>
  e instanceof Error && CODES.has((e as Partial<CairnError>).code as string);

export const hasCode = (e: unknown, code: ErrorCode): e is CairnError =>
  e instanceof Error && (e as Partial<CairnError>).code === code;
