import {
  InvalidArgumentError,
  isCairnError,
  NotFoundError,
  PermissionDeniedError,
  UnavailableError,
} from "@cairn/core";

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EPIPE",
]);

const THROTTLED = new Set([
  "ProvisionedThroughputExceededException",
  "ThrottlingException",
  "RequestLimitExceeded",
  "LimitExceededException",
  "InternalServerError",
  "ServiceUnavailable",
  "TransactionConflictException",
]);

const DENIED = new Set([
  "UnrecognizedClientException",
  "InvalidSignatureException",
  "AccessDeniedException",
  "ExpiredTokenException",
  "MissingAuthenticationTokenException",
  "IncompleteSignature",
  "InvalidClientTokenId",
  "SignatureDoesNotMatch",
]);

interface ErrorLike {
  name?: string;
  code?: string;
  message?: string;
  errors?: unknown[];
  $metadata?: { httpStatusCode?: number };
}

/** The network error code of `error` or of the first error it aggregates (Node's happy-eyeballs connect). */
function networkCode(error: ErrorLike): string | undefined {
  if (error.code && NETWORK_CODES.has(error.code)) return error.code;
  for (const inner of error.errors ?? []) {
    const code = (inner as ErrorLike | null)?.code;
    if (code && NETWORK_CODES.has(code)) return code;
  }
  return undefined;
}

/**
 * Maps an error of the DynamoDB client to one of core's errors, with one sentence naming `where` (the URL
 * with secrets removed) and `what` failed. Errors that are already cairn's pass through.
 */
export function mapDynamodbError(error: unknown, where: string, what: string): Error {
  if (isCairnError(error)) return error;
  const cause = error;
  const e = (error ?? {}) as ErrorLike;
  const name = e.name ?? "";
  const detail = (e.message ?? String(error)).split("\n")[0]!.trim();
  const net = networkCode(e);
  if (net) {
    return new UnavailableError(`Cannot reach DynamoDB for ${where} to ${what} (${net}).`, { cause });
  }
  if (name === "TimeoutError" || /timed? ?out/i.test(detail)) {
    return new UnavailableError(`DynamoDB for ${where} did not answer in time to ${what} (${detail}).`, {
      cause,
    });
  }
  if (name === "ResourceNotFoundException") {
    return new NotFoundError(`The DynamoDB table of ${where} does not exist (${what}: ${detail}).`, {
      cause,
    });
  }
  if (name === "CredentialsProviderError" || /credential/i.test(name)) {
    return new PermissionDeniedError(
      `Found no AWS credentials for ${where} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run where a role is available): ${detail}`,
      { cause },
    );
  }
  if (/region is missing/i.test(detail)) {
    return new InvalidArgumentError(
      `No AWS region for ${where}: add ?region=… to the URL or set AWS_REGION.`,
      { cause },
    );
  }
  if (DENIED.has(name) || e.$metadata?.httpStatusCode === 403) {
    return new PermissionDeniedError(
      `DynamoDB refused the credentials for ${where} to ${what} (${detail}).`,
      {
        cause,
      },
    );
  }
  if (THROTTLED.has(name) || (e.$metadata?.httpStatusCode ?? 0) >= 500) {
    return new UnavailableError(`DynamoDB for ${where} could not ${what} (${name}: ${detail}).`, { cause });
  }
  if (name === "ValidationException" || name === "SerializationException") {
    return new InvalidArgumentError(`DynamoDB for ${where} refused to ${what} (${detail}).`, { cause });
  }
  if (e.$metadata?.httpStatusCode !== undefined || /^Unknown|Deserialization/.test(name)) {
    return new UnavailableError(
      `DynamoDB for ${where} answered an unexpected error to ${what} (${name || "error"}: ${detail}).`,
      { cause },
    );
  }
  // Anything else is a bug of this engine, not a user's mistake: keep it as it is, with its stack.
  return error instanceof Error ? error : new Error(String(error));
}
