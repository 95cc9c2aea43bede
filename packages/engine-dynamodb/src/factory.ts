import { type EngineFactory, InvalidArgumentError, redactUrl, urlScheme } from "@cairn/core";
import { createDynamodbEngine, type DynamodbEngine, type DynamodbEngineOptions } from "./dynamodb-engine.js";

const PARAMS = [
  "region",
  "endpoint",
  "create",
  "concurrency",
  "pageSize",
  "connectTimeout",
  "requestTimeout",
  "maxAttempts",
];

function wholeNumber(url: string, name: string, raw: string, min: number): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min) {
    throw new InvalidArgumentError(`The parameter ${name}=${raw} in ${url} must be a whole number ≥ ${min}.`);
  }
  return n;
}

/**
 * Reads the options of a `dynamodb://<table>` URL, with optional parameters `region`, `endpoint` (an
 * `http://` or `https://` URL, percent-encoded or not), `create` (`true` | `false`), `concurrency`,
 * `pageSize`, `connectTimeout` and `requestTimeout` (ms), and `maxAttempts`. Credentials never come from the URL: the AWS SDK's
 * standard chain finds them (environment, profile, container or instance role).
 */
export function parseDynamodbUrl(url: string): DynamodbEngineOptions {
  const shown = redactUrl(url);
  if (urlScheme(url) !== "dynamodb" || !/^[a-z]+:\/\//i.test(url)) {
    throw new InvalidArgumentError(
      `"${shown}" is not a DynamoDB URL; expected dynamodb://<table>?region=…&endpoint=…`,
    );
  }
  const rest = url.slice(url.indexOf("://") + 3);
  const q = rest.indexOf("?");
  const authority = q >= 0 ? rest.slice(0, q) : rest;
  if (authority.includes("@")) {
    throw new InvalidArgumentError(
      `${shown} carries credentials; DynamoDB credentials come from the AWS environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, a role), never from the URL.`,
    );
  }
  const table = authority.replace(/\/+$/, "");
  if (table === "") {
    throw new InvalidArgumentError(`${shown} names no table; expected dynamodb://<table>?region=…`);
  }
  if (!/^[A-Za-z0-9_.-]{3,255}$/.test(table)) {
    throw new InvalidArgumentError(
      `The table name "${table}" in ${shown} must be 3 to 255 characters of A-Z, a-z, 0-9, "_", "." and "-".`,
    );
  }
  const options: DynamodbEngineOptions = { table, location: shown };
  for (const [name, value] of new URLSearchParams(q >= 0 ? rest.slice(q + 1) : "")) {
    switch (name) {
      case "region":
        if (!/^[a-z0-9-]+$/.test(value)) {
          throw new InvalidArgumentError(
            `The parameter region=${value} in ${shown} is not an AWS region name.`,
          );
        }
        options.region = value;
        break;
      case "endpoint": {
        let endpoint: URL;
        try {
          endpoint = new URL(value);
        } catch (cause) {
          throw new InvalidArgumentError(`The parameter endpoint=${value} in ${shown} is not a URL.`, {
            cause,
          });
        }
        if (endpoint.protocol !== "http:" && endpoint.protocol !== "https:") {
          throw new InvalidArgumentError(
            `The parameter endpoint=${value} in ${shown} must be an http:// or https:// URL.`,
          );
        }
        options.endpoint = value;
        break;
      }
      case "create":
        if (value !== "true" && value !== "false") {
          throw new InvalidArgumentError(
            `The parameter create=${value} in ${shown} must be "true" or "false".`,
          );
        }
        options.create = value === "true";
        break;
      case "concurrency":
      case "pageSize":
      case "connectTimeout":
      case "requestTimeout":
      case "maxAttempts":
        options[name] = wholeNumber(shown, name, value, 1);
        break;
      default:
        throw new InvalidArgumentError(
          `Unknown parameter "${name}" in ${shown}; supported: ${PARAMS.join(", ")}.`,
        );
    }
  }
  return options;
}

/** An {@link EngineFactory} whose engines are typed as {@link DynamodbEngine}. */
export interface DynamodbEngineFactory extends EngineFactory {
  open(url: string): Promise<DynamodbEngine>;
}

/** Opens DynamoDB engines from `dynamodb://` URLs; see {@link parseDynamodbUrl}. */
export const factory: DynamodbEngineFactory = Object.freeze({
  schemes: Object.freeze(["dynamodb"]),
  async open(url: string): Promise<DynamodbEngine> {
    return createDynamodbEngine(parseDynamodbUrl(url));
  },
});
