import {
  AlreadyExistsError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  UnavailableError,
} from "@cairn/core";
import { showKey } from "./keys.js";

/** What the store was doing, for messages. */
export type S3Action = "write" | "read" | "delete" | "list" | "copy" | "open";

/** The fields of an AWS SDK service error (and of Node's network errors) this mapping reads. */
interface SdkErrorLike {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

const PERMISSION = new Set([
  "AccessDenied",
  "AllAccessDisabled",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "ExpiredToken",
  "InvalidToken",
  "TokenRefreshRequired",
  "AccountProblem",
  "Forbidden",
]);

const INVALID = new Set([
  "KeyTooLongError",
  "InvalidArgument",
  "InvalidObjectName",
  "InvalidBucketName",
  "EntityTooLarge",
  "EntityTooSmall",
  "InvalidRequest",
  "MetadataTooLarge",
  "InvalidRange",
  "AuthorizationHeaderMalformed",
  "PermanentRedirect",
  "IllegalLocationConstraintException",
]);

const NETWORK = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EHOSTDOWN",
  "ENETDOWN",
  "UND_ERR_SOCKET",
]);

/** The service's error code (`NoSuchKey`, …), or the network error code (`ECONNREFUSED`, …). */
export function errorCode(error: unknown): string | undefined {
  const e = error as SdkErrorLike | null;
  if (!e || typeof e !== "object") return undefined;
  return e.Code ?? (typeof e.code === "string" ? e.code : undefined) ?? e.name;
}

/** The HTTP status of a service error, if the service answered. */
export function httpStatus(error: unknown): number | undefined {
  return (error as SdkErrorLike | null)?.$metadata?.httpStatusCode;
}

/** Node's network errors hide under AggregateError (happy eyeballs) or a `cause`. */
function networkCode(error: unknown): string | undefined {
  for (
    let e = error as (SdkErrorLike & { cause?: unknown; errors?: unknown[] }) | undefined, i = 0;
    e && i < 5;
    i++
  ) {
    if (typeof e.code === "string" && NETWORK.has(e.code)) return e.code;
    if (Array.isArray(e.errors)) {
      const inner = e.errors.map(networkCode).find(Boolean);
      if (inner) return inner;
    }
    e = e.cause as typeof e;
  }
  return undefined;
}

/**
 * Whether a failed request is worth sending again, as the SDK's standard retry strategy judges it: no answer
 * (a network error or a time-out), throttling, or a server error other than 501 Not Implemented.
 */
export function worthRetrying(error: unknown): boolean {
  const status = httpStatus(error);
  const code = errorCode(error);
  if (code === "TimeoutError" || code === "RequestTimeout" || code === "SlowDown") return true;
  if (status === undefined) return networkCode(error) !== undefined;
  return status === 429 || (status >= 500 && status !== 501);
}

export interface ErrorContext {
  /** The store's URL, without secrets. */
  url: string;
  bucket: string;
  /** The key as the caller named it (relative to the store's root), or a description such as "(listing)". */
  key?: string;
  action: S3Action;
}

/**
 * Maps an AWS SDK error to one of core's errors with one sentence naming the store URL, the key and what
 * failed. The service's own message is left out of the sentence for credential errors (it may echo request
 * details) and kept in `cause`. An error that is not from the SDK or the network is returned unchanged.
 */
export function mapS3Error(error: unknown, context: ErrorContext): unknown {
  if (!(error instanceof Error)) return error;
  const { url, bucket, action } = context;
  const what = context.key !== undefined ? `${showKey(context.key)} in ${url}` : url;
  const code = errorCode(error);
  const status = httpStatus(error);
  const cause = error;
  const net = networkCode(error);
  if (net) {
    return new UnavailableError(`Cannot ${action} ${what}: the service is unreachable (${net}).`, { cause });
  }
  if (error.name === "TimeoutError" || error.name === "RequestTimeout" || code === "RequestTimeout") {
    return new UnavailableError(`Cannot ${action} ${what}: the service timed out.`, { cause });
  }
  if (error.name === "CredentialsProviderError") {
    return new PermissionDeniedError(
      `No AWS credentials to ${action} ${what}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or another source of the AWS credential chain.`,
      { cause },
    );
  }
  if (/region is missing/i.test(error.message)) {
    return new InvalidArgumentError(`No AWS region for ${url}: add ?region=… to the URL or set AWS_REGION.`, {
      cause,
    });
  }
  // Without an HTTP status or a service code, this is no service answer: a bug, not a user's condition.
  if (status === undefined && (error as SdkErrorLike).Code === undefined) return error;
  if (code === "NoSuchBucket") {
    return new NotFoundError(`The bucket "${bucket}" of ${url} does not exist.`, { cause });
  }
  if (code === "NoSuchKey" || (status === 404 && code === "NotFound")) {
    return new NotFoundError(`No object ${what}.`, { cause });
  }
  if ((code && PERMISSION.has(code)) || status === 401 || status === 403) {
    return new PermissionDeniedError(
      `Access denied to ${action} ${what} (${code ?? status}): check the AWS credentials and the bucket policy.`,
      { cause },
    );
  }
  if (code === "PreconditionFailed" || status === 412) {
    return new AlreadyExistsError(`The object ${what} already exists.`, { cause });
  }
  if (code === "KeyTooLongError") {
    return new InvalidArgumentError(`The service rejected the key ${what} as too long.`, { cause });
  }
  if (code === "InvalidRange" || status === 416) {
    return new InvalidArgumentError(`The requested range lies beyond the end of ${what}.`, { cause });
  }
  if (code === "PermanentRedirect" || code === "AuthorizationHeaderMalformed" || status === 301) {
    return new InvalidArgumentError(
      `The bucket "${bucket}" of ${url} is in another region (${code ?? status}): set ?region=… to its region.`,
      { cause },
    );
  }
  if (code && INVALID.has(code)) {
    return new InvalidArgumentError(
      `The service refused to ${action} ${what} (${code}: ${oneLine(error.message)}).`,
      { cause },
    );
  }
  if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) {
    return new InvalidArgumentError(`The service refused to ${action} ${what} (${code ?? status}).`, {
      cause,
    });
  }
  return new UnavailableError(
    `Cannot ${action} ${what}: the service failed (${code ?? "error"}${status ? `, HTTP ${status}` : ""}).`,
    { cause },
  );
}

function oneLine(message: string): string {
  const line = message.replace(/\s+/g, " ").trim();
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
