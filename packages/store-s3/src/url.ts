import { InvalidArgumentError, redactUrl, urlScheme } from "@cairn/core";
import type { CreateOnlyMode, S3StoreOptions } from "./s3-store.js";

const MiB = 1024 * 1024;

/** The URL parameters, in the order a store's URL lists them. */
export const URL_PARAMS = [
  "region",
  "endpoint",
  "forcePathStyle",
  "createOnly",
  "maxAttempts",
  "connectTimeout",
  "requestTimeout",
  "partSize",
  "partConcurrency",
  "singlePutLimit",
  "uploadBuffer",
] as const;

/** Parameter names that would carry credentials; refused with a pointer to the AWS credential chain. */
const CREDENTIAL_PARAMS =
  /^(access[-_]?key([-_]?id)?|secret([-_]?access)?([-_]?key)?|session[-_]?token|token|password|credentials?|key|sig(nature)?|x-amz-.*)$/i;

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const CREATE_ONLY_MODES: readonly CreateOnlyMode[] = ["auto", "conditional", "check"];

/** `url` with anything between `//` and `@` hidden, and secret-looking parameters hidden, for messages. */
function hideSecrets(url: string): string {
  const redacted = redactUrl(url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, "$1***@"));
  const q = redacted.indexOf("?");
  if (q < 0) return redacted;
  const params = redacted
    .slice(q + 1)
    .split("&")
    .map((param) => {
      const [name = "", value] = param.split("=", 2);
      if (value === undefined) return param;
      if (CREDENTIAL_PARAMS.test(name)) return `${name}=***`;
      // An endpoint with user:password@ in it.
      return `${name}=${value.replace(/^([a-z][a-z0-9+.-]*:(?:\/\/|%2F%2F))[^/?#]*(@|%40)/i, "$1***$2")}`;
    });
  return `${redacted.slice(0, q)}?${params.join("&")}`;
}

function invalid(message: string): never {
  throw new InvalidArgumentError(message);
}

function integer(name: string, value: string, min: number, max: number, url: string): number {
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    invalid(`The parameter ${name}=${value} in ${url} must be a whole number from ${min} to ${max}.`);
  }
  return n;
}

function seconds(name: string, value: string, min: number, url: string): number {
  const n = /^\d+(\.\d+)?$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isFinite(n) || n < min || n > 86_400) {
    invalid(`The parameter ${name}=${value} in ${url} must be a number of seconds from ${min} to 86400.`);
  }
  return n;
}

/**
 * Reads the options of an `s3:` URL: `s3://bucket/prefix?region=…&endpoint=…&forcePathStyle=true`. The path
 * after the bucket is the store's prefix (percent-encoded as usual). Credentials are never read from a URL:
 * they come from the AWS credential chain (environment, shared profile, SSO, instance role), and a URL that
 * carries any is refused. Unknown parameters are refused.
 */
export function parseS3Url(url: string): S3StoreOptions {
  if (typeof url !== "string" || urlScheme(url) !== "s3") {
    invalid(`"${hideSecrets(String(url))}" is not an s3 URL; expected s3://bucket/prefix?region=….`);
  }
  const shown = hideSecrets(url);
  const m = /^s3:\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?(#.*)?$/i.exec(url);
  if (!m) invalid(`${shown} is not a usable s3 URL; expected s3://bucket/prefix?region=….`);
  const [, authority = "", path = "", query = "", fragment] = m;
  if (authority.includes("@")) {
    invalid(
      `${shown} carries credentials, which an s3 URL must not: they come from the AWS credential chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, …).`,
    );
  }
  if (fragment !== undefined) invalid(`${shown} has a fragment ("#…"); an s3 URL has none.`);
  if (!BUCKET.test(authority)) {
    invalid(
      `"${authority}" in ${shown} is not a valid bucket name: 3 to 63 lower-case letters, digits, dots and hyphens.`,
    );
  }
  let prefix: string;
  try {
    prefix = decodeURIComponent(path).replace(/^\/+|\/+$/g, "");
  } catch (cause) {
    throw new InvalidArgumentError(`The path of ${shown} is not valid percent-encoding.`, { cause });
  }
  if (prefix !== "") {
    const segments = prefix.split("/");
    if (segments.some((s) => s === "" || s === "." || s === ".."))
      invalid(`The prefix "${prefix}" of ${shown} has an empty, "." or ".." segment.`);
  }
  const options: S3StoreOptions = { bucket: authority, prefix };
  const seen = new Set<string>();
  for (const [name, value] of new URLSearchParams(query)) {
    if (CREDENTIAL_PARAMS.test(name)) {
      invalid(
        `${shown} carries credentials in the parameter "${name}", which an s3 URL must not: they come from the AWS credential chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, …).`,
      );
    }
    if (!(URL_PARAMS as readonly string[]).includes(name)) {
      invalid(`Unknown parameter "${name}" in ${shown}; supported: ${URL_PARAMS.join(", ")}.`);
    }
    if (seen.has(name)) invalid(`The parameter "${name}" appears twice in ${shown}.`);
    seen.add(name);
    switch (name as (typeof URL_PARAMS)[number]) {
      case "region":
        if (!/^[a-z0-9-]{1,40}$/i.test(value)) invalid(`The region "${value}" in ${shown} is not valid.`);
        options.region = value;
        break;
      case "endpoint":
        options.endpoint = checkEndpoint(value, shown);
        break;
      case "forcePathStyle":
        if (value !== "true" && value !== "false")
          invalid(`The parameter forcePathStyle=${value} in ${shown} must be true or false.`);
        options.forcePathStyle = value === "true";
        break;
      case "createOnly":
        if (!(CREATE_ONLY_MODES as readonly string[]).includes(value)) {
          invalid(
            `The parameter createOnly=${value} in ${shown} must be one of ${CREATE_ONLY_MODES.join(", ")}.`,
          );
        }
        options.createOnly = value as CreateOnlyMode;
        break;
      case "maxAttempts":
        options.maxAttempts = integer(name, value, 1, 20, shown);
        break;
      case "connectTimeout":
        options.connectTimeout = seconds(name, value, 0.1, shown);
        break;
      case "requestTimeout":
        options.requestTimeout = seconds(name, value, 0, shown);
        break;
      case "partSize":
        options.partSize = integer(name, value, 5, 5120, shown) * MiB;
        break;
      case "partConcurrency":
        options.partConcurrency = integer(name, value, 1, 64, shown);
        break;
      case "singlePutLimit":
        options.singlePutLimit = integer(name, value, 0, 5120, shown) * MiB;
        break;
      case "uploadBuffer":
        options.uploadBuffer = integer(name, value, 1, 1024 * 1024, shown) * MiB;
        break;
    }
  }
  return options;
}

/** Checks an `endpoint` parameter: an http(s) URL without credentials, query or fragment. */
export function checkEndpoint(value: string, shown: string): string {
  let endpoint: URL;
  try {
    endpoint = new URL(value);
  } catch {
    return invalid(
      `The endpoint "${hideSecrets(value)}" in ${shown} is not a URL; expected e.g. http://127.0.0.1:9000.`,
    );
  }
  if (endpoint.username || endpoint.password) {
    invalid(
      `The endpoint in ${shown} carries credentials, which it must not: they come from the AWS credential chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, …).`,
    );
  }
  if (endpoint.protocol !== "http:" && endpoint.protocol !== "https:") {
    invalid(`The endpoint "${value}" in ${shown} must be an http: or https: URL.`);
  }
  if (endpoint.search || endpoint.hash)
    invalid(`The endpoint "${value}" in ${shown} must have no query or fragment.`);
  return value.replace(/\/+$/, "");
}

/** Encodes a parameter value, keeping the `:` and `/` of an endpoint readable. */
const encodeValue = (value: string) => encodeURIComponent(value).replace(/%3A/gi, ":").replace(/%2F/gi, "/");

/**
 * The canonical URL of a store with `options`: the bucket, the prefix and every parameter that differs from
 * its default. It carries no credentials (none are ever taken from options into a URL).
 */
export function formatS3Url(options: S3StoreOptions): string {
  const prefix = (options.prefix ?? "").replace(/^\/+|\/+$/g, "");
  const path = prefix ? `/${prefix.split("/").map(encodeURIComponent).join("/")}` : "";
  const params: string[] = [];
  const add = (name: string, value: unknown) => {
    if (value !== undefined) params.push(`${name}=${encodeValue(String(value))}`);
  };
  add("region", options.region);
  add("endpoint", options.endpoint);
  add("forcePathStyle", options.forcePathStyle);
  add("createOnly", options.createOnly === "auto" ? undefined : options.createOnly);
  add("maxAttempts", options.maxAttempts);
  add("connectTimeout", options.connectTimeout);
  add("requestTimeout", options.requestTimeout);
  add("partSize", options.partSize === undefined ? undefined : options.partSize / MiB);
  add("partConcurrency", options.partConcurrency);
  add("singlePutLimit", options.singlePutLimit === undefined ? undefined : options.singlePutLimit / MiB);
  add("uploadBuffer", options.uploadBuffer === undefined ? undefined : options.uploadBuffer / MiB);
  return `s3://${options.bucket}${path}${params.length ? `?${params.join("&")}` : ""}`;
}
