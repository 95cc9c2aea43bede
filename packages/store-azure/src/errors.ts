import {
  AlreadyExistsError,
  ConflictError,
  InvalidArgumentError,
  isCairnError,
  NotFoundError,
  PermissionDeniedError,
  UnavailableError,
} from "@cairn/core";

/**
 * What is left of an Azure SDK error once its request (URL with any SAS, headers) is dropped: the status, the
 * service's error code and request id. Kept as the `cause` of the mapped error so logs and dumps of an error
 * can never carry a credential.
 */
export class AzureServiceError extends Error {
  /** HTTP status, or 0 when no response came. */
  readonly statusCode: number;
  /** The service's `x-ms-error-code` (e.g. `BlobNotFound`) or the network error code (e.g. `ECONNREFUSED`). */
  readonly errorCode: string | undefined;
  readonly requestId: string | undefined;
  constructor(
    statusCode: number,
    errorCode: string | undefined,
    requestId: string | undefined,
    what: string,
  ) {
    super(what);
    this.name = "AzureServiceError";
    this.statusCode = statusCode;
    this.errorCode = errorCode;
    this.requestId = requestId;
  }
}

interface RestErrorLike {
  name?: string;
  message?: string;
  code?: string;
  statusCode?: number;
  details?: { errorCode?: string; requestId?: string };
  response?: { headers?: { get?(name: string): string | undefined } };
}

/** The parts of an SDK error that are safe to keep. */
export function serviceError(error: unknown): AzureServiceError {
  if (error instanceof AzureServiceError) return error;
  const e = (error ?? {}) as RestErrorLike;
  const statusCode = typeof e.statusCode === "number" ? e.statusCode : 0;
  const header = (name: string) => {
    try {
      return e.response?.headers?.get?.(name);
    } catch {
      return undefined;
    }
  };
  const errorCode = e.details?.errorCode ?? header("x-ms-error-code") ?? e.code ?? e.name;
  const requestId = e.details?.requestId ?? header("x-ms-request-id");
  // The SDK's message may quote the request URL, which holds a SAS when one is used: keep only its first line
  // and strip anything that looks like a query string.
  const first = (e.message ?? "").split("\n", 1)[0]!.replace(/\?\S*/g, "?…");
  return new AzureServiceError(
    statusCode,
    errorCode,
    requestId,
    `${statusCode || "no response"} ${errorCode ?? ""}: ${first}`.trim(),
  );
}

/** What the store was doing, for messages. */
export type AzureAction = "write" | "read" | "delete" | "list" | "copy to" | "open";

const AUTH_CODES = new Set([
  "AuthenticationFailed",
  "AuthorizationFailure",
  "AuthorizationPermissionMismatch",
  "AuthorizationResourceTypeMismatch",
  "AuthorizationServiceMismatch",
  "AuthorizationProtocolMismatch",
  "AuthorizationSourceIPMismatch",
  "InsufficientAccountPermissions",
  "AccountIsDisabled",
]);

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "ESOCKETTIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "REQUEST_SEND_ERROR",
  "AbortError",
]);

/** The context of a failed call, for the message: the store URL, the key (or `undefined`), the container. */
export interface ErrorContext {
  url: string;
  key: string | undefined;
  container: string;
  /** The blob service endpoint, named when it cannot be reached. */
  endpoint?: string;
  action: AzureAction;
  /** A create-only write or copy: a failed condition means the target exists. */
  createOnly?: boolean;
}

/**
 * Maps an Azure SDK or network error to one of core's errors with one sentence naming the key, the store URL
 * (never a credential) and what failed. Errors already mapped pass through unchanged.
 */
export function mapAzureError(error: unknown, context: ErrorContext): unknown {
  if (isCairnError(error)) return error;
  // Neither a service nor a network error (e.g. a TypeError): a bug, passed on as is.
  const name = (error as { name?: unknown } | null)?.name;
  if (!(error instanceof Error) || (name !== "RestError" && name !== "AbortError" && !("code" in error))) {
    return error;
  }
  const cause = serviceError(error);
  const { statusCode, errorCode } = cause;
  const what = context.key === undefined ? context.url : `"${context.key}" in ${context.url}`;
  const code = errorCode ?? "";
  if (errorCode === "ContainerNotFound") {
    return new NotFoundError(`The container "${context.container}" of ${context.url} does not exist.`, {
      cause,
    });
  }
  if (statusCode === 404) {
    return new NotFoundError(`No object ${what}.`, { cause });
  }
  if (statusCode === 403 || statusCode === 401 || AUTH_CODES.has(code)) {
    return new PermissionDeniedError(
      `Azure refused the credentials to ${context.action} ${what} (${code || statusCode}); check AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY or the SAS token.`,
      { cause },
    );
  }
  if (
    context.createOnly &&
    (statusCode === 412 || code === "BlobAlreadyExists" || code === "ConditionNotMet")
  ) {
    return new AlreadyExistsError(`The object ${what} already exists.`, { cause });
  }
  if (statusCode === 412 || statusCode === 409) {
    return new ConflictError(
      `A concurrent change to ${what} made the ${context.action} fail (${code || statusCode}).`,
      { cause, ...(context.key !== undefined ? { paths: [context.key] } : {}) },
    );
  }
  if (statusCode === 416 || code === "InvalidRange") {
    return new InvalidArgumentError(`The requested range is outside of ${what}.`, { cause });
  }
  if (
    statusCode === 414 ||
    code === "InvalidResourceName" ||
    code === "OutOfRangeInput" ||
    code === "InvalidUri"
  ) {
    return new InvalidArgumentError(
      `Azure Blob Storage rejects the name of ${what} or of its container "${context.container}" (${code || statusCode}); a blob name has at most 1,024 characters, a container name 3 to 63 lower-case letters, digits and hyphens.`,
      { cause },
    );
  }
  if (statusCode >= 400 && statusCode < 500 && statusCode !== 408 && statusCode !== 429) {
    return new InvalidArgumentError(
      `Azure Blob Storage refused to ${context.action} ${what} (${statusCode} ${code}).`,
      { cause },
    );
  }
  if (statusCode >= 500 || statusCode === 408 || statusCode === 429) {
    return new UnavailableError(
      `Azure Blob Storage could not ${context.action} ${what} (${statusCode} ${code}), even after retries.`,
      { cause },
    );
  }
  if (NETWORK_CODES.has(code) || /timed? ?out|socket|network|connect/i.test(cause.message)) {
    return new UnavailableError(
      `Cannot reach Azure Blob Storage${context.endpoint ? ` at ${context.endpoint}` : ""} to ${context.action} ${what} (${code || "network error"}).`,
      { cause },
    );
  }
  return new UnavailableError(`Failed to ${context.action} ${what} (${cause.message}).`, { cause });
}
