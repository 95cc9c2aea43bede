import { type EngineFactory, InvalidArgumentError, redactUrl, urlScheme } from "@cairn/core";
import { createRedisEngine, type RedisEngine, type RedisEngineOptions } from "./redis-engine.js";

const PARAMS = ["prefix", "connectTimeout", "commandTimeout", "pageSize", "cluster"] as const;

function wholeNumber(
  url: string,
  name: string,
  raw: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new InvalidArgumentError(
      `The parameter ${name}=${raw} in ${url} must be a whole number from ${min} to ${max}.`,
    );
  }
  return n;
}

function decode(url: string, what: string, raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch (cause) {
    throw new InvalidArgumentError(`The ${what} in ${url} has a malformed percent-escape.`, { cause });
  }
}

/**
 * Reads the options of a Redis URL: `redis://[[user]:password@]host[:port][/db][?params]`, or `rediss://…` for
 * TLS. The port defaults to 6379, the database to 0, the host to 127.0.0.1. Parameters: `prefix` (start of
 * every key, default `cairn:`), `connectTimeout` and `commandTimeout` (ms), `pageSize` (entries per scan round
 * trip), `cluster` (`true`: the host is a seed node of a Redis Cluster). User name and password are
 * percent-decoded. Messages name the URL with the password hidden.
 *
 * Several comma-separated hosts name the seed nodes of a Redis Cluster, as JuiceFS writes them:
 * `redis://[[user]:password@]host1[:port1],host2[:port2],…[/db][?params]`; each port defaults to 6379. The result
 * then has `nodes` instead of `host` and `port`.
 */
export function parseRedisUrl(url: string): RedisEngineOptions & { location: string } {
  const shown = redactUrl(url);
  const authority = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)(.*)$/is.exec(url);
  const at = authority ? authority[2]!.lastIndexOf("@") : -1;
  const hosts = authority ? authority[2]!.slice(at + 1).split(",") : [];
  if (hosts.length < 2) return parseOne(url, shown);
  // Each seed is read as the host of a URL of its own, so that brackets, ports and their errors are the same
  // as for one host; the rest (credentials, database, parameters) is read from the URL with the first seed.
  const [, start, , rest] = authority!;
  const userinfo = at >= 0 ? authority![2]!.slice(0, at + 1) : "";
  const nodes = hosts.map((seed) => {
    if (seed === "") {
      throw new InvalidArgumentError(
        `${shown} has an empty host in its list of cluster nodes; write host1:port1,host2:port2.`,
      );
    }
    const { host = "127.0.0.1", port } = parseOne(`${start}${seed}`, shown);
    return port === undefined ? { host } : { host, port };
  });
  const options = parseOne(`${start}${userinfo}${hosts[0]}${rest}`, shown);
  if (options.cluster === false) {
    throw new InvalidArgumentError(
      `${shown} lists several hosts, which name the nodes of a Redis Cluster, but says cluster=false.`,
    );
  }
  delete options.host;
  delete options.port;
  delete options.cluster;
  return { ...options, nodes };
}

function parseOne(url: string, shown: string): RedisEngineOptions & { location: string } {
  const scheme = urlScheme(url);
  if ((scheme !== "redis" && scheme !== "rediss") || !/^[a-z]+:\/\//i.test(url)) {
    throw new InvalidArgumentError(
      `"${shown}" is not a Redis URL; expected redis://[user:password@]host:port/db or rediss://… for TLS.`,
    );
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new InvalidArgumentError(`"${shown}" is not a valid Redis URL.`, { cause });
  }
  if (parsed.hash) throw new InvalidArgumentError(`${shown} must not have a #fragment.`);
  const options: RedisEngineOptions & { location: string } = { location: shown };
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
  if (host) options.host = host;
  if (parsed.port) options.port = wholeNumber(shown, "port", parsed.port, 1, 65535);
  const path = parsed.pathname.replace(/^\//, "");
  if (path !== "") {
    if (!/^\d+$/.test(path)) {
      throw new InvalidArgumentError(
        `The path of ${shown} must be a database number (e.g. /0), got "/${path}".`,
      );
    }
    options.db = wholeNumber(shown, "database number", path, 0);
  }
  if (parsed.username) options.username = decode(shown, "user name", parsed.username);
  if (parsed.password) options.password = decode(shown, "password", parsed.password);
  if (options.username !== undefined && options.password === undefined) {
    throw new InvalidArgumentError(
      `${shown} names a user without a password; write redis://user:password@host.`,
    );
  }
  if (scheme === "rediss") options.tls = true;
  for (const [name, value] of new URLSearchParams(parsed.search)) {
    switch (name) {
      case "prefix":
        if (/[{}]/.test(value)) {
          throw new InvalidArgumentError(
            `The parameter prefix=${value} in ${shown} must not contain "{" or "}": the engine's hash tags follow it.`,
          );
        }
        options.prefix = value;
        break;
      case "connectTimeout":
        options.connectTimeout = wholeNumber(shown, name, value, 1);
        break;
      case "commandTimeout":
        options.commandTimeout = wholeNumber(shown, name, value, 1);
        break;
      case "pageSize":
        options.pageSize = wholeNumber(shown, name, value, 1, 5000);
        break;
      case "cluster":
        if (value !== "true" && value !== "false") {
          throw new InvalidArgumentError(`The parameter cluster=${value} in ${shown} must be true or false.`);
        }
        options.cluster = value === "true";
        break;
      default:
        throw new InvalidArgumentError(
          `Unknown parameter "${name}" in ${shown}; supported: ${PARAMS.join(", ")}.`,
        );
    }
  }
  return options;
}

/** An {@link EngineFactory} whose engines are typed as {@link RedisEngine}. */
export interface RedisEngineFactory extends EngineFactory {
  open(url: string): Promise<RedisEngine>;
}

/** Opens Redis engines from `redis://` and `rediss://` URLs; see {@link parseRedisUrl}. */
export const factory: RedisEngineFactory = Object.freeze({
  schemes: Object.freeze(["redis", "rediss"]),
  async open(url: string): Promise<RedisEngine> {
    return createRedisEngine(parseRedisUrl(url));
  },
});
