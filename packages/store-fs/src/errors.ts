import {
  AlreadyExistsError,
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  UnavailableError,
} from "@cairn/core";

/** What the store was doing, for messages: "write", "read", "delete", "list" or "copy to". */
export type FsAction = "write" | "read" | "delete" | "list" | "copy to";

/**
 * Maps a Node.js file system error to one of core's errors with one sentence naming the key and the store URL.
 * Errors without a known `code` are returned unchanged: they are bugs, not conditions a user can act on.
 */
export function mapFsError(error: unknown, key: string, url: string, action: FsAction): unknown {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  if (typeof code !== "string") return error;
  const cause = error;
  const what = `"${key}" in ${url}`;
  switch (code) {
    case "ENOENT":
      return new NotFoundError(`No object ${what}.`, { cause });
    case "EEXIST":
      return new AlreadyExistsError(`The object ${what} already exists.`, { cause });
    case "EACCES":
    case "EPERM":
    case "EROFS":
      return new PermissionDeniedError(`Permission denied to ${action} ${what} (${code}).`, { cause });
    case "ENAMETOOLONG":
      return new InvalidArgumentError(`The key ${what} is too long for the file system.`, { cause });
    case "EINVAL":
    case "EILSEQ":
      return new InvalidArgumentError(`The file system does not accept the key ${what} (${code}).`, {
        cause,
      });
    case "ENOTDIR":
    case "EISDIR":
      return new ConflictError(
        `The key ${what} collides with another key: a folder store cannot hold both "a" and "a/b".`,
        { cause },
      );
    case "ENOSPC":
    case "EDQUOT":
      return new UnavailableError(`No space left to ${action} ${what}.`, { cause });
    case "EMFILE":
    case "ENFILE":
    case "EIO":
    case "EBUSY":
    case "EAGAIN":
    case "ESTALE":
    case "ETIMEDOUT":
      return new UnavailableError(`Cannot ${action} ${what} (${code}).`, { cause });
    default:
      return error;
  }
}
