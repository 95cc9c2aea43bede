/**
 * Stable codes of {@link ManifestError}. Check errors by `code`, not by class: a class can exist
 * twice in one program when two copies of this package are installed.
 */
export type ManifestErrorCode =
  /** The dump ends early: no footer, a line cut in the middle, a gzip or ciphertext stream cut short. */
  | "TRUNCATED"
  /** Bytes that are not a valid dump: not a cairn dump, a JSON syntax error, a corrupt gzip or envelope header. */
  | "CORRUPT"
  /** The footer's sha256 does not match the record lines read: a record was altered, added or removed. */
  | "DIGEST_MISMATCH"
  /** The footer's counts do not match the records read. */
  | "COUNT_MISMATCH"
  /** The dump's format version is newer than this reader understands. */
  | "UNSUPPORTED_VERSION"
  /** A record lacks a required field, has one of the wrong type, or has an unknown or reserved type. */
  | "INVALID_RECORD"
  /** A record's type comes before the current section. */
  | "OUT_OF_ORDER"
  /** The dump is encrypted and no private key was given. */
  | "ENCRYPTED"
  /** The private key cannot unwrap the data key: it is not the key the dump was encrypted for. */
  | "WRONG_KEY"
  /** The private key is encrypted and the passphrase is missing or wrong. */
  | "BAD_PASSPHRASE"
  /** An encrypted segment failed authentication: a byte was altered or segments were reordered. */
  | "DECRYPT_FAILED"
  /** The caller's options or calls are unusable: a bad key, a write after end, a bad section list. */
  | "INVALID_OPTIONS";

/** Every error this package throws for bad input or misuse; `message` is one sentence naming where. */
export class ManifestError extends Error {
  readonly code: ManifestErrorCode;
  constructor(code: ManifestErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** True when `error` is a {@link ManifestError} with the given code (or any code when omitted). */
export const isManifestError = (error: unknown, code?: ManifestErrorCode): error is ManifestError =>
  error instanceof Error &&
  typeof (error as Partial<ManifestError>).code === "string" &&
  error.name === "ManifestError" &&
  (code === undefined || (error as ManifestError).code === code);
